package nlbimport

import (
	"strconv"
	"strings"
)

// span is the ports first to last, both included.
type span struct{ first, last int }

// spans is a set of ports as sorted spans that neither overlap nor
// touch, as a listener's listen value writes them.
type spans []span

// minus is s without the ports of holes.
func (s span) minus(holes []span) spans {
	out := spans{s}
	for _, h := range holes {
		var next spans
		for _, o := range out {
			if h.last < o.first || h.first > o.last {
				next = append(next, o)
				continue
			}
			if h.first > o.first {
				next = append(next, span{o.first, h.first - 1})
			}
			if h.last < o.last {
				next = append(next, span{h.last + 1, o.last})
			}
		}
		out = next
	}
	return out
}

func (ps spans) contains(p int) bool {
	for _, s := range ps {
		if s.first <= p && p <= s.last {
			return true
		}
	}
	return false
}

// String writes the set as a listen value's port part: "135",
// "6005-59530", "1-79,81-65535".
func (ps spans) String() string {
	parts := make([]string, len(ps))
	for i, s := range ps {
		parts[i] = strconv.Itoa(s.first)
		if s.last != s.first {
			parts[i] += "-" + strconv.Itoa(s.last)
		}
	}
	return strings.Join(parts, ",")
}
