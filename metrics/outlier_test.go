//go:build linux

package metrics

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/stickylb/stickylb/config"
	"github.com/stickylb/stickylb/kit/lbtest"
	"github.com/stickylb/stickylb/pool"
	"github.com/stickylb/stickylb/server"
)

// stickylb_backend_ejected says which backend is ejected now, and
// stickylb_outlier_ejections_total counts each ejection under the rule
// that made it, every reason at zero from the first scrape; an ejection
// the pool held back (never the last) is counted apart.
func TestOutlierMetrics(t *testing.T) {
	_, ports := lbtest.StartBackends(t, []string{"127.0.0.11", "127.0.0.12"}, 1)
	cfg, err := config.Parse("m.toml", []byte(fmt.Sprintf("[listener.rpc]\nlisten = \"127.0.0.1:0\"\npool = \"cas\"\nbackend_port = %d\n", ports[0])+
		"[pool.cas.health]\nenabled = false\n[pool.cas]\ndcerpc = \"calls\"\n[pool.cas.outlier]\nconsecutive_bind_rejections = 2\nejection_time = \"1m\"\n"+
		"[pool.cas.backend.cas1]\naddress = \"127.0.0.11\"\n[pool.cas.backend.cas2]\naddress = \"127.0.0.12\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m := New(reg, Build{})
	srv, err := server.New(cfg, server.Options{})
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
	series := func(name, backend, reason string) string {
		if reason == "" {
			return fmt.Sprintf(`%s{backend=%q,pool="cas"}`, name, backend)
		}
		return fmt.Sprintf(`%s{backend=%q,pool="cas",reason=%q}`, name, backend, reason)
	}
	if got := sample(t, reg, series("stickylb_backend_ejected", "cas1", "")); got != 0 {
		t.Fatalf("cas1 ejected %v before any outcome", got)
	}
	if n := testutil.CollectAndCount(m.state, "stickylb_outlier_ejections_total"); n != 2*len(pool.EjectReasons) {
		t.Fatalf("%d ejection series, want one per backend and reason", n)
	}
	p := srv.Pool("cas")
	for _, b := range []string{"cas1", "cas2"} { // cas2 is the last: held back
		p.Backend(b).ObserveRPC(pool.BindRejected)
		p.Backend(b).ObserveRPC(pool.BindRejected)
	}
	want := map[string]float64{
		series("stickylb_backend_ejected", "cas1", ""):                                    1,
		series("stickylb_backend_ejected", "cas2", ""):                                    0,
		series("stickylb_outlier_ejections_total", "cas1", "consecutive_bind_rejections"): 1,
		series("stickylb_outlier_ejections_total", "cas1", "consecutive_faults"):          0,
		series("stickylb_outlier_ejections_total", "cas2", "consecutive_bind_rejections"): 0,
		series("stickylb_outlier_ejections_held_total", "cas2", ""):                       1,
	}
	for s, v := range want {
		if got := sample(t, reg, s); got != v {
			t.Errorf("%s = %v, want %v", s, got, v)
		}
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}
