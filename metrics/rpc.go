//go:build linux

package metrics

import (
	"fmt"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stickylb/stickylb/dcerpc"
	"github.com/stickylb/stickylb/pool"
	"github.com/stickylb/stickylb/proxy"
)

// rpcMetrics are what reading DCE/RPC learns, per CAS ([pool.NAME]
// dcerpc). Every label is bounded: interfaces are the three stickylb
// knows or "other", results three words, fault statuses the known ones
// (dcerpc.FaultName) by their hex or "other".
type rpcMetrics struct {
	binds, faults, unparsed *prometheus.CounterVec
	calls                   *prometheus.HistogramVec
}

// rpcInterfaces and bindResults are the binds' label values.
var (
	rpcInterfaces = []string{"emsmdb", "nspi", "epm", "other"}
	bindResults   = []string{"accepted", "rejected", "nak"}
)

func newRPCMetrics() rpcMetrics {
	return rpcMetrics{
		binds: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "rpc_binds_total",
			Help: "DCE/RPC binds and alter_contexts answered, by backend, interface (emsmdb, nspi, epm, other) and result (accepted, rejected, nak)."},
			[]string{"pool", "backend", "interface", "result"}),
		calls: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "rpc_call_seconds",
			Help:    "Time from a DCE/RPC request to its response or fault, by backend (dcerpc = \"calls\").",
			Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}},
			[]string{"pool", "backend"}),
		faults: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "rpc_faults_total",
			Help: "DCE/RPC calls answered with a fault, by backend and status (0x1c010003 and the other known statuses, or other)."},
			[]string{"pool", "backend", "status"}),
		unparsed: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "rpc_unparsed_bytes_total",
			Help: "Bytes on connections read as DCE/RPC that were not DCE/RPC or did not parse, forwarded unchanged."},
			[]string{"pool"}),
	}
}

// interfaceLabel is a bound interface as a label value.
func interfaceLabel(s dcerpc.Syntax) string {
	if n := s.Name(); n != "" {
		return strings.ToLower(n)
	}
	return "other"
}

// FaultLabel is a fault status as a label value: its hex for a known
// status, else "other".
func FaultLabel(status uint32) string {
	if dcerpc.FaultName(status) == "" {
		return "other"
	}
	return fmt.Sprintf("0x%08x", status)
}

// rpcOutcome counts a bind's answer or a call's end. The vectors are
// used directly: binds come once per connection, and calls only with
// dcerpc = "calls", which has left the zero-copy path already.
func (o *observer) rpcOutcome(_ string, b *pool.Backend, out proxy.RPCOutcome) {
	r := &o.m.rpc
	switch out.Kind {
	case proxy.RPCBind:
		res := "accepted"
		switch {
		case out.Result.Nak:
			res = "nak"
		case !out.Result.Accepted:
			res = "rejected"
		}
		r.binds.WithLabelValues(b.Pool, b.Name, interfaceLabel(out.Interface), res).Inc()
	case proxy.RPCCall:
		if out.Elapsed > 0 {
			r.calls.WithLabelValues(b.Pool, b.Name).Observe(out.Elapsed.Seconds())
		}
		if out.Fault {
			r.faults.WithLabelValues(b.Pool, b.Name, FaultLabel(out.Status)).Inc()
		}
	}
}

// primeRPC makes a pool's RPC series exist from the first scrape.
func (m *Metrics) primeRPC(poolName, backend string, calls bool) {
	for _, iface := range rpcInterfaces {
		for _, res := range bindResults {
			m.rpc.binds.WithLabelValues(poolName, backend, iface, res)
		}
	}
	if calls {
		m.rpc.calls.WithLabelValues(poolName, backend)
	}
	m.rpc.unparsed.WithLabelValues(poolName)
}
