//go:build linux

package server

import (
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/stickylb/stickylb/config"
	"github.com/stickylb/stickylb/persist"
	"github.com/stickylb/stickylb/pool"
	"github.com/stickylb/stickylb/proxy"
)

// The operators' decisions about backends (drain, maint, ready, weight;
// config.Operator) outlive a restart, kept in SNAPSHOT.operator beside
// the pins, and are the same at every cluster member: a decision made at
// any member is sent to the others at once and with every whole table,
// and of two decisions about one backend the later stamp wins.
//
// The decisions have a lock of their own, opsMu, and never take s.mu:
// they find backends in the published pools (Pools) and the file's
// weights in the published config (s.current). Decisions come in on
// memberlist's goroutines, which a reload or an upgrade holding s.mu
// must never wait on. opsMu is taken after s.mu where both are held,
// and nothing that calls into the cluster runs with opsMu held: the
// member reads the decisions back (operators).

type opKey struct{ pool, backend string }

// takeLocked applies op and holds it as the decision about its backend,
// its stamp seen by the decisions' clock. opsMu is held.
func (s *Server) takeLocked(op config.Operator) {
	s.opsClock.Observe(op.Version)
	s.applyOpLocked(op)
	s.ops[opKey{op.Pool, op.Backend}] = op
}

// held is the decision held about a backend, if there is one.
func (s *Server) held(poolName, backend string) (config.Operator, bool) {
	s.opsMu.Lock()
	defer s.opsMu.Unlock()
	op, ok := s.ops[opKey{poolName, backend}]
	return op, ok
}

// change makes the decision about a backend what edit makes of the one
// held (or of the file's), stamped now, at every member and across
// restarts.
func (s *Server) change(poolName, backend string, edit func(*config.Operator)) (*pool.Backend, error) {
	b, err := s.backendNamed(poolName, backend)
	if err != nil {
		return nil, err
	}
	s.opsMu.Lock()
	op, ok := s.ops[opKey{poolName, b.Name}]
	if !ok {
		op = config.Operator{Pool: poolName, Backend: b.Name, State: pool.Ready.String(), Weight: -1}
	}
	edit(&op)
	op.Version = s.opsClock.Now()
	s.takeLocked(op)
	s.opsMu.Unlock()
	s.publishOps([]config.Operator{op})
	return b, nil
}

// publishOps writes the decisions held to disk and tells the other
// members of shared (and, in this member's published view, of all). It
// runs without opsMu.
func (s *Server) publishOps(shared []config.Operator) {
	s.saveOps()
	if m := s.cluster.Load(); m != nil {
		if len(shared) > 0 {
			m.ShareOperators(shared)
		}
		m.PublishDecisions()
	}
}

// Agreement says which other cluster members hold the decision about a
// backend this member holds, in words for the API: "" without a cluster
// or a decision.
func (s *Server) Agreement(poolName, backend string) string {
	m := s.cluster.Load()
	if m != nil {
		if lacking := m.Lacking(poolName, backend); len(lacking) > 0 {
			return strings.Join(lacking, ", ") + " lack it: no new clients until every member has it"
		}
	}
	op, ok := s.held(poolName, backend)
	if m == nil || !ok {
		return ""
	}
	a := m.Agree(op)
	var parts []string
	if len(a.NotYet) > 0 {
		parts = append(parts, strings.Join(a.NotYet, ", ")+" not heard yet")
	}
	if len(a.Newer) > 0 {
		parts = append(parts, strings.Join(a.Newer, ", ")+" newer")
	}
	if len(parts) == 0 {
		return "agreed"
	}
	return strings.Join(parts, "; ")
}

// fileWeight is the weight the config file in effect gives a backend.
func (s *Server) fileWeight(poolName, backend string) int {
	if p := s.current.Load().Pools[poolName]; p != nil {
		if b := p.Backends[backend]; b != nil {
			return b.Weight
		}
	}
	return -1
}

// applyOp makes a backend what op says: its state, a drain's deadline
// (a deadline already past is maintenance at once) and the operator's
// weight while the file's weight is still the one it was set over. A
// backend this member does not have is left alone. opsMu is held.
func (s *Server) applyOpLocked(op config.Operator) {
	b, err := s.backendNamed(op.Pool, op.Backend)
	if err != nil {
		return
	}
	st, err := pool.ParseAdminState(op.State)
	if err != nil {
		return
	}
	if t := s.drainTimers[b]; t != nil {
		t.Stop()
		delete(s.drainTimers, b)
	}
	b.SetAdminState(st)
	if st == pool.Drain && op.DrainUntil > 0 {
		left := time.Until(time.UnixMilli(op.DrainUntil))
		dt := &drainTimer{}
		dt.Timer = time.AfterFunc(max(left, 0), func() { s.drainDeadline(op.Pool, b, dt) })
		s.drainTimers[b] = dt
	}
	file := s.fileWeight(op.Pool, op.Backend)
	if op.Weight >= 0 && op.FileWeight == file {
		b.SetWeight(op.Weight)
	} else if file >= 0 {
		b.SetWeight(file)
	}
}

// onOperators takes decisions from another member: each newer than the
// one held is applied, kept and written to disk.
func (s *Server) onOperators(ops []config.Operator, from string) {
	s.opsMu.Lock()
	changed := false
	var news []config.Operator
	for _, op := range ops {
		cur, ok := s.ops[opKey{op.Pool, op.Backend}]
		if ok && cur.Version >= op.Version {
			continue
		}
		s.takeLocked(op)
		changed = true
		if !ok || cur.State != op.State || cur.Weight != op.Weight { // else the same decision, restamped
			news = append(news, op)
		}
	}
	s.opsMu.Unlock()
	for _, op := range news {
		s.log.Info("backend set by another member", "pool", op.Pool, "backend", op.Backend, "state", op.State, "weight", op.Weight, "member", from)
		if s.opts.OnOperator != nil {
			s.opts.OnOperator(op, "member "+from)
		}
	}
	if changed {
		s.publishOps(nil)
	}
}

// operators lists the decisions held, for a whole-table sync.
func (s *Server) operators() []config.Operator {
	s.opsMu.Lock()
	defer s.opsMu.Unlock()
	return slices.Collect(maps.Values(s.ops))
}

// saveOps writes the decisions beside the snapshot, at once: they are
// few and rare, and one lost in a crash would put a CAS being patched
// back in service. saveMu orders the writes: each writes the decisions
// as they are when it begins, so the last one written is the newest.
func (s *Server) saveOps() {
	if s.opsPath == "" || s.store.Paused() { // another process keeps them (Handover)
		return
	}
	s.saveMu.Lock()
	defer s.saveMu.Unlock()
	if err := persist.SaveOperators(s.opsPath, s.operators()); err != nil {
		s.SnapshotFailures.Add(1)
		s.log.Error("operator decisions not saved: a restart would forget the last drain, maint or weight", "error", err)
	}
}

// restoreOps applies the decisions saved before a restart, but those
// about backends the file no longer has.
func (s *Server) restoreOps() {
	if s.opsPath == "" {
		return
	}
	ops, err := persist.LoadOperators(s.opsPath)
	if err != nil {
		s.log.Warn("operator decisions ignored", "error", err)
		return
	}
	s.opsMu.Lock()
	defer s.opsMu.Unlock()
	kept := 0
	for _, op := range ops {
		if _, err := s.backendNamed(op.Pool, op.Backend); err != nil {
			continue
		}
		s.takeLocked(op)
		kept++
	}
	if kept > 0 {
		s.log.Info("operator decisions restored", "file", s.opsPath, "backends", kept)
	}
}

// forgetRemoved drops the decisions about backends a reload removed: a
// backend the file adds again starts ready. s.mu is held.
func (s *Server) forgetRemoved() {
	s.opsMu.Lock()
	n := len(s.ops)
	for k, op := range s.ops {
		if _, err := s.backendNamed(k.pool, k.backend); err != nil {
			delete(s.ops, k)
			continue
		}
		s.applyOpLocked(op) // weights: the reload set the file's
	}
	changed := len(s.ops) != n
	s.opsMu.Unlock()
	if changed {
		s.saveOps()
	}
}

// SetWeight sets a backend's weight until the file's weight for it
// changes; every cluster member takes it.
func (s *Server) SetWeight(poolName, backend string, w int) (*pool.Backend, error) {
	return s.change(poolName, backend, func(op *config.Operator) {
		op.Weight, op.FileWeight = w, s.fileWeight(poolName, backend)
	})
}

// drainDeadline ends the drain dt bounded, unless a later state change
// replaced it. Every member does it at once (they share DrainUntil):
// maintenance, and the backend's remaining connections closed.
func (s *Server) drainDeadline(poolName string, b *pool.Backend, dt *drainTimer) {
	s.opsMu.Lock()
	mine := s.drainTimers[b] == dt
	if mine {
		delete(s.drainTimers, b)
	}
	s.opsMu.Unlock()
	if !mine || b.AdminState() != pool.Drain {
		return
	}
	b.SetAdminState(pool.Maint)
	s.log.Info("drain deadline reached: backend in maintenance", "pool", poolName, "backend", b.Name)
	if s.opts.OnOperator != nil {
		s.opts.OnOperator(config.Operator{Pool: poolName, Backend: b.Name, State: pool.Maint.String(), Weight: -1}, "drain deadline reached")
	}
	s.closeBackend(b, proxy.EndCutDrainDeadline, "drain deadline reached")
}
