//go:build linux

package server

import (
	"bytes"
	"context"
	"slices"
	"time"

	"github.com/stickylb/stickylb/event"

	"github.com/stickylb/stickylb/cluster"
	"github.com/stickylb/stickylb/config"
)

// startCluster makes this server a cluster member when cfg asks for one.
// The member shares the tables of the pools as they are at each moment,
// so a reload that adds a pool shares it too. Cluster settings themselves
// apply at the next restart, but for the keyring (reloadKeys).
func (s *Server) startCluster(cfg *config.Config) error {
	if !cfg.Cluster.Enabled() {
		return nil
	}
	m, err := cluster.Start(cluster.Options{Config: cfg.Cluster, Pins: &s.pins, HoldEvery: holdEvery(cfg),
		Log: s.log, OnMember: s.memberChanged, Decisions: s.decisions, OnClose: s.onClose,
		// Off memberlist's goroutine, which calls with its lock held:
		// watchViews rechecks, once for any number of updates meanwhile.
		OnViews: func() {
			select {
			case s.views <- struct{}{}:
			default:
			}
		}})
	if err != nil {
		return err
	}
	s.cluster.Store(m)
	return nil
}

// holdEvery is how often a member repeats the pins it holds connections
// of: an eighth of the shortest TTL, from a second to five minutes, so a
// hold always outlasts the gap to the next repeat by far.
func holdEvery(cfg *config.Config) time.Duration {
	every := 5 * time.Minute
	for _, p := range cfg.Pools {
		every = min(every, p.Affinity.TTL.Duration/8)
	}
	return max(every, time.Second)
}

// joinCluster waits, up to cluster.sync_timeout, for a whole table from a
// peer, so that this member serves knowing every client's pin.
func (s *Server) joinCluster() {
	m := s.cluster.Load()
	if m == nil {
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.current.Load().Cluster.SyncTimeout.Duration)
	defer cancel()
	m.Join(ctx)
}

// Cluster returns the cluster member, or nil when there is no cluster.
func (s *Server) Cluster() *cluster.Member { return s.cluster.Load() }

// Ready says whether this server should be sent clients: not once it is
// stopping, nor before its first cluster sync.
func (s *Server) Ready() bool {
	if s.Stopping() {
		return false
	}
	m := s.cluster.Load()
	return m == nil || m.Synced()
}

// reloadKeys applies a changed gossip keyring (secret_file re-read by the
// reload) to the running member, so a key is changed member by member
// with reloads, no restart and no partition.
func (s *Server) reloadKeys(before, after config.Cluster) {
	m := s.cluster.Load()
	if m == nil || slices.EqualFunc(before.Keys, after.Keys, bytes.Equal) {
		return
	}
	if err := m.SetKeys(after.Keys); err != nil {
		s.log.Warn("cluster keyring not changed", "error", err)
		return
	}
	s.log.Info("cluster keyring changed", "keys", len(after.Keys))
}

// recheckPeers holds back from new clients every backend some alive
// member lacks (a rolling change that adds a CAS, one member at a time):
// a client this member pinned there would be moved off it by the member
// that lacks it, so until every member has it, it only keeps what it
// has. It logs each change of that.
func (s *Server) recheckPeers() { s.recheck(s.Pools()) }

// watchViews rechecks the peers after what they published changed, one
// recheck at a time, so that an older view never lands after a newer
// one.
func (s *Server) watchViews() {
	defer s.bg.Done()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.views:
			s.recheckPeers()
		}
	}
}

func (s *Server) recheck(pools []PoolView) {
	m := s.cluster.Load()
	for _, p := range pools {
		for _, b := range p.Pool.Backends() {
			var lacking []string
			if m != nil {
				lacking = m.Lacking(p.Name, b.Name)
			}
			if b.SetPending(len(lacking) > 0) {
				if len(lacking) > 0 {
					s.log.Warn("backend takes no new clients until every cluster member has it (their configs differ)", "pool", p.Name, "backend", b.Name, "lacking", lacking)
				} else {
					s.log.Info("every cluster member has the backend now: it takes new clients", "pool", p.Name, "backend", b.Name)
				}
			}
		}
	}
}

// memberChanged tells the stream of a cluster member joining, leaving or
// failing.
func (s *Server) memberChanged(name, what string) {
	s.opts.Events.Publish(event.Event{Kind: event.Member, Member: name, What: "cluster member " + name + " " + what})
}
