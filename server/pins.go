//go:build linux

package server

import (
	"time"

	"github.com/stickylb/stickylb/event"

	"github.com/stickylb/stickylb/affinity"
)

// pinEvent logs a change to pool name's table and passes it on.
func (s *Server) pinEvent(name string, p *poolRT) func(affinity.Event) {
	return func(ev affinity.Event) {
		switch {
		case ev.Kind == affinity.EventRepin:
			s.log.Info("client re-pinned", "pool", name, "client", ev.Key, "from", ev.From, "to", ev.Backend, "reason", ev.Repin)
		case ev.Kind == affinity.EventUnpin && ev.Unpin == affinity.Evicted && ev.Active > 0:
			// Only a shrinking reload evicts a pin in use; each one is
			// a session that may split, so none goes unlogged.
			s.log.Warn("pin of a client with open connections evicted by a smaller affinity.max_entries",
				"pool", name, "client", ev.Key, "backend", ev.Backend, "open_connections", ev.Active)
		case ev.Kind == affinity.EventFull:
			p.fullLog.Do(func(n int) {
				s.log.Warn("affinity table full of clients with open connections: new clients go unpinned; raise affinity.max_entries",
					"pool", name, "unpinned", n, "client", ev.Key, "backend", ev.Backend, "note", p.fullLog.Note())
			})
		case ev.Kind == affinity.EventThrottled:
			p.fullLog.Do(func(n int) {
				s.log.Warn("more new clients than affinity.new_pins_per_second: new clients go unpinned",
					"pool", name, "unpinned", n, "client", ev.Key, "backend", ev.Backend, "note", p.fullLog.Note())
			})
		case ev.Kind == affinity.EventPrefixFull:
			p.fullLog.Do(func(n int) {
				s.log.Warn("a client prefix holds affinity.max_pins_per_prefix pins: its new clients go unpinned",
					"pool", name, "unpinned", n, "client", ev.Key, "backend", ev.Backend, "note", p.fullLog.Note())
			})
		case ev.Kind == affinity.EventUnpin && ev.Unpin == affinity.Evicted:
			// One line per burst, not per pin: a full table evicts
			// on every new client.
			p.evLog.Do(func(n int) {
				s.log.Warn("affinity table full: evicted least recently used pins; raise affinity.max_entries",
					"pool", name, "evicted", n, "client", ev.Key, "backend", ev.Backend, "note", p.evLog.Note())
			})
		case ev.Kind == affinity.EventUnpin:
			s.log.Debug("affinity unpin", "pool", name, "client", ev.Key, "backend", ev.Backend, "reason", ev.Unpin)
		default:
			s.log.Debug("affinity "+ev.Kind.String(), "pool", name, "client", ev.Key, "backend", ev.Backend)
		}
		s.store.Note(name, ev)
		if m := s.cluster.Load(); m != nil {
			m.Note(name, ev)
		}
		s.opts.Events.Publish(event.Event{Kind: event.Pin, Pool: name, Pin: ev})
	}
}

// sweep frees expired pins and retired listeners now and then.
func (s *Server) sweep() {
	defer s.bg.Done()
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		for _, p := range s.Pools() {
			if p.Table != nil {
				p.Table.Sweep(4096)
			}
		}
		s.mu.Lock()
		s.pruneRetired()
		for _, p := range s.pools {
			if p.limiter != nil {
				p.limiter.Sweep(time.Now())
			}
		}
		s.mu.Unlock()
	}
}
