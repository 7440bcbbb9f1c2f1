//go:build linux

package proxy

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/stickylb/stickylb/affinity"
	"github.com/stickylb/stickylb/config"
	"github.com/stickylb/stickylb/pool"
)

// The pin rule, case by case, on a pool whose backends are set to each
// state directly: no sockets, no table.
func TestPolicyDecides(t *testing.T) {
	type state func(p *pool.Pool)
	down := func(name string) state { return func(p *pool.Pool) { p.Backend(name).SetHealthy(false) } }
	admin := func(name string, a pool.AdminState) state {
		return func(p *pool.Pool) { p.Backend(name).SetAdminState(a) }
	}
	cases := []struct {
		name    string
		policy  Policy
		cur     affinity.Current
		states  []state
		failed  []string
		failure DialFailure // how the failed backends failed; default refused
		want    string      // backend, or "" for an error
		why     affinity.RepinReason
		wantErr error
	}{
		{name: "no pin: balanced", cur: affinity.Current{}, want: "any"},
		{name: "pinned and up: kept", cur: affinity.Current{Backend: "cas2"}, want: "cas2"},
		{name: "pinned and draining: kept", cur: affinity.Current{Backend: "cas2"},
			states: []state{admin("cas2", pool.Drain)}, want: "cas2"},
		{name: "pinned and down: re-pinned", cur: affinity.Current{Backend: "cas2"},
			states: []state{down("cas2")}, want: "other", why: affinity.RepinDown},
		{name: "pinned and in maintenance: re-pinned", cur: affinity.Current{Backend: "cas2"},
			states: []state{admin("cas2", pool.Maint)}, want: "other", why: affinity.RepinMaint},
		{name: "pinned to a removed backend: re-pinned", cur: affinity.Current{Backend: "gone"},
			want: "other", why: affinity.RepinRemoved},
		{name: "pinned backend refused: re-pinned", cur: affinity.Current{Backend: "cas2"},
			failed: []string{"cas2"}, want: "other", why: affinity.RepinRefused},
		{name: "pinned backend timed out: re-pinned as a timeout", cur: affinity.Current{Backend: "cas2"},
			failed: []string{"cas2"}, failure: DialTimeout, want: "other", why: "timeout"},
		{name: "timeout with reject: refused", policy: Policy{Reject: true}, cur: affinity.Current{Backend: "cas2"},
			failed: []string{"cas2"}, failure: DialTimeout, wantErr: ErrRejected},
		{name: "down with reject: refused", policy: Policy{Reject: true}, cur: affinity.Current{Backend: "cas2"},
			states: []state{down("cas2")}, wantErr: ErrRejected},
		{name: "refused with reject: refused", policy: Policy{Reject: true}, cur: affinity.Current{Backend: "cas2"},
			failed: []string{"cas2"}, wantErr: ErrRejected},
		{name: "maintenance with reject: still re-pinned", policy: Policy{Reject: true},
			cur: affinity.Current{Backend: "cas2"}, states: []state{admin("cas2", pool.Maint)}, want: "other", why: affinity.RepinMaint},
		{name: "failback eligible: home", policy: Policy{Failback: true},
			cur: affinity.Current{Backend: "cas3", Home: "cas2"}, want: "cas2", why: affinity.RepinFailback},
		{name: "failback with connections open: stays", policy: Policy{Failback: true},
			cur: affinity.Current{Backend: "cas3", Home: "cas2", Active: 1}, want: "cas3"},
		{name: "failback to a draining home: stays", policy: Policy{Failback: true},
			cur: affinity.Current{Backend: "cas3", Home: "cas2"}, states: []state{admin("cas2", pool.Drain)}, want: "cas3"},
		{name: "failback off: stays", cur: affinity.Current{Backend: "cas3", Home: "cas2"}, want: "cas3"},
		{name: "all down: no backend", cur: affinity.Current{Backend: "cas1"},
			states: []state{down("cas1"), down("cas2"), down("cas3")}, wantErr: ErrNoBackend},
		{name: "no pin, all refused: no backend", failed: []string{"cas1", "cas2", "cas3"}, wantErr: ErrNoBackend},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pl := pool.New("cas", config.Hash, []pool.Spec{{Name: "cas1", Host: "h1", Weight: 1},
				{Name: "cas2", Host: "h2", Weight: 1}, {Name: "cas3", Host: "h3", Weight: 1}})
			for _, s := range c.states {
				s(pl)
			}
			var failed []Failure
			for _, f := range c.failed {
				how := c.failure
				if how == "" {
					how = DialRefused
				}
				failed = append(failed, Failure{pl.Backend(f), how})
			}
			b, why, err := c.policy.Place(pl, c.cur, 42, failed)
			if c.wantErr != nil {
				if !errors.Is(err, c.wantErr) || b != nil {
					t.Fatalf("got %v, %v; want error %v", b, err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("error %v", err)
			}
			switch c.want {
			case "any":
			case "other":
				if b.Name == c.cur.Backend || !b.TakesNew() {
					t.Fatalf("re-pinned to %s, which is the old backend or takes no new clients", b.Name)
				}
			default:
				if b.Name != c.want {
					t.Fatalf("backend %s, want %s", b.Name, c.want)
				}
			}
			if why != c.why {
				t.Fatalf("reason %q, want %q", why, c.why)
			}
		})
	}
}

// BenchmarkDecideHit is the whole decision for a client with a pin: the
// table's lookup under its lock, the policy, and the name lookups between
// them (see BenchmarkBackendByName in pool).
func BenchmarkDecideHit(b *testing.B) {
	r := &Route{Pool: pool.New("cas", config.Hash, []pool.Spec{{Name: "cas1", Host: "127.0.0.11", Weight: 1},
		{Name: "cas2", Host: "127.0.0.12", Weight: 1}, {Name: "cas3", Host: "127.0.0.13", Weight: 1}}),
		Table: affinity.NewTable(affinity.Config{})}
	key := affinity.Keyer{}.Key(netip.MustParseAddrPort("10.1.2.3:5000"))
	for range b.N {
		_, lease, err := place(r, key, nil)
		if err != nil {
			b.Fatal(err)
		}
		lease.Release()
	}
}
