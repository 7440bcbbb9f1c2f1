//go:build linux

package lab

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/stickylb/stickylb/config"
	"github.com/stickylb/stickylb/pool"
	"github.com/stickylb/stickylb/server"
)

// VIP2 is the second member's address in the two-member scenarios.
var VIP2 = "127.0.0.2"

// maintCAS is the CAS the two-member scenarios hold in maintenance from
// the start, so the first pins avoid it and differ from where the hash
// alone would place a third of the clients once it is back.
const maintCAS = "cas3"

// paired says whether a balancer is two stickylb members.
func paired(balancer string) bool {
	return balancer == "stickylb-pair" || balancer == "stickylb-independent"
}

// memberConfig is the lab's stickylb config on vip, with a [cluster]
// section when gossip is set: the member binds it on vip and lists peer.
func memberConfig(vip string, ports []int, key config.KeyKind, gossip int, peer string) string {
	cfg := stickylbConfig(vip, ports, key)
	if gossip == 0 {
		return cfg
	}
	return cfg + fmt.Sprintf("[cluster]\nbind = %q\npeers = [%q]\nnode_name = %q\nsync_timeout = \"3s\"\nsync_interval = \"2s\"\n",
		net.JoinHostPort(vip, fmt.Sprint(gossip)), net.JoinHostPort(peer, fmt.Sprint(gossip)), "lab-"+vip)
}

// startPair starts both members, at once so that their first cluster
// syncs find each other, and puts maintCAS in maintenance on both.
func (r *rig) startPair(s Scenario) error {
	gossip := 0
	if s.Balancer == "stickylb-pair" {
		var err error
		if gossip, err = freeGossipPort(r.rng, r.used); err != nil {
			return err
		}
	}
	vips := []string{VIP, VIP2}
	r.members = make([]*server.Server, 2)
	r.memberCfg = make([]*config.Config, 2)
	for i, vip := range vips {
		cfg, err := config.Parse(fmt.Sprintf("lab:%s:member%d", s.Name, i+1),
			[]byte(memberConfig(vip, r.ports, s.Affinity, gossip, vips[1-i])))
		if err != nil {
			return err
		}
		r.memberCfg[i] = cfg
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range vips {
		wg.Go(func() { r.members[i], errs[i] = r.startMember(i) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	r.setAdmin(pool.Maint)
	return nil
}

// startMember starts member i with an empty pin table.
func (r *rig) startMember(i int) (*server.Server, error) {
	srv, err := server.New(r.memberCfg[i], server.Options{Log: r.log.With("member", i+1)})
	if err != nil {
		return nil, fmt.Errorf("member %d: %w", i+1, err)
	}
	srv.Start()
	return srv, nil
}

// setAdmin sets maintCAS's admin state on every member, as an operator
// does on each box of a pair.
func (r *rig) setAdmin(a pool.AdminState) {
	for _, m := range r.members {
		if m != nil {
			m.Pool("cas").Backend(maintCAS).SetAdminState(a)
		}
	}
}

// memberRestart returns maintCAS to service (its would-be clients stay
// where they are pinned), then crashes member 2: the fleet is sent to
// member 1 alone, as a router withdraws a dead next hop, and member 2
// comes back with an empty table a tenth of the run later.
func (r *rig) memberRestart(d time.Duration) error {
	r.setAdmin(pool.Ready)
	time.Sleep(d / 20)
	r.fleet.SetTargets([]string{VIP})
	crashed := r.members[1]
	r.members[1] = nil
	if m := crashed.Cluster(); m != nil {
		m.Halt()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	crashed.Shutdown(ctx)
	cancel()
	time.Sleep(d / 10)
	srv, err := r.startMember(1)
	if err != nil {
		return err
	}
	r.members[1] = srv
	r.fleet.SetTargets([]string{VIP, VIP2})
	return nil
}

// freeGossipPort picks a port free for TCP and UDP on both members'
// addresses, from below the ephemeral range as startRig does.
func freeGossipPort(rng *rand.Rand, used map[int]bool) (int, error) {
	var last error
	for range 50 {
		p := 20000 + rng.IntN(12000)
		if used[p] {
			continue
		}
		used[p] = true
		if last = probe(p, VIP, VIP2); last == nil {
			return p, nil
		}
	}
	return 0, fmt.Errorf("no free cluster port on %s and %s: %w", VIP, VIP2, last)
}

// probe checks that port is free for TCP and UDP on each host.
func probe(port int, hosts ...string) error {
	for _, h := range hosts {
		addr := net.JoinHostPort(h, fmt.Sprint(port))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		ln.Close()
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return err
		}
		pc.Close()
	}
	return nil
}
