//go:build linux

package lab

import (
	"fmt"
	"strings"

	"github.com/stickylb/stickylb/config"
	"github.com/stickylb/stickylb/kit/sim"
)

// dynamicWidth is each simulated host's dynamic range in the lab: small,
// so that a range listener fits in a socket per port where sk_lookup is
// not allowed (the lab runs without root).
const dynamicWidth = 40

// startArray starts the simulated CAS hosts: on the rig's three ports,
// or with ports dynamic, each on two ports of its own range from a block
// of 3 x dynamicWidth ports no earlier scenario of the run used.
func (r *rig) startArray(s Scenario) error {
	if s.Ports != "dynamic" {
		cases, err := sim.StartArray(CASHosts, r.ports[0], r.ports[1], r.ports[2], r.log)
		r.cases = cases
		return err
	}
	width := len(CASHosts) * dynamicWidth
	first := 0
	for attempt := 0; first == 0 && attempt < 100; attempt++ {
		first = 20000 + width*r.rng.IntN(12000/width) // below the ephemeral range, as the static ports
		for p := first; p < first+width; p++ {
			if r.used[p] {
				first = 0
				break
			}
		}
	}
	if first == 0 {
		return fmt.Errorf("no block of %d unused ports for the dynamic ranges", width)
	}
	for p := first; p < first+width; p++ {
		r.used[p] = true
	}
	r.ports = r.ports[:1]
	r.dynamic = config.PortRange{First: uint16(first), Last: uint16(first + len(CASHosts)*dynamicWidth - 1)}
	for i, h := range CASHosts {
		lo := first + i*dynamicWidth
		c, err := sim.StartCAS(sim.CASConfig{Name: fmt.Sprintf("cas%d", i+1), Host: h, EPMPort: r.ports[0],
			DynamicFirst: lo, DynamicLast: lo + dynamicWidth - 1, Log: r.log})
		if err != nil {
			for _, c := range r.cases {
				c.Close()
			}
			r.cases = nil
			return err
		}
		r.cases = append(r.cases, c)
	}
	return nil
}

// dynamicConfig is the config for a CAS array on dynamic ports. Balancer
// stickylb has one listener for the endpoint mapper's port and the whole
// block of the hosts' dynamic ranges; stickylb-fixed-ports one for the
// endpoint mapper's port alone; stickylb-follow the same, following the
// endpoint mapper (inspect_dcerpc), with no range. The range and the
// follower check each CAS as a real array is checked, with rpc checks of
// EMSMDB and NSPI through its endpoint mapper (the simulated CAS speaks
// DCE/RPC there). The fixed ports check the endpoint mapper's port with
// a TCP check: an rpc check would rightly find that the pool forwards
// none of the ports the hosts hand out, and take every host down, while
// this scenario shows what a client meets when they are up.
func dynamicConfig(vip string, epm int, dynamic config.PortRange, balancer string) string {
	ports := config.Ports{{First: uint16(epm), Last: uint16(epm)}}
	if balancer == "stickylb" {
		ports = append(ports, dynamic)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "[listener.epmap]\nlisten = \"%s:%s\"\npool = \"cas\"\n", vip, ports)
	if balancer == "stickylb-follow" {
		b.WriteString("inspect_dcerpc = true\n")
	}
	b.WriteString("[pool.cas]\nconnect_timeout = \"1s\"\n[pool.cas.health]\ninterval = \"100ms\"\ntimeout = \"200ms\"\nrise = 2\nfall = 2\n")
	if balancer == "stickylb-fixed-ports" {
		fmt.Fprintf(&b, "[pool.cas.check.epmap]\ntype = \"tcp\"\nport = %d\n", epm)
	} else {
		for _, c := range []struct{ name, iface string }{{"rpc-client-access", "emsmdb"}, {"address-book", "nspi"}} {
			fmt.Fprintf(&b, "[pool.cas.check.%s]\ntype = \"rpc\"\ninterface = %q\nport = %d\n", c.name, c.iface, epm)
		}
	}
	for i, h := range CASHosts {
		fmt.Fprintf(&b, "[pool.cas.backend.cas%d]\naddress = %q\n", i+1, h)
	}
	return b.String()
}
