//go:build linux

package metrics

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stickylb/stickylb/config"
	"github.com/stickylb/stickylb/dcerpc"
	"github.com/stickylb/stickylb/kit/lbtest"
	"github.com/stickylb/stickylb/server"
)

// With dcerpc = "calls", binds are counted by backend, interface and
// result, every call's time is in its backend's histogram, and faults
// are counted by status: a known one by its hex, any other as "other".
// The series exist from the first scrape.
func TestRPCMetricsFollowCalls(t *testing.T) {
	addr := lbtest.StartRPC(t, "127.0.0.11", 0, lbtest.RPCServer{Name: "cas1",
		Accept: func(s dcerpc.Syntax) bool { return s == dcerpc.EMSMDB },
		Fault: func(op uint16) uint32 {
			return map[uint16]uint32{9: 0x1c010003, 10: 0xdeadbeef}[op]
		}})
	src := fmt.Sprintf("[listener.rpc]\nlisten = \"127.0.0.1:0\"\npool = \"cas\"\nbackend_port = %d\n", addr.Port()) +
		"[pool.cas]\ndcerpc = \"calls\"\n[pool.cas.health]\nenabled = false\n[pool.cas.backend.cas1]\naddress = \"127.0.0.11\"\n"
	cfg, err := config.Parse("m.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m := New(reg, Build{Version: "v"})
	srv, err := server.New(cfg, server.Options{Observer: m.Observer()})
	if err != nil {
		t.Fatal(err)
	}
	m.Attach(srv)
	if first := scrape(t, reg); !strings.Contains(first, `stickylb_rpc_binds_total{backend="cas1",interface="nspi",pool="cas",result="rejected"} 0`) ||
		!strings.Contains(first, `stickylb_rpc_call_seconds_count{backend="cas1",pool="cas"} 0`) {
		t.Errorf("first scrape lacks the RPC series:\n%s", first)
	}
	srv.Start()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}()
	c, err := lbtest.DialRPC("127.41.0.1", srv.Addrs()["rpc"])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Bind(dcerpc.EMSMDB, false); err != nil {
		t.Fatal(err)
	}
	for _, op := range []uint16{1, 1, 9, 10} {
		c.Call(op)
	}
	c.Bind(dcerpc.NSPI, true) // rejected
	c.Close()
	want := []string{`stickylb_rpc_binds_total{backend="cas1",interface="emsmdb",pool="cas",result="accepted"} 1`,
		`stickylb_rpc_binds_total{backend="cas1",interface="nspi",pool="cas",result="rejected"} 1`,
		`stickylb_rpc_call_seconds_count{backend="cas1",pool="cas"} 4`,
		`stickylb_rpc_faults_total{backend="cas1",pool="cas",status="0x1c010003"} 1`,
		`stickylb_rpc_faults_total{backend="cas1",pool="cas",status="other"} 1`}
	lbtest.Eventually(t, 5*time.Second, "the RPC series counted", func() bool {
		s := scrape(t, reg)
		for _, w := range want {
			if !strings.Contains(s, w) {
				return false
			}
		}
		return true
	})
}

// Every fault status with a label of its own is named in
// docs/operations.md, and any other status shares one label.
func TestFaultLabelsAreBoundedAndDocumented(t *testing.T) {
	b, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range dcerpc.KnownFaults() {
		if l := FaultLabel(s); !strings.Contains(string(b), "`"+l+"`") {
			t.Errorf("status %s is a label but docs/operations.md does not name it", l)
		}
	}
	for _, s := range []uint32{0, 1, 0x1c010004, 0xffffffff} {
		if l := FaultLabel(s); l != "other" {
			t.Errorf("status %#x labelled %q", s, l)
		}
	}
}
