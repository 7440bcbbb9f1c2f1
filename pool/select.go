package pool

import (
	"math"
	"sync"
	"time"

	"github.com/stickylb/stickylb/affinity"
)

// selector is one balance method: how a client with no usable pin is
// given a backend. Each method is a type of its own, and every one is
// handed the same choice, so none can miss what the pool applies to all
// of them: weights, slow start (through effectiveWeight), and which
// backends take new clients (usable: health, drain, maintenance, limits,
// an outlier's ejection).
type selector interface {
	pick(c choice) *Backend
}

// choice is what a selector decides from: a struct of plain values, so
// a decision allocates nothing.
type choice struct {
	list      []*Backend // in name order
	key       uint64     // the client key's hash
	skip      func(*Backend) bool
	backups   bool  // choose among the backups (when no other backend can take the client)
	now       int64 // unix nanoseconds
	slowStart time.Duration
	ejectNow  int64 // unix nanoseconds by the outlier detector's clock
	ejected   bool  // choose among outliers' ejected backends too (when no other can take the client)
}

// usable says whether b may be given the client: it takes new clients
// (ejected or not, as the pass chooses), is of the kind (backup or not)
// being chosen, and is not skipped.
func (c *choice) usable(b *Backend) bool {
	return b.takesNewAt(c.ejectNow, c.ejected) && b.Backup() == c.backups && (c.skip == nil || !c.skip(b))
}

func (c *choice) weight(b *Backend) float64 { return b.effectiveWeight(c.now, c.slowStart) }

// hashSelector is weighted rendezvous hashing: score = -weight / ln(u),
// u uniform in (0,1) from hash(key, name). With equal weights it is plain
// highest-random-weight hashing, stable across processes and restarts.
type hashSelector struct{}

func (hashSelector) pick(c choice) *Backend {
	var best *Backend
	bestScore := math.Inf(-1)
	for _, b := range c.list {
		if !c.usable(b) {
			continue
		}
		h := affinity.Mix(c.key ^ b.nameHash)
		// 53 random bits mapped into (0,1), never 0 or 1.
		u := (float64(h>>11) + 0.5) / (1 << 53)
		score := -c.weight(b) / math.Log(u)
		if score > bestScore || (score == bestScore && best != nil && b.Name < best.Name) {
			best, bestScore = b, score
		}
	}
	return best
}

// leastConnSelector picks the fewest open connections per unit of weight.
type leastConnSelector struct{}

func (leastConnSelector) pick(c choice) *Backend {
	var best *Backend
	var bestLoad float64
	for _, b := range c.list {
		if !c.usable(b) {
			continue
		}
		load := float64(b.active.Load()+1) / c.weight(b)
		if best == nil || load < bestLoad {
			best, bestLoad = b, load
		}
	}
	return best
}

// roundRobinSelector is smooth weighted round robin, as nginx and traefik
// do it: each turn every usable backend gains its weight, the one with
// the most is chosen and pays back the total, so weights 5:1:1 give
// a a b a c a a, not five a in a row. Weights are effective ones, so a
// recovered backend ramps up over slow_start here too.
type roundRobinSelector struct {
	mu sync.Mutex // guards every backend's rrCurrent
}

func (r *roundRobinSelector) pick(c choice) *Backend {
	r.mu.Lock()
	defer r.mu.Unlock()
	var best *Backend
	total := 0.0
	for _, b := range c.list {
		if !c.usable(b) {
			continue
		}
		w := c.weight(b)
		total += w
		b.rrCurrent += w
		if best == nil || b.rrCurrent > best.rrCurrent {
			best = b
		}
	}
	if best != nil {
		best.rrCurrent -= total
	}
	return best
}
