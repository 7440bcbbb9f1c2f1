//go:build linux

package server

import (
	"fmt"
	"net"
	"os"
	"time"

	"github.com/stickylb/stickylb/proxy"
)

// A binary upgrade hands this server's listening sockets, pins and
// operator decisions to a new process, then finishes the connections it
// has: no connection is refused or cut, no client moves.

// Handover stops accepting (the sockets stay open: connections wait in
// their accept queues), writes the pins and operator decisions for the
// new process and stops writing them, leaves the cluster (the new
// process joins with this member's name and address), and returns a
// duplicate of every listening socket for the new process. Shutdown
// then drains what is open, as on a stop; Resume undoes it all if the
// new process does not start.
func (s *Server) Handover() ([]*os.File, error) {
	tables := s.tables()
	s.mu.Lock()
	defer s.mu.Unlock()
	var files []*os.File
	for _, lr := range s.listeners {
		fs, err := lr.l.Files()
		if err != nil {
			closeFiles(files)
			return nil, err
		}
		files = append(files, fs...)
	}
	for _, lr := range s.listeners {
		lr.l.Close()
	}
	if s.store.Path() != "" { // Save appends the journal's pending changes first
		if _, err := s.store.Save(s.store.Path(), tables); err != nil {
			s.log.Error("pin snapshot for the new process failed: it starts from the journal", "error", err)
		}
	}
	s.decisions.Save()
	s.decisions.Pause()
	s.store.Pause()
	if m := s.cluster.Load(); m != nil {
		m.Leave(5 * time.Second)
		s.cluster.Store(nil)
	}
	return files, nil
}

// Resume serves again on the sockets Handover returned, when the new
// process failed to start: the listeners take the same sockets back,
// pins and decisions are written again, and the member rejoins.
func (s *Server) Resume(files []*os.File) error {
	socks, err := proxy.NewSockets(files)
	if err != nil {
		return err
	}
	defer socks.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, lr := range s.listeners {
		pc := s.current.Load().Pools[lr.cfg.Pool]
		l, err := socks.Listen(s.ctx, lr.cfg, pc.Keepalive.Duration, s.log)
		if err != nil {
			return fmt.Errorf("resume listener %s: %w", lr.cfg.Name, err)
		}
		l.SetRoute(lr.l.Route())
		s.listeners[k] = &listenerRT{l: l, cfg: lr.cfg}
		s.serve(l)
	}
	s.store.Resume()
	s.decisions.Resume()
	s.decisions.Save()
	if err := s.startCluster(s.current.Load()); err != nil {
		return err
	}
	// This process served in sync until the hand-over: its rejoin is no
	// first sync, and /readyz must not take it out of rotation meanwhile.
	if m := s.cluster.Load(); m != nil {
		m.AssumeSynced()
	}
	go s.joinCluster()
	return nil
}

func closeFiles(fs []*os.File) {
	for _, f := range fs {
		f.Close()
	}
}

// PauseConns stops this server's open connections at a safe point, at
// most wait for each, for a new process to take (proxy.HandOver); those
// that did not stop, and those it does not take, go on here.
func (s *Server) PauseConns(wait time.Duration) []*proxy.Parcel {
	s.mu.Lock()
	ls := make([]*proxy.Listener, 0, len(s.listeners))
	for _, lr := range s.listeners {
		ls = append(ls, lr.l)
	}
	s.mu.Unlock()
	deadline := time.Now().Add(wait) // one wait for all, not one per listener
	var out []*proxy.Parcel
	for _, l := range ls {
		out = append(out, l.Pause(deadline)...)
	}
	return out
}

// ReceiveConns takes the connections the process this one replaces
// hands over on uc, into the listeners of the same names, and returns
// how many it took.
func (s *Server) ReceiveConns(uc *net.UnixConn) (int, error) {
	s.mu.Lock()
	byName := make(map[string]*proxy.Listener, len(s.listeners))
	for _, lr := range s.listeners {
		byName[lr.cfg.Name] = lr.l
	}
	s.mu.Unlock()
	return proxy.Receive(uc, byName)
}
