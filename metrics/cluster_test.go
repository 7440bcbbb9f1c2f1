//go:build linux

package metrics

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/stickylb/stickylb/config"
	"github.com/stickylb/stickylb/kit/lbtest"
	"github.com/stickylb/stickylb/server"
)

// A cluster member's series exist from the first scrape, and pass the
// linter.
func TestClusterSeries(t *testing.T) {
	src := fmt.Sprintf("[listener.rpc]\nlisten = \"127.0.0.1:0\"\npool = \"cas\"\nbackend_port = 135\n[pool.cas.backend.cas1]\naddress = \"127.0.0.11\"\n"+
		"[cluster]\nbind = %q\nnode_name = \"solo\"\n", lbtest.FreeAddr(t, "127.0.3.1"))
	cfg, err := config.Parse("m.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m := New(reg, Build{Version: "v-test"})
	srv, err := server.New(cfg, server.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}()
	m.Attach(srv)
	out := scrape(t, reg)
	for _, want := range []string{`stickylb_cluster_members{state="alive"} 1`, `stickylb_cluster_synced 0`,
		`stickylb_cluster_pin_records_total{direction="sent"} 0`, `stickylb_cluster_conflicts_total 0`,
		`stickylb_cluster_problems_total{kind="dropped"} 0`, `stickylb_cluster_convergence_delay_seconds_bucket{le="0.025"} 0`,
		`stickylb_affinity_repins_total{pool="cas",reason="peer"} 0`} {
		if !strings.Contains(out, want) {
			t.Errorf("first scrape lacks %s", want)
		}
	}
	srv.Start()
	if v := sample(t, reg, "stickylb_cluster_synced"); v != 1 {
		t.Errorf("synced = %v after start with no peer; want 1", v)
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("metric %s: %s", p.Metric, p.Text)
	}
}
