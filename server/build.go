//go:build linux

package server

import (
	"cmp"
	"maps"
	"net"
	"slices"

	"github.com/stickylb/stickylb/affinity"
	"github.com/stickylb/stickylb/config"
	"github.com/stickylb/stickylb/health"
	"github.com/stickylb/stickylb/pool"
	"github.com/stickylb/stickylb/proxy"
)

// route is what listener lc does with a connection, under pool p.
func (s *Server) route(lc *config.Listener, p *poolRT) *proxy.Route {
	pc := p.cfg
	d := s.opts.Dialer
	switch {
	case d != nil:
	case pc.Transparent:
		d = proxy.TransparentDialer{Keepalive: pc.Keepalive.Duration}
	default:
		d = proxy.NetDialer{Keepalive: pc.Keepalive.Duration}
	}
	var identify func(*net.TCPConn) (proxy.Origin, error)
	if lc.ProxyProtocol {
		identify = (&proxy.ProxyProtocol{Trusted: lc.TrustedNets(), Timeout: lc.ProxyHeaderTimeout.Duration}).Identify
	}
	return &proxy.Route{
		Name: lc.Name, Pool: p.pool, Table: p.table, Keyer: p.keyer, Port: lc.TargetPort(), ClientPorts: lc.ClientPorts(),
		Identify: identify, SendProxy: int(pc.SendProxy), DCERPC: pc.DCERPC,
		InspectDCERPC: lc.InspectDCERPC, PinholeTimeout: lc.PinholeTimeout.Duration,
		Policy:           proxy.Policy{Reject: pc.OnDown == config.Reject, Failback: pc.Failback},
		ConnectTimeout:   pc.ConnectTimeout.Duration,
		Retries:          pc.ConnectRetries,
		IdleTimeout:      pc.IdleTimeout.Duration,
		HalfCloseTimeout: pc.HalfCloseTimeout.Duration,
		Dialer:           d,
		Observer:         s.opts.Observer,
		PassiveFall:      pc.PassiveFall,
		Limits:           p.limiter,
		OnPassiveDown: func(b *pool.Backend, err error) {
			s.publishHealth(p.pool.Name, b.Name, false, err)
			if pc.CloseOnDown {
				s.closeBackend(b, proxy.EndCutBackendDown, "backend down (passive check) and close_on_down is set")
			}
		},
	}
}

// probe builds the health probe a check describes, on the given ports
// unless the check names its own; nil for a check with no port to probe.
// forwarded says which backend ports the pool forwards, for the rpc check.
func probe(ch *config.Check, ports []int, forwarded func(int) bool) (health.Probe, error) {
	if ch.Port != 0 {
		ports = []int{ch.Port}
	}
	expect, body, err := ch.Patterns()
	switch {
	case err != nil:
		return nil, err
	case ch.Type == config.RPCCheck:
		epm := cmp.Or(ch.Port, config.EndpointMapperPort)
		return health.RPC{EPMPort: epm, Interface: ch.RPCInterface(), Forwarded: forwarded}, nil
	case len(ports) == 0:
		return nil, nil
	}
	switch ch.Type {
	case config.SendExpectCheck:
		return health.SendExpect{Ports: ports, Send: ch.SendBytes(), Expect: ch.ExpectBytes(), Regexp: expect}, nil
	case config.TLSCheck:
		return health.TLS{Ports: ports, SNI: ch.SNI, Verify: ch.Verify}, nil
	case config.HTTPCheck, config.HTTPSCheck:
		h := health.HTTP{Ports: ports, TLS: ch.Type == config.HTTPSCheck, SNI: ch.SNI, Verify: ch.Verify,
			Method: ch.Method, Path: ch.Path, Host: ch.Host, StatusMin: ch.Status.Min, StatusMax: ch.Status.Max, Body: body}
		return h, nil
	}
	return health.TCP{Ports: ports}, nil
}

func keyer(pc *config.Pool) affinity.Keyer {
	return affinity.Keyer{Kind: pc.Affinity.Key, V4Prefix: pc.Affinity.IPv4Prefix, V6Prefix: pc.Affinity.IPv6Prefix}
}

func specs(pc *config.Pool) []pool.Spec {
	out := make([]pool.Spec, 0, len(pc.Backends))
	for _, name := range slices.Sorted(maps.Keys(pc.Backends)) {
		b := pc.Backends[name]
		out = append(out, pool.Spec{Name: name, Host: b.Address, Weight: b.Weight, MaxConns: b.MaxConns, Backup: b.Backup})
	}
	return out
}
