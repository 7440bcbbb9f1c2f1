package cluster

import (
	"bytes"
	"maps"
	"slices"
	"time"

	"github.com/stickylb/stickylb/locks"

	"github.com/hashicorp/memberlist"
)

// roster is the other members as memberlist's events report them, each
// kept as a copy. memberlist's own Members returns pointers to the nodes
// it goes on updating under its lock, which no caller can read without a
// data race; its events run under that lock, so copying there is safe.
//
// It is also the one place that keeps anything per sender: a message
// names its sender itself, and any name a member with the key makes up
// would otherwise be a new entry in every map keyed by it (3 rounds of
// 300,000 goodbyes under new names took a member from 20 to 706 MB,
// held). What a message says of its sender (a goodbye, its clock) is
// kept only for a member memberlist reports, and goes with its entry; a
// member gone is kept for ctl members until maxDeparted others left
// after it.
type roster struct {
	mu    locks.Mutex
	nodes map[string]*rosterEntry
}

type rosterEntry struct {
	node  memberlist.Node // a copy
	state string          // alive, failed or left
	bye   bool            // it said it is leaving: its leave is on purpose
	clock int64           // its clock's offset from this one's, seconds, as its last message said
	share *share          // its allowance of messages; nil until it sends
	gone  time.Time       // when it failed or left
}

// maxDeparted bounds the members kept after they failed or left.
// memberlist forgets a dead member within a minute or so and reports it
// joining again if it comes back, so an entry dropped here comes back
// with it.
const maxDeparted = 256

// set records n (a node memberlist passes to an event) alive, keeping
// what its messages told.
func (r *roster) set(n *memberlist.Node) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.put(n)
}

// put is set with r.mu held; it returns n's entry.
func (r *roster) put(n *memberlist.Node) *rosterEntry {
	if r.nodes == nil {
		r.nodes = map[string]*rosterEntry{}
	}
	e := r.nodes[n.Name]
	if e == nil {
		e = &rosterEntry{}
		r.nodes[n.Name] = e
	}
	e.node = *n
	e.node.Meta = bytes.Clone(n.Meta) // memberlist may reuse it
	e.state, e.gone = "alive", time.Time{}
	return e
}

// depart records n gone and says how: "left" if it said goodbye, else
// "failed". Its goodbye and share go; past maxDeparted members gone, the
// one gone longest is forgotten.
func (r *roster) depart(n *memberlist.Node) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.put(n)
	e.state = "failed"
	if e.bye {
		e.state = "left"
	}
	e.bye, e.share, e.gone = false, nil, time.Now()
	var gone []string
	for name, o := range r.nodes {
		if o.state != "alive" {
			gone = append(gone, name)
		}
	}
	if len(gone) > maxDeparted {
		slices.SortFunc(gone, func(a, b string) int { return r.nodes[a].gone.Compare(r.nodes[b].gone) })
		for _, name := range gone[:len(gone)-maxDeparted] {
			delete(r.nodes, name)
		}
	}
	return e.state
}

// heardBye notes that the alive member name said it is leaving; false,
// and nothing kept, for a name no alive member has.
func (r *roster) heardBye(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.nodes[name]
	if e == nil || e.state != "alive" {
		return false
	}
	e.bye = true
	return true
}

// noteClock keeps member name's clock offset; false, and nothing kept,
// for a name the roster has not.
func (r *roster) noteClock(name string, offset int64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.nodes[name]
	if e == nil {
		return false
	}
	e.clock = offset
	return true
}

// share returns the alive member name's allowance, made by newShare on
// its first message; nil for a name no alive member has.
func (r *roster) share(name string, newShare func() *share) *share {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.nodes[name]
	if e == nil || e.state != "alive" {
		return nil
	}
	if e.share == nil {
		e.share = newShare()
	}
	return e.share
}

// alive returns copies of the members known alive, in name order.
func (r *roster) alive() []*memberlist.Node {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*memberlist.Node
	for _, name := range slices.Sorted(maps.Keys(r.nodes)) {
		if e := r.nodes[name]; e.state == "alive" {
			node := e.node
			out = append(out, &node)
		}
	}
	return out
}

// infos returns every member known, alive or not, in name order.
func (r *roster) infos() []MemberInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []MemberInfo
	for _, name := range slices.Sorted(maps.Keys(r.nodes)) {
		e := r.nodes[name]
		out = append(out, MemberInfo{Name: name, Addr: e.node.Address(), State: e.state, ClockOffset: e.clock, meta: e.node.Meta})
	}
	return out
}
