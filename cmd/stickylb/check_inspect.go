//go:build linux

package main

import (
	"fmt"
	"maps"
	"slices"

	"github.com/stickylb/stickylb/config"
)

// dynamicRPC is where a CAS's endpoint mapper hands ports out: Windows'
// dynamic range once the CAS role is installed (6005-59530), and its
// default one (49152-65535).
var dynamicRPC = config.Ports{{First: 6005, Last: 65535}}

// inspectHow says what following the endpoint mapper takes on this
// host, for check's listener line.
func inspectHow(l *config.Listener) string {
	return fmt.Sprintf("follows the endpoint mapper: each port a CAS hands out is opened on %s on demand, for its client only, "+
		"and closed %s after its last connection; no BPF and no capability beyond binding %d, since the ports handed out are above 1023",
		l.Addr().Addr(), l.PinholeTimeout, l.Addr().Port())
}

// inspectProblems warns of listeners that take ports a CAS may hand out
// on the address a listener that follows the endpoint mapper opens
// them on: such a port cannot be opened for its client (counted in
// stickylb_pinholes_open_failed_total), and the client's connection goes
// to the other listener's pool instead.
func inspectProblems(cfg *config.Config) []string {
	var out []string
	names := slices.Sorted(maps.Keys(cfg.Listeners))
	for _, name := range names {
		l := cfg.Listeners[name]
		if !l.InspectDCERPC {
			continue
		}
		a, _ := l.ListenAddr()
		for _, other := range names {
			o := cfg.Listeners[other]
			oa, ops := o.ListenAddr()
			if other == name || (oa != a && !oa.IsUnspecified() && !a.IsUnspecified()) {
				continue
			}
			if p, ok := ops.Overlap(dynamicRPC); ok {
				out = append(out, cfg.At("listener."+name+".inspect_dcerpc",
					"listener %s takes port %d (%s) on the same address, inside the ports a CAS hands out (6005-65535): a port it takes "+
						"cannot be opened for following; set static RPC ports outside it, or drop the other listener", other, p, o.Listen).Error())
			}
		}
	}
	return out
}
