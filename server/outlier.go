//go:build linux

package server

import (
	"fmt"
	"time"

	"github.com/stickylb/stickylb/config"
	"github.com/stickylb/stickylb/event"
	"github.com/stickylb/stickylb/pool"
)

// outlierPolicy is pool pc's ejection policy as package pool takes it;
// nil when the pool has no [pool.NAME.outlier].
func outlierPolicy(pc *config.Pool) *pool.Outlier {
	o := pc.Outlier
	if !o.Enabled {
		return nil
	}
	return &pool.Outlier{ConsecutiveFaults: o.ConsecutiveFaults, ConsecutiveBindRejections: o.ConsecutiveBindRejections,
		FaultRate: o.FaultRate, MinRequests: o.MinRequests, Interval: o.Interval.Duration,
		EjectionTime: o.EjectionTime.Duration, MaxEjectionTime: o.MaxEjectionTime.Duration, MaxEjectedShare: o.MaxEjectedShare}
}

// watchOutliers publishes the pools' ejections and returns: at once when
// a pool says it ejected a backend (s.outliers), and when the soonest
// ejection in force ends. The pools decide by themselves; this goroutine
// only tells, so a slow subscriber never holds up an ejection.
func (s *Server) watchOutliers() {
	defer s.bg.Done()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		t.Stop()
		if next := s.reportOutliers(); !next.IsZero() {
			t.Reset(time.Until(next))
		}
		select {
		case <-s.ctx.Done():
			return
		case <-s.outliers:
		case <-t.C:
		}
	}
}

// reportOutliers publishes every pool's ejections and returns since it
// last asked, and says when the soonest ejection in force ends.
func (s *Server) reportOutliers() (next time.Time) {
	for _, v := range s.Pools() {
		changes, n := v.Pool.OutlierChanges()
		if !n.IsZero() && (next.IsZero() || n.Before(next)) {
			next = n
		}
		for _, c := range changes {
			s.publishOutlier(v.Name, c)
		}
	}
	return next
}

func (s *Server) publishOutlier(poolName string, c pool.OutlierChange) {
	e := c.Ejection
	if c.Returned {
		s.log.Info("backend takes new clients again: its outlier ejection ended", "pool", poolName, "backend", c.Backend.Name, "reason", e.Reason.String())
		s.opts.Events.Publish(event.Event{Kind: event.Outlier, Pool: poolName, Backend: c.Backend.Name, Up: true,
			What: "takes new clients again: ejection (" + e.Reason.String() + ") ended"})
		return
	}
	d := time.Until(e.Until).Round(time.Second)
	s.log.Warn("backend ejected as an outlier: no new clients, pinned clients stay", "pool", poolName, "backend", c.Backend.Name,
		"reason", e.Reason.String(), "until", e.Until.UTC().Format(time.RFC3339), "in_a_row", e.Count)
	s.opts.Events.Publish(event.Event{Kind: event.Outlier, Pool: poolName, Backend: c.Backend.Name,
		What: fmt.Sprintf("ejected (%s) for %s, until %s, ejection %d in a row: no new clients, pinned clients stay",
			e.Reason, d, e.Until.UTC().Format(time.TimeOnly), e.Count)})
}
