package pool

import (
	"fmt"
	"github.com/stickylb/stickylb/config"
	"math"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/stickylb/stickylb/affinity"
)

func keyHash(i int) uint64 {
	a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
	return affinity.Keyer{}.Key(netip.AddrPortFrom(a, 1)).Hash()
}

func specs(n int) []Spec {
	var s []Spec
	for i := range n {
		s = append(s, Spec{Name: fmt.Sprintf("cas%d", i+1), Host: fmt.Sprintf("10.0.0.%d", i+1), Weight: 1})
	}
	return s
}

func choices(p *Pool, n int) []string {
	out := make([]string, n)
	for i := range n {
		if b := p.Choose(keyHash(i), nil); b != nil {
			out[i] = b.Name
		}
	}
	return out
}

// Hashing depends on backend names, not on their order in the file, so
// every instance with the same backends places a client alike.
func TestHashIgnoresListOrder(t *testing.T) {
	s := specs(5)
	a := choices(New("a", config.Hash, s), 2000)
	rand.Shuffle(len(s), func(i, j int) { s[i], s[j] = s[j], s[i] })
	b := choices(New("b", config.Hash, s), 2000)
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("client %d: %s with one backend order, %s with another", i, a[i], b[i])
		}
	}
}

// Hashing spreads clients evenly over equal backends, and a backend going
// down moves only its own clients.
func TestHashBalanceAndMinimalRemap(t *testing.T) {
	const clients = 30000
	p := New("cas", config.Hash, specs(4))
	before := choices(p, clients)
	share := map[string]int{}
	for _, b := range before {
		share[b]++
	}
	for name, n := range share {
		if f := float64(n) / clients; math.Abs(f-0.25) > 0.02 {
			t.Errorf("%s got %.3f of clients, want 0.25 ± 0.02", name, f)
		}
	}
	// Take cas2 down: only its clients move, and they spread over the rest.
	p.Backend("cas2").SetHealthy(false)
	after := choices(p, clients)
	for i := range before {
		if before[i] != "cas2" && after[i] != before[i] {
			t.Fatalf("client %d moved from healthy %s to %s when cas2 went down", i, before[i], after[i])
		}
		if after[i] == "cas2" {
			t.Fatalf("client %d was given down cas2", i)
		}
	}
	// Add cas5: only about 1/5 of clients would choose it, and every one
	// that changes chooses cas5.
	p.Backend("cas2").SetHealthy(true)
	p.Update(config.Hash, specs(5))
	grown := choices(p, clients)
	moved := 0
	for i := range before {
		if grown[i] != before[i] {
			moved++
			if grown[i] != "cas5" {
				t.Fatalf("client %d moved %s -> %s when cas5 was added", i, before[i], grown[i])
			}
		}
	}
	if f := float64(moved) / clients; math.Abs(f-0.2) > 0.02 {
		t.Errorf("adding a 5th backend moved %.3f of new choices, want about 0.2", f)
	}
}

// Hashing honours weights (3:1 gives three quarters), and a weight of 0
// takes no new client.
func TestWeights(t *testing.T) {
	s := specs(2)
	s[0].Weight = 3
	p := New("cas", config.Hash, s)
	n1 := 0
	const clients = 20000
	for _, b := range choices(p, clients) {
		if b == "cas1" {
			n1++
		}
	}
	if f := float64(n1) / clients; math.Abs(f-0.75) > 0.02 {
		t.Errorf("weight 3:1 gave cas1 %.3f of clients, want 0.75", f)
	}
	p.Backend("cas1").SetWeight(0)
	for i, b := range choices(p, 100) {
		if b != "cas2" {
			t.Fatalf("client %d given weight-0 backend %s", i, b)
		}
	}
}

// Drain keeps pinned clients but takes no new ones, maintenance drops
// pinned clients, a reload keeps surviving backends' objects and counts
// and marks removed ones, and with every backend down none is chosen.
func TestStatesAndRemoval(t *testing.T) {
	p := New("cas", config.Hash, specs(3))
	b1 := p.Backend("cas1")
	b1.SetAdminState(Drain)
	if b1.TakesNew() {
		t.Error("a draining backend takes new clients")
	}
	if ok, _ := b1.KeepsPinned(); !ok {
		t.Error("a draining backend drops its pinned clients")
	}
	b1.SetAdminState(Maint)
	if ok, why := b1.KeepsPinned(); ok || why != "maint" {
		t.Errorf("maint KeepsPinned = %v %q", ok, why)
	}
	b1.SetAdminState(Ready)
	b2 := p.Backend("cas2")
	b2.ConnOpened()
	removed := p.Update(config.Hash, specs(3)[:2]) // drop cas3
	if len(removed) != 1 || removed[0].Name != "cas3" || !removed[0].Removed() {
		t.Fatalf("removed = %v", removed)
	}
	if p.Backend("cas2") != b2 || b2.Active() != 1 {
		t.Errorf("a surviving backend lost its object or counts")
	}
	if ok, why := removed[0].KeepsPinned(); ok || why != "removed" {
		t.Errorf("removed backend keeps pins: %v %q", ok, why)
	}
	for _, b := range []*Backend{b1, b2} {
		b.SetHealthy(false)
	}
	if b := p.Choose(1, nil); b != nil {
		t.Errorf("chose %s with every backend down", b.Name)
	}
}

// Least-conn picks the idlest backend, round robin gives equal backends
// equal turns, and neither picks a backend the caller skips.
func TestLeastConnAndRoundRobin(t *testing.T) {
	p := New("cas", config.LeastConn, specs(3))
	p.Backend("cas1").ConnOpened()
	p.Backend("cas2").ConnOpened()
	if b := p.Choose(1, nil); b.Name != "cas3" {
		t.Errorf("least-conn chose %s, want the idle cas3", b.Name)
	}
	p.Update(config.RoundRobin, specs(3))
	seen := map[string]int{}
	for range 300 {
		seen[p.Choose(1, nil).Name]++
	}
	for _, n := range []string{"cas1", "cas2", "cas3"} {
		if seen[n] != 100 {
			t.Errorf("round-robin gave %s %d of 300", n, seen[n])
		}
	}
	skip := func(b *Backend) bool { return b.Name == "cas1" }
	for range 10 {
		if p.Choose(1, skip).Name == "cas1" {
			t.Fatal("round-robin chose a skipped backend")
		}
	}
}

// The operator states read back from their names, and an unknown name is
// an error.
func TestNames(t *testing.T) {
	for _, s := range []string{"ready", "drain", "maint"} {
		if a, err := ParseAdminState(s); err != nil || a.String() != s {
			t.Errorf("ParseAdmin(%q) = %v, %v", s, a, err)
		}
	}
}

// A backup takes new clients only while no other backend can, under
// every balance method: NLB's single-host rule, HAProxy's backup.
func TestBackupOnlyWhenPrimariesCannot(t *testing.T) {
	for _, bal := range []config.Balance{config.Hash, config.LeastConn, config.RoundRobin} {
		s := specs(3)
		s[1].Backup, s[2].Backup = true, true
		p := New("p", bal, s)
		count := func() map[string]int {
			m := map[string]int{}
			for _, name := range choices(p, 300) {
				m[name]++
			}
			return m
		}
		if got := count(); got["cas1"] != 300 {
			t.Fatalf("%s: with cas1 up, new clients went %v", bal, got)
		}
		p.Backend("cas1").MarkDown("test")
		// Least-conn with nothing open gives every client to the first.
		got := count()
		if got["cas2"]+got["cas3"] != 300 || (bal != config.LeastConn && (got["cas2"] == 0 || got["cas3"] == 0)) {
			t.Fatalf("%s: with cas1 down, new clients went %v; want the backups", bal, got)
		}
		p.Backend("cas1").MarkUp()
		if got := count(); got["cas1"] != 300 {
			t.Fatalf("%s: with cas1 back, new clients went %v", bal, got)
		}
	}
}

// A CAS in maintenance that reboots reads maint, not down: planned work
// stays visible while its checks fail (it read down before, and the down
// alert fired during patching); its health is still Healthy's.
func TestMaintenanceOutlastsHealth(t *testing.T) {
	b := NewBackend("cas1", "127.0.0.11", 1)
	b.SetAdminState(Maint)
	b.SetHealthy(false)
	if b.Status() != "maint" || b.Healthy() {
		t.Fatalf("in maintenance and failing checks: state %s, healthy %v; want maint, false", b.Status(), b.Healthy())
	}
	b.SetAdminState(Drain)
	if b.Status() != "down" {
		t.Fatalf("draining and failing checks: state %s, want down", b.Status())
	}
}
