//go:build linux

package metrics

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stickylb/stickylb/pool"
	"github.com/stickylb/stickylb/server"
)

// stateCollector reads the server's current state at scrape time: table
// sizes and totals, backend states and weights, reloads. Reading at scrape
// time means a reload that replaces a table or a pool needs no
// re-registration.
type stateCollector struct {
	m   *Metrics
	srv atomic.Pointer[server.Server]
}

var (
	descEntries  = prometheus.NewDesc(ns+"_affinity_entries", "Pins held in the affinity table.", []string{"pool"}, nil)
	descLookups  = prometheus.NewDesc(ns+"_affinity_lookups_total", "Affinity lookups for new connections, by result (hit: the pin was used; miss: no pin).", []string{"pool", "result"}, nil)
	descPins     = prometheus.NewDesc(ns+"_affinity_pins_total", "New pins made.", []string{"pool"}, nil)
	descUnpins   = prometheus.NewDesc(ns+"_affinity_unpins_total", "Pins removed, by reason (expired, evicted, deleted).", []string{"pool", "reason"}, nil)
	descEvBusy   = prometheus.NewDesc(ns+"_affinity_evictions_active_total", "Evicted pins whose client still had connections open (only a reload that shrinks max_entries does this).", []string{"pool"}, nil)
	descFull     = prometheus.NewDesc(ns+"_affinity_full_total", "New clients left unpinned because the table was full of clients with open connections.", []string{"pool"}, nil)
	descThrot    = prometheus.NewDesc(ns+"_affinity_throttled_total", "New clients left unpinned because new pins were over affinity.new_pins_per_second.", []string{"pool"}, nil)
	descPrefix   = prometheus.NewDesc(ns+"_affinity_prefix_full_total", "New clients left unpinned because their prefix held affinity.max_pins_per_prefix pins.", []string{"pool"}, nil)
	descState    = prometheus.NewDesc(ns+"_backend_state", "Backend state: 1 for the current one of up, down, drain, maint, removed (by a reload, while it has connections or pins).", []string{"pool", "backend", "state"}, nil)
	descPending  = prometheus.NewDesc(ns+"_backend_cluster_pending", "1 while some cluster member lacks the backend (their configs differ): it takes no new clients until every member has it.", []string{"pool", "backend"}, nil)
	descAdmin    = prometheus.NewDesc(ns+"_backend_admin_state", "The operator's state of a backend, whatever its health: 1 for the current one of ready, drain, maint.", []string{"pool", "backend", "state"}, nil)
	descWeight   = prometheus.NewDesc(ns+"_backend_weight", "Backend weight.", []string{"pool", "backend"}, nil)
	descBConns   = prometheus.NewDesc(ns+"_backend_connections", "Open connections per backend.", []string{"pool", "backend"}, nil)
	descReloads  = prometheus.NewDesc(ns+"_config_reloads_total", "Config reloads, by result.", []string{"result"}, nil)
	descLastRel  = prometheus.NewDesc(ns+"_config_last_reload_success_timestamp_seconds", "When the config was last loaded successfully.", nil, nil)
	descBytes    = prometheus.NewDesc(ns+"_backend_bytes_total", "Bytes proxied, by backend and direction (to_backend, to_client), counted while connections are open.", []string{"pool", "backend", "direction"}, nil)
	descUp       = prometheus.NewDesc(ns+"_backend_up", "1 while the backend passes its health checks, 0 while it fails them.", []string{"pool", "backend"}, nil)
	descChanged  = prometheus.NewDesc(ns+"_backend_last_change_timestamp_seconds", "When the backend's health or admin state last changed (0: never).", []string{"pool", "backend"}, nil)
	descSnaps    = prometheus.NewDesc(ns+"_snapshot_writes_total", "Pin snapshot writes, by result.", []string{"result"}, nil)
	descJournal  = prometheus.NewDesc(ns+"_journal_write_failures_total", "Failed pin journal appends and compactions (a full or read-only disk).", nil, nil)
	descLeftOut  = prometheus.NewDesc(ns+"_snapshot_pins_left_out", "Pins the last snapshot could not hold for lack of disk (it holds the newest that fit); 0 when it holds them all.", nil, nil)
	descPinPorts = prometheus.NewDesc(ns+"_pinhole_ports", "Ports learned from the endpoint mapper's answers that are open now (inspect_dcerpc).", []string{"listener"}, nil)
	descPinCli   = prometheus.NewDesc(ns+"_pinhole_clients", "Pinholes open now: (client, learned port) pairs admitted.", []string{"listener"}, nil)
	descPinLearn = prometheus.NewDesc(ns+"_pinholes_learned_total", "Ports handed to a client in an ept_map answer, learned.", []string{"listener"}, nil)
	descPinFail  = prometheus.NewDesc(ns+"_pinholes_open_failed_total", "Learned ports whose socket could not be opened (another process holds the port).", []string{"listener"}, nil)
	descPinUnpar = prometheus.NewDesc(ns+"_pinhole_unparsed_bytes_total", "Bytes on the endpoint mapper's connections that were forwarded unread: not DCE/RPC, or not an answer the reader understands.", []string{"listener"}, nil)
	descEjected  = prometheus.NewDesc(ns+"_backend_ejected", "1 while the backend is ejected as an outlier ([pool.NAME.outlier]): it takes no new clients, its pinned clients stay.", []string{"pool", "backend"}, nil)
	descEjects   = prometheus.NewDesc(ns+"_outlier_ejections_total", "Outlier ejections of the backend, by the rule that ejected it (consecutive_faults, consecutive_bind_rejections, fault_rate).", []string{"pool", "backend", "reason"}, nil)
	descEjHeld   = prometheus.NewDesc(ns+"_outlier_ejections_held_total", "Outlier ejections a rule asked for and the pool held back: max_ejected_share was reached, or no other backend could take a new client.", []string{"pool", "backend"}, nil)
	descLastSn   = prometheus.NewDesc(ns+"_snapshot_last_success_timestamp_seconds", "When the pin snapshot was last written successfully (0: never).", nil, nil)
)

var states = []string{"up", "down", "drain", "maint", "removed"}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descEntries, descLookups, descPins, descUnpins, descEvBusy, descFull, descThrot, descPrefix, descState, descAdmin, descPending, descWeight, descBConns, descBytes, descUp, descChanged, descReloads, descLastRel, descSnaps, descJournal, descLeftOut, descLastSn,
		descPinPorts, descPinCli, descPinLearn, descPinFail, descPinUnpar, descEjected, descEjects, descEjHeld} {
		ch <- d
	}
	for _, d := range clusterDescs {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.srv.Load()
	if s == nil {
		return
	}
	c.m.prime(s)
	if m := s.Cluster(); m != nil {
		collectCluster(ch, m)
	}
	for _, p := range s.Pools() {
		if p.Table != nil {
			st := p.Table.Stats()
			ch <- prometheus.MustNewConstMetric(descEntries, prometheus.GaugeValue, float64(p.Table.Len()), p.Name)
			ch <- prometheus.MustNewConstMetric(descLookups, prometheus.CounterValue, float64(st.Hits+st.Repins), p.Name, "hit")
			ch <- prometheus.MustNewConstMetric(descLookups, prometheus.CounterValue, float64(st.Misses), p.Name, "miss")
			ch <- prometheus.MustNewConstMetric(descPins, prometheus.CounterValue, float64(st.Pins), p.Name)
			ch <- prometheus.MustNewConstMetric(descUnpins, prometheus.CounterValue, float64(st.Expired), p.Name, "expired")
			ch <- prometheus.MustNewConstMetric(descUnpins, prometheus.CounterValue, float64(st.Evicted), p.Name, "evicted")
			ch <- prometheus.MustNewConstMetric(descUnpins, prometheus.CounterValue, float64(st.Deleted), p.Name, "deleted")
			ch <- prometheus.MustNewConstMetric(descEvBusy, prometheus.CounterValue, float64(st.EvictedActive), p.Name)
			ch <- prometheus.MustNewConstMetric(descFull, prometheus.CounterValue, float64(st.Full), p.Name)
			ch <- prometheus.MustNewConstMetric(descThrot, prometheus.CounterValue, float64(st.Throttled), p.Name)
			ch <- prometheus.MustNewConstMetric(descPrefix, prometheus.CounterValue, float64(st.PrefixFull), p.Name)
		}
		for _, b := range p.Listed() {
			cur := b.Status()
			for _, st := range states {
				v := 0.0
				if st == cur {
					v = 1
				}
				ch <- prometheus.MustNewConstMetric(descState, prometheus.GaugeValue, v, p.Name, b.Name, st)
			}
			ch <- prometheus.MustNewConstMetric(descPending, prometheus.GaugeValue, boolValue(b.Pending()), p.Name, b.Name)
			admin := b.AdminState()
			for _, st := range []pool.AdminState{pool.Ready, pool.Drain, pool.Maint} {
				ch <- prometheus.MustNewConstMetric(descAdmin, prometheus.GaugeValue, boolValue(st == admin), p.Name, b.Name, st.String())
			}
			ch <- prometheus.MustNewConstMetric(descWeight, prometheus.GaugeValue, float64(b.Weight()), p.Name, b.Name)
			ch <- prometheus.MustNewConstMetric(descBConns, prometheus.GaugeValue, float64(b.Active()), p.Name, b.Name)
			toB, toC := b.Bytes()
			ch <- prometheus.MustNewConstMetric(descBytes, prometheus.CounterValue, float64(toB), p.Name, b.Name, "to_backend")
			ch <- prometheus.MustNewConstMetric(descBytes, prometheus.CounterValue, float64(toC), p.Name, b.Name, "to_client")
			ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, boolValue(b.Healthy()), p.Name, b.Name)
			changed := 0.0
			if t := b.LastChange(); !t.IsZero() {
				changed = float64(t.UnixNano()) / 1e9
			}
			ch <- prometheus.MustNewConstMetric(descChanged, prometheus.GaugeValue, changed, p.Name, b.Name)
			collectOutlier(ch, p.Name, b)
		}
	}
	collectPinholes(ch, s)
	ok := s.Reloads.Load()
	if ok > 0 {
		ok-- // the first load is not a reload
	}
	ch <- prometheus.MustNewConstMetric(descReloads, prometheus.CounterValue, float64(ok), "success")
	ch <- prometheus.MustNewConstMetric(descReloads, prometheus.CounterValue, float64(s.ReloadFailures.Load()), "failure")
	ch <- prometheus.MustNewConstMetric(descLastRel, prometheus.GaugeValue, float64(s.LastReload.Load()))
	ch <- prometheus.MustNewConstMetric(descSnaps, prometheus.CounterValue, float64(s.SnapshotSaves.Load()), "success")
	ch <- prometheus.MustNewConstMetric(descSnaps, prometheus.CounterValue, float64(s.SnapshotFailures.Load()), "failure")
	ch <- prometheus.MustNewConstMetric(descJournal, prometheus.CounterValue, float64(s.JournalFailures.Load()))
	ch <- prometheus.MustNewConstMetric(descLeftOut, prometheus.GaugeValue, float64(s.LeftOut.Load()))
	ch <- prometheus.MustNewConstMetric(descLastSn, prometheus.GaugeValue, float64(s.LastSnapshot.Load()))
}

// collectOutlier reports a backend's outlier ejection and its
// ejections by reason (every reason, zero too, so rate() sees the first).
func collectOutlier(ch chan<- prometheus.Metric, poolName string, b *pool.Backend) {
	_, ejected := b.Ejected()
	ch <- prometheus.MustNewConstMetric(descEjected, prometheus.GaugeValue, boolValue(ejected), poolName, b.Name)
	by, held := b.Ejections()
	for _, r := range pool.EjectReasons {
		ch <- prometheus.MustNewConstMetric(descEjects, prometheus.CounterValue, float64(by[r]), poolName, b.Name, r.String())
	}
	ch <- prometheus.MustNewConstMetric(descEjHeld, prometheus.CounterValue, float64(held), poolName, b.Name)
}

// collectPinholes reports the ports learned by the listeners that follow
// the endpoint mapper.
func collectPinholes(ch chan<- prometheus.Metric, s *server.Server) {
	for name, st := range s.Pinholes() {
		ch <- prometheus.MustNewConstMetric(descPinPorts, prometheus.GaugeValue, float64(st.Ports), name)
		ch <- prometheus.MustNewConstMetric(descPinCli, prometheus.GaugeValue, float64(st.Clients), name)
		ch <- prometheus.MustNewConstMetric(descPinLearn, prometheus.CounterValue, float64(st.Learned), name)
		ch <- prometheus.MustNewConstMetric(descPinFail, prometheus.CounterValue, float64(st.OpenFailed), name)
		ch <- prometheus.MustNewConstMetric(descPinUnpar, prometheus.CounterValue, float64(st.Unparsed), name)
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
