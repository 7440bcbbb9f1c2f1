//go:build linux

package metrics

import (
	"context"
	"fmt"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stickylb/stickylb/event"

	"github.com/prometheus/common/expfmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/stickylb/stickylb/config"
	"github.com/stickylb/stickylb/kit/lbtest"
	"github.com/stickylb/stickylb/pool"
	"github.com/stickylb/stickylb/proxy"
	"github.com/stickylb/stickylb/server"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The first scrape already has every series, and the counters and
// connect-time histograms follow the connections made.
func TestMetricsFollowTraffic(t *testing.T) {
	bs, ports := lbtest.StartBackends(t, []string{"127.0.0.11", "127.0.0.12"}, 1)
	src := fmt.Sprintf("[listener.rpc]\nlisten = \"127.0.0.1:0\"\npool = \"cas\"\nbackend_port = %d\n", ports[0]) +
		"[pool.cas.health]\ninterval = \"50ms\"\n[pool.cas.backend.cas1]\naddress = \"127.0.0.11\"\n[pool.cas.backend.cas2]\naddress = \"127.0.0.12\"\n"
	cfg, err := config.Parse("m.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m := New(reg, Build{Version: "v-test", Commit: "c-test"})
	events := &event.Stream{}
	events.Subscribe(m.Event)
	srv, err := server.New(cfg, server.Options{Observer: m.Observer(), Events: events})
	if err != nil {
		t.Fatal(err)
	}
	m.Attach(srv)
	// Every series of the config exists from the first scrape, before
	// any traffic, with the build's own.
	for _, want := range []string{`stickylb_connections_refused_total{listener="rpc",reason="no-backend"} 0`,
		`stickylb_backend_connect_errors_total{backend="cas2",listener="rpc",pool="cas",reason="timeout"} 0`,
		`stickylb_connections_ended_total{listener="rpc",termination="backend-reset"} 0`,
		`stickylb_backend_bytes_total{backend="cas1",direction="to_client",pool="cas"} 0`,
		`stickylb_build_info{commit="c-test",goversion="` + runtime.Version() + `",version="v-test"} 1`,
		`stickylb_backend_up{backend="cas1",pool="cas"} 1`,
		`stickylb_backend_connect_duration_seconds_count{backend="cas2",pool="cas"} 0`} {
		if !strings.Contains(scrape(t, reg), want) {
			t.Errorf("first scrape lacks %s", want)
		}
	}
	srv.Start()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}()
	addr := srv.Addrs()["rpc"]
	owner := map[string]string{}
	for i := range 10 {
		c, err := lbtest.Connect(lbtest.ClientIP(i), addr)
		if err != nil {
			t.Fatal(err)
		}
		owner[lbtest.ClientIP(i)] = c.Backend
		c.Write([]byte("hello\n")) // 6 bytes to the backend, echoed back
		c.R.ReadString('\n')
		c.Close()
	}
	lbtest.Eventually(t, 5*time.Second, "10 closed connections", func() bool {
		return testutil.ToFloat64(m.closed.WithLabelValues("rpc", "cas", "cas1"))+testutil.ToFloat64(m.closed.WithLabelValues("rpc", "cas", "cas2")) == 10
	})
	// Each connection's connect time is in its backend's histogram.
	if n := testutil.CollectAndCount(m.connectTime); n != 2 {
		t.Errorf("%d connect-time series, want one per backend", n)
	}
	connects := 0
	for _, m := range connectCount.FindAllStringSubmatch(scrape(t, reg), -1) {
		n, _ := strconv.Atoi(m[1])
		connects += n
	}
	if connects != 10 {
		t.Errorf("connect-time histograms count %d connections, want 10", connects)
	}
	// A client of cas1 comes back after cas1 stopped listening: a re-pin.
	var victim string
	for src, b := range owner {
		if b == "cas1" {
			victim = src
		}
	}
	bs[0].StopListening()
	if _, err := lbtest.Who(victim, addr); err != nil {
		t.Fatal(err)
	}
	lbtest.Eventually(t, 5*time.Second, "cas1 down", func() bool { return !srv.Pool("cas").Backend("cas1").Healthy() })

	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("metric %s: %s", p.Metric, p.Text)
	}
	if got := testutil.ToFloat64(m.accepted.WithLabelValues("rpc")); got != 11 {
		t.Errorf("accepted = %v, want 11", got)
	}
	to := sample(t, reg, `stickylb_backend_bytes_total{backend="cas1",direction="to_backend",pool="cas"}`) +
		sample(t, reg, `stickylb_backend_bytes_total{backend="cas2",direction="to_backend",pool="cas"}`)
	if to != 60 {
		t.Errorf("bytes to backends = %v, want 60", to)
	}
	if got := testutil.ToFloat64(m.repins.WithLabelValues("cas", "refused")) + testutil.ToFloat64(m.repins.WithLabelValues("cas", "down")); got != 1 {
		t.Errorf("repins = %v, want 1", got)
	}
	// A re-pin because cas1 refused (health had not noticed yet) comes
	// with a counted connect error.
	if testutil.ToFloat64(m.repins.WithLabelValues("cas", "refused")) == 1 && testutil.ToFloat64(m.connectErrors.WithLabelValues("rpc", "cas", "cas1", "refused")) != 1 {
		t.Errorf("re-pinned for refusal but no refused connect error counted")
	}
	if testutil.ToFloat64(m.healthFail.WithLabelValues("cas", "cas1", "refused")) < 1 {
		t.Errorf("no refused health check counted for cas1")
	}
	exp := `
# HELP stickylb_backend_state Backend state: 1 for the current one of up, down, drain, maint, removed (by a reload, while it has connections or pins).
# TYPE stickylb_backend_state gauge
stickylb_backend_state{backend="cas1",pool="cas",state="down"} 1
stickylb_backend_state{backend="cas1",pool="cas",state="drain"} 0
stickylb_backend_state{backend="cas1",pool="cas",state="maint"} 0
stickylb_backend_state{backend="cas1",pool="cas",state="removed"} 0
stickylb_backend_state{backend="cas1",pool="cas",state="up"} 0
stickylb_backend_state{backend="cas2",pool="cas",state="down"} 0
stickylb_backend_state{backend="cas2",pool="cas",state="drain"} 0
stickylb_backend_state{backend="cas2",pool="cas",state="maint"} 0
stickylb_backend_state{backend="cas2",pool="cas",state="removed"} 0
stickylb_backend_state{backend="cas2",pool="cas",state="up"} 1
# HELP stickylb_affinity_entries Pins held in the affinity table.
# TYPE stickylb_affinity_entries gauge
stickylb_affinity_entries{pool="cas"} 10
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(exp), "stickylb_backend_state", "stickylb_affinity_entries"); err != nil {
		t.Error(err)
	}
	// No client address is ever a label.
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		for _, mm := range mf.GetMetric() {
			for _, l := range mm.GetLabel() {
				if strings.HasPrefix(l.GetValue(), "127.1.") {
					t.Errorf("metric %s has a client address as label %s", mf.GetName(), l.GetName())
				}
			}
		}
	}
}

// scrape renders the registry as Prometheus text.
func scrape(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, mf := range mfs {
		expfmt.MetricFamilyToText(&b, mf)
	}
	return b.String()
}

// sample is the value of one series of a scrape, 0 when it is absent.
func sample(t *testing.T, reg *prometheus.Registry, series string) float64 {
	t.Helper()
	for _, line := range strings.Split(scrape(t, reg), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

// Bytes are counted while a connection is open: an hours-long MAPI
// connection shows its traffic before it closes. Small messages count
// exactly; a bulk transfer on the splice path lags by less than a 1 MiB
// chunk until more data comes or it closes.
func TestBytesCountedWhileOpen(t *testing.T) {
	bs, ports := lbtest.StartBackends(t, []string{"127.0.0.11"}, 1)
	cfg, err := config.Parse("m.toml", []byte(fmt.Sprintf("[listener.rpc]\nlisten = \"127.0.0.1:0\"\npool = \"cas\"\nbackend_port = %d\n", ports[0])+
		"[pool.cas.health]\nenabled = false\n[pool.cas.backend.cas1]\naddress = \"127.0.0.11\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	_ = bs
	reg := prometheus.NewRegistry()
	m := New(reg, Build{})
	srv, err := server.New(cfg, server.Options{Observer: m.Observer()})
	if err != nil {
		t.Fatal(err)
	}
	m.Attach(srv)
	srv.Start()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}()
	c, err := lbtest.Connect(lbtest.ClientIP(50), srv.Addrs()["rpc"])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	big := strings.Repeat("x", 6<<20) + "\n" // past the bulk threshold: the splice path
	go c.Write([]byte("hello\n" + big))
	c.R.ReadString('\n')
	c.R.ReadString('\n')
	series := `stickylb_backend_bytes_total{backend="cas1",direction="to_backend",pool="cas"}`
	total := float64(6 + len(big))
	lbtest.Eventually(t, 5*time.Second, "bytes counted while open, within a splice chunk", func() bool { return sample(t, reg, series) > total-(1<<20) })
	c.Close()
	lbtest.Eventually(t, 5*time.Second, "every byte counted at close", func() bool { return sample(t, reg, series) == total })
}

var connectCount = regexp.MustCompile(`stickylb_backend_connect_duration_seconds_count\{backend="cas\d",pool="cas"\} (\d+)`)

// The metrics a proxied connection costs: accepted, opened (with its
// connect time) and ended, on series that exist.
func BenchmarkObserveConnection(b *testing.B) {
	m := New(prometheus.NewRegistry(), Build{})
	o := m.Observer()
	be := pool.NewBackend("cas1", "127.0.0.11", 1)
	be.Pool = "cas"
	for b.Loop() {
		o.Accepted("rpc")
		o.Opened("rpc", be, 300*time.Microsecond)
		o.Ended("rpc", proxy.Ending{Termination: proxy.EndClientClosed, Backend: be, Duration: time.Second, ToBackend: 100, ToClient: 100})
	}
}
