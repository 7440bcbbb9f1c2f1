//go:build linux

package server

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/stickylb/stickylb/event"

	"github.com/stickylb/stickylb/cluster"
	"github.com/stickylb/stickylb/proxy"
)

// ConnView is an open connection as the admin API shows it.
type ConnView struct {
	// ID is "LISTENER/N": N is unique within the listener. A listener a
	// reload replaced, which still has connections, is "LISTENER~old".
	ID       string
	Listener string
	Client   netip.AddrPort
	Pool     string
	Backend  string
	Since    time.Time
	// Port is the port the client dialled; RPC what reading its
	// DCE/RPC session learned, nil when it is not read.
	Port int
	RPC  *proxy.RPCSession
}

// connListeners returns every listener with its name for IDs, current
// ones first.
func (s *Server) connListeners() map[string]*proxy.Listener {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]*proxy.Listener{}
	add := func(name string, l *proxy.Listener) {
		out[name] = l
		// A following listener's learned ports are listeners of their
		// own; their connections are its clients'.
		for _, pl := range l.Pinholes().Listeners() {
			out[fmt.Sprintf("%s-pinhole:%d", name, pl.Addr().Port())] = pl
		}
	}
	for _, l := range s.retired {
		add(l.Name+"~old", l)
	}
	for _, lr := range s.listeners {
		add(lr.cfg.Name, lr.l)
	}
	return out
}

func view(name string, in proxy.ConnInfo) ConnView {
	return ConnView{ID: fmt.Sprintf("%s/%d", name, in.ID), Listener: strings.TrimSuffix(name, "~old"), Client: in.Client,
		Pool: in.Backend.Pool, Backend: in.Backend.Name, Since: in.Since, Port: in.Port, RPC: in.RPC}
}

// Connections returns the open connections for which match is true
// (nil: all), oldest first.
func (s *Server) Connections(match func(ConnView) bool) []ConnView {
	var out []ConnView
	for name, l := range s.connListeners() {
		for _, in := range l.Conns() {
			if v := view(name, in); match == nil || match(v) {
				out = append(out, v)
			}
		}
	}
	slices.SortFunc(out, func(a, b ConnView) int { return a.Since.Compare(b.Since) })
	return out
}

// CloseConnections closes the open connections for which match is true,
// as an operator's act, and returns how many it closed. Pins stay: the
// clients' next connections go where they went.
func (s *Server) CloseConnections(match func(ConnView) bool) int {
	n := 0
	for name, l := range s.connListeners() {
		n += l.CloseConns(func(in proxy.ConnInfo) bool { return match(view(name, in)) })
	}
	if n > 0 {
		s.log.Warn("connections closed by an operator", "connections", n)
	}
	return n
}

// CloseEverywhere closes, here and at every other cluster member, the
// open connections of client (an IP address) or to backend, in poolName
// when it is not ""; it returns how many it closed here and how many
// members it asked.
func (s *Server) CloseEverywhere(poolName, client, backend string) (closed, asked int) {
	closed = s.CloseConnections(closeMatch(cluster.CloseRequest{Pool: poolName, Client: client, Backend: backend}))
	if m := s.cluster.Load(); m != nil {
		asked = m.AskClose(cluster.CloseRequest{Pool: poolName, Client: client, Backend: backend})
	}
	return closed, asked
}

// onClose closes what another member asked to.
func (s *Server) onClose(req cluster.CloseRequest, from string) {
	if n := s.CloseConnections(closeMatch(req)); n > 0 {
		s.log.Info("connections closed at another member's request", "member", from, "client", req.Client, "backend", req.Backend, "closed", n)
		s.opts.Events.Publish(event.Event{Kind: event.Closed, Pool: req.Pool, Backend: req.Backend, Member: from,
			What: fmt.Sprintf("%d connections closed (client %q), asked by member %s", n, req.Client, from)})
	}
}

// closeMatch matches the connections req names.
func closeMatch(req cluster.CloseRequest) func(ConnView) bool {
	client, _ := netip.ParseAddr(req.Client)
	return func(v ConnView) bool {
		return (req.Pool == "" || v.Pool == req.Pool) && (req.Backend == "" || v.Backend == req.Backend) &&
			(req.Client == "" || v.Client.Addr().Unmap() == client.Unmap())
	}
}
