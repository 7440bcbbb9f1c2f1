//go:build linux

// Package metrics exports what stickylb does as Prometheus metrics: it
// follows connections (through a proxy.Observer), affinity events and health
// checks as they happen, and reads table sizes, backend states and reload
// counts from the server when scraped. It registers on the registry its
// caller owns, never on the global default one, and no client address ever
// becomes a label.
//
// It builds on Linux only, as server does.
package metrics

import (
	"runtime"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stickylb/stickylb/affinity"
	"github.com/stickylb/stickylb/localerr"
	"github.com/stickylb/stickylb/pool"
	"github.com/stickylb/stickylb/proxy"
	"github.com/stickylb/stickylb/server"
)

const ns = "stickylb"

// Metrics holds the collectors. Use Observer, PinEvent and Health as the
// server's hooks, and Attach once the server exists.
type Metrics struct {
	accepted      *prometheus.CounterVec
	active        *prometheus.GaugeVec
	closed        *prometheus.CounterVec
	connectErrors *prometheus.CounterVec
	stateChanges  *prometheus.CounterVec
	refused       *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	repins        *prometheus.CounterVec
	healthTime    *prometheus.HistogramVec
	connectTime   *prometheus.HistogramVec
	healthFail    *prometheus.CounterVec
	localErrors   *prometheus.CounterVec
	ended         *prometheus.CounterVec
	rpc           rpcMetrics
	state         *stateCollector
}

// Build is what stickylb_build_info says of the binary.
type Build struct{ Version, Commit string }

// New makes the collectors and registers them on reg.
func New(reg prometheus.Registerer, build Build) *Metrics {
	m := &Metrics{
		accepted: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "connections_accepted_total",
			Help: "Client connections accepted, by listener."}, []string{"listener"}),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "connections_active",
			Help: "Proxied connections open now, by listener and backend."}, []string{"listener", "pool", "backend"}),
		closed: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "connections_closed_total",
			Help: "Proxied connections closed, by listener and backend."}, []string{"listener", "pool", "backend"}),
		connectErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "backend_connect_errors_total",
			Help: "Failed connects to a backend, by reason (refused, timeout, unreachable, reset, dns, other)."},
			[]string{"listener", "pool", "backend", "reason"}),
		stateChanges: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "backend_state_changes_total",
			Help: "Backends going up or down (health), by the state they went to."}, []string{"pool", "backend", "to"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "connections_refused_total",
			Help: "Client connections closed without a backend, by reason (no-backend, connect-failed, rejected, identify, local-error, client-conns, client-rate)."},
			[]string{"listener", "reason"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "connection_duration_seconds",
			Help:    "Lifetime of proxied connections.",
			Buckets: []float64{0.01, 0.1, 1, 10, 60, 300, 1800, 3600, 7200, 14400, 43200, 86400}}, []string{"listener"}),
		repins: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "affinity_repins_total",
			Help: "Clients moved to another backend, by pool and reason (down, drain, maint, refused, removed)."},
			[]string{"pool", "reason"}),
		healthTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "health_check_duration_seconds",
			Help: "Time taken by active health checks.", Buckets: prometheus.ExponentialBuckets(0.0005, 4, 8)},
			[]string{"pool", "backend"}),
		connectTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "backend_connect_duration_seconds",
			Help: "Time from the first connect attempt to a connected backend leg, retries included.", Buckets: prometheus.ExponentialBuckets(0.0001, 4, 9)},
			[]string{"pool", "backend"}),
		healthFail: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "health_check_failures_total",
			Help: "Failed active health checks, by reason."}, []string{"pool", "backend", "reason"}),
		localErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "local_errors_total",
			Help: "Failures of this host's own resources (file descriptors, local ports, buffers, memory), by operation " +
				"(accept, dial, check) and errno. None of them counts against a backend."}, []string{"op", "errno"}),
		ended: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "connections_ended_total",
			Help: "Client connections ended, by listener and how (client-closed, backend-closed, client-reset, backend-reset, " +
				"idle-timeout, half-close-timeout, cut-shutdown, cut-backend-down, cut-drain-deadline, cut-operator, connect-failed, refused)."},
			[]string{"listener", "termination"}),
	}
	m.rpc = newRPCMetrics()
	m.state = &stateCollector{m: m}
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "build_info",
		Help: "Always 1; the labels say which stickylb this is."}, []string{"version", "commit", "goversion"})
	info.WithLabelValues(build.Version, build.Commit, runtime.Version()).Set(1)
	for _, op := range []string{"accept", "dial", "check"} {
		for _, errno := range localerr.Names() {
			m.localErrors.WithLabelValues(op, errno)
		}
	}
	reg.MustRegister(m.accepted, m.active, m.closed, m.connectErrors, m.stateChanges, m.refused, m.duration,
		m.repins, m.healthTime, m.connectTime, m.healthFail, m.localErrors, m.ended, m.state, info,
		m.rpc.binds, m.rpc.calls, m.rpc.faults, m.rpc.unparsed)
	return m
}

// Attach points the scrape-time collector at the running server, and
// makes every series of its config exist from the first scrape.
func (m *Metrics) Attach(s *server.Server) {
	m.prime(s)
	m.state.srv.Store(s)
}

// Observer returns the proxy.Observer that counts connections.
func (m *Metrics) Observer() proxy.Observer {
	o := &observer{m: m}
	return proxy.Observer{Accepted: o.accepted, Opened: o.opened, Ended: o.ended, Moved: o.moved,
		ConnectFailed: o.connectFailed, LocalError: o.localError, RPC: o.rpcOutcome}
}

// PinEvent counts affinity re-pins; use it as server.Options.OnPinEvent.
func (m *Metrics) PinEvent(poolName string, ev affinity.Event) {
	if ev.Kind == affinity.EventRepin {
		m.repins.WithLabelValues(poolName, string(ev.Repin)).Inc()
	}
}

// StateChange counts a backend going up or down; call it from
// server.Options.OnStateChange.
func (m *Metrics) StateChange(poolName, backend string, up bool) {
	to := "down"
	if up {
		to = "up"
	}
	m.stateChanges.WithLabelValues(poolName, backend, to).Inc()
}

// Health records a check; use it as server.Options.OnHealth.
func (m *Metrics) Health(poolName, backend string, err error, took time.Duration) {
	m.healthTime.WithLabelValues(poolName, backend).Observe(took.Seconds())
	switch errno := localerr.Name(err); {
	case errno != "":
		m.localErrors.WithLabelValues("check", errno).Inc()
	case err != nil:
		m.healthFail.WithLabelValues(poolName, backend, string(proxy.DialFailureOf(err))).Inc()
	}
}

// observer caches the labelled children it updates, so a connection
// costs map loads instead of hashing label values under the vectors'
// shared locks several times over.
type observer struct {
	m         *Metrics
	listeners sync.Map // listener name -> *listenerMetrics
	backends  sync.Map // backendKey -> *backendMetrics
}

type listenerMetrics struct {
	accepted prometheus.Counter
	duration prometheus.Observer
	ended    map[proxy.Termination]prometheus.Counter // every termination, from the listener's first connection
}

type backendKey struct {
	listener string
	b        *pool.Backend
}

type backendMetrics struct {
	active  prometheus.Gauge
	closed  prometheus.Counter
	connect prometheus.Observer
}

func (o *observer) listener(name string) *listenerMetrics {
	if v, ok := o.listeners.Load(name); ok {
		return v.(*listenerMetrics)
	}
	lm := &listenerMetrics{accepted: o.m.accepted.WithLabelValues(name), duration: o.m.duration.WithLabelValues(name),
		ended: map[proxy.Termination]prometheus.Counter{}}
	for _, end := range proxy.Terminations {
		lm.ended[end] = o.m.ended.WithLabelValues(name, string(end))
	}
	v, _ := o.listeners.LoadOrStore(name, lm)
	return v.(*listenerMetrics)
}

func (o *observer) backend(listener string, b *pool.Backend) *backendMetrics {
	k := backendKey{listener, b}
	if v, ok := o.backends.Load(k); ok {
		return v.(*backendMetrics)
	}
	v, _ := o.backends.LoadOrStore(k, &backendMetrics{
		active: o.m.active.WithLabelValues(listener, b.Pool, b.Name), closed: o.m.closed.WithLabelValues(listener, b.Pool, b.Name),
		connect: o.m.connectTime.WithLabelValues(b.Pool, b.Name)})
	return v.(*backendMetrics)
}

func (o *observer) accepted(listener string) { o.listener(listener).accepted.Inc() }

func (o *observer) opened(listener string, b *pool.Backend, connect time.Duration) {
	bm := o.backend(listener, b)
	bm.active.Inc()
	bm.connect.Observe(connect.Seconds())
}

// moved keeps the open connections' gauge true across a hand-over.
func (o *observer) moved(listener string, b *pool.Backend, in bool) {
	if in {
		o.backend(listener, b).active.Inc()
	} else {
		o.backend(listener, b).active.Dec()
	}
}

// ended counts every connection's end, and what it was: proxied (closed,
// no longer active, its duration) or refused.
func (o *observer) ended(listener string, e proxy.Ending) {
	lm := o.listener(listener)
	if c := lm.ended[e.Termination]; c != nil {
		c.Inc()
	}
	if e.Backend != nil {
		bm := o.backend(listener, e.Backend)
		bm.active.Dec()
		bm.closed.Inc()
		lm.duration.Observe(e.Duration.Seconds())
	}
	if e.RPCUnparsed > 0 && e.Backend != nil {
		o.m.rpc.unparsed.WithLabelValues(e.Backend.Pool).Add(float64(e.RPCUnparsed))
	}
	if e.Refusal != "" {
		o.m.refused.WithLabelValues(listener, string(e.Refusal)).Inc() // rare: the vector directly
	}
}

// Failures are rare; they use the vectors directly.
func (o *observer) connectFailed(listener string, b *pool.Backend, why proxy.DialFailure) {
	o.m.connectErrors.WithLabelValues(listener, b.Pool, b.Name, string(why)).Inc()
}

func (o *observer) localError(_, op, errno string) {
	o.m.localErrors.WithLabelValues(op, errno).Inc()
}
