package pool

import (
	"math"
	"testing"
	"time"

	"github.com/stickylb/stickylb/config"
)

var balances = []config.Balance{config.Hash, config.LeastConn, config.RoundRobin}

// share places n new clients (distinct keys) and returns the fraction
// each backend got. Each placed client keeps a connection open, so
// least-conn sees the load it made.
func share(p *Pool, n int) map[string]float64 {
	got := map[string]float64{}
	for i := range n {
		b := p.Choose(keyHash(i), nil)
		if b == nil {
			got[""]++
			continue
		}
		b.ConnOpened()
		got[b.Name] += 1 / float64(n)
	}
	return got
}

// Every balance method honours weights: 3:1 gives three quarters.
func TestEverySelectorWeights(t *testing.T) {
	for _, bal := range balances {
		s := specs(2)
		s[0].Weight = 3
		if got := share(New("p", bal, s), 4000); math.Abs(got["cas1"]-0.75) > 0.03 {
			t.Errorf("%s: weight 3:1 gave cas1 %.3f, want 0.75", bal, got["cas1"])
		}
	}
}

// Every balance method ramps a recovered backend up over slow_start: just
// back, with an hour to ramp, it gets almost nothing; round robin gave it
// its full share at once before.
func TestEverySelectorSlowStart(t *testing.T) {
	for _, bal := range balances {
		p := New("p", bal, specs(2))
		p.SetSlowStart(time.Hour)
		p.Backend("cas1").SetHealthy(false)
		p.Backend("cas1").SetHealthy(true) // back up now
		if got := share(p, 2000); got["cas1"] > 0.05 {
			t.Errorf("%s: a backend back up for an instant of a 1h slow start got %.3f of new clients", bal, got["cas1"])
		}
	}
}

// Every balance method leaves a drained backend and one in maintenance
// without new clients.
func TestEverySelectorSkipsDrainAndMaint(t *testing.T) {
	for _, bal := range balances {
		for _, a := range []AdminState{Drain, Maint} {
			p := New("p", bal, specs(3))
			p.Backend("cas1").SetAdminState(a)
			if got := share(p, 600); got["cas1"] != 0 || got[""] != 0 {
				t.Errorf("%s: cas1 in %s got %.3f of new clients (none placed: %.3f)", bal, a, got["cas1"], got[""])
			}
		}
	}
}

// Weighted round robin interleaves the turns (smooth weighted round
// robin): with weights 3:3:1 no backend gets more than two new clients
// in a row, where the old walk gave each its whole weight in a row.
func TestRoundRobinInterleaves(t *testing.T) {
	s := specs(3)
	s[0].Weight, s[1].Weight = 3, 3
	p := New("p", config.RoundRobin, s)
	run, longest, last := 0, 0, ""
	count := map[string]int{}
	for range 70 {
		b := p.Choose(1, nil).Name
		count[b]++
		if b == last {
			run++
		} else {
			run, last = 1, b
		}
		longest = max(longest, run)
	}
	if longest > 2 {
		t.Errorf("a backend got %d new clients in a row", longest)
	}
	if count["cas1"] != 30 || count["cas2"] != 30 || count["cas3"] != 10 {
		t.Errorf("70 turns gave %v, want 30, 30, 10", count)
	}
}
