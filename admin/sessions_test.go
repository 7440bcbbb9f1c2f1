//go:build linux

package admin

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stickylb/stickylb/config"
	"github.com/stickylb/stickylb/dcerpc"
	"github.com/stickylb/stickylb/kit/lbtest"
	"github.com/stickylb/stickylb/metrics"
	"github.com/stickylb/stickylb/server"
)

// rpcEnv is the API in front of a pool of two RPC backends (cas1 on
// 127.0.0.11, cas2 on .12) whose connections are read to their binds.
func rpcEnv(t *testing.T) *env {
	port := lbtest.StartRPCs(t, []string{"127.0.0.11", "127.0.0.12"}, func(i int) lbtest.RPCServer {
		return lbtest.RPCServer{Name: fmt.Sprintf("cas%d", i+1)}
	})
	return setupSource(t, "tok", func(int) string {
		return fmt.Sprintf("[listener.rpc]\nlisten = \"127.0.0.1:0\"\npool = \"cas\"\nbackend_port = %d\n", port) +
			"[pool.cas]\ndcerpc = \"binds\"\n[pool.cas.health]\nenabled = false\n" +
			"[pool.cas.backend.cas1]\naddress = \"127.0.0.11\"\n[pool.cas.backend.cas2]\naddress = \"127.0.0.12\"\n"
	})
}

// bind opens a connection from src that binds iface, and returns the
// backend that answered its first call.
func bind(t *testing.T, e *env, src string, iface dcerpc.Syntax) string {
	t.Helper()
	c, err := lbtest.DialRPC(src, e.srv.Addrs()["rpc"])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if res, err := c.Bind(iface, false); err != nil || !res.Accepted {
		t.Fatalf("bind %s: %v %v", iface, res, err)
	}
	who, err := c.Call(1)
	if err != nil {
		t.Fatal(err)
	}
	return string(who)
}

// GET /api/sessions shows each of a client's connections with the port,
// the CAS and the interface bound, and flags the client split once an
// operator's maintenance moved its pin while a connection stayed open on
// its old CAS: the new connection goes to the new CAS, the old one is
// off its pin.
func TestSessionsShowInterfacesAndFlagASplit(t *testing.T) {
	e := rpcEnv(t)
	client := "127.42.0.1"
	first := bind(t, e, client, dcerpc.EMSMDB)
	var page SessionsPage
	if code := e.do("GET", "/api/sessions?client="+client, "", "", &page); code != 200 || len(page.Clients) != 1 {
		t.Fatalf("HTTP %d, %+v", code, page)
	}
	cs := page.Clients[0]
	c := cs.Connections[0]
	if cs.Split || cs.Pinned != first || c.Backend != first || c.InterfaceName != "EMSMDB" || c.Bind != "accepted" ||
		c.Interface != "EMSMDB a4f1db00-ca47-1067-b31f-00dd010662da v0.81" || c.Port != int(e.srv.Addrs()["rpc"].Port()) || c.BoundAt == nil || !c.Read {
		t.Fatalf("one connection: %+v", cs)
	}
	if code := e.do("POST", "/api/backends/cas/"+first+"/state", "tok", `{"state":"maint"}`, nil); code != 200 {
		t.Fatalf("maint %s: HTTP %d", first, code)
	}
	second := bind(t, e, client, dcerpc.NSPI)
	if second == first {
		t.Fatalf("the second connection went to %s in maintenance", first)
	}
	e.do("GET", "/api/sessions", "", "", &page)
	if page.Split != 1 || len(page.Clients) != 1 {
		t.Fatalf("after the move: %+v", page)
	}
	cs = page.Clients[0]
	if !cs.Split || cs.Pinned != second || len(cs.Connections) != 2 || cs.SplitWhy == "" {
		t.Fatalf("split client shown as %+v", cs)
	}
	for _, c := range cs.Connections {
		want := map[string]string{first: "EMSMDB", second: "NSPI"}[c.Backend]
		if c.InterfaceName != want || c.OffPin != (c.Backend == first) {
			t.Errorf("connection %+v: want %s, off its pin %v", c, want, c.Backend == first)
		}
	}
	if code := e.do("GET", "/api/sessions?client=nope", "", "", nil); code != 400 {
		t.Errorf("a bad client: HTTP %d", code)
	}
}

// The dashboard, in a real browser, shows a split client with each
// connection's CAS and interface, and per CAS the binds, call times and
// faults that real traffic gave the metrics.
func TestDashboardShowsRPCSessions(t *testing.T) {
	bin := lbtest.Chromium(t)
	port := lbtest.StartRPCs(t, []string{"127.0.0.11", "127.0.0.12"}, func(i int) lbtest.RPCServer {
		return lbtest.RPCServer{Name: fmt.Sprintf("cas%d", i+1), Fault: func(op uint16) uint32 {
			if op == 9 {
				return 0x1c010003
			}
			return 0
		}}
	})
	cfg, err := config.Parse("lb.toml", []byte(fmt.Sprintf("[listener.rpc]\nlisten = \"127.0.0.1:0\"\npool = \"cas\"\nbackend_port = %d\n", port)+
		"[pool.cas]\ndcerpc = \"calls\"\n[pool.cas.health]\nenabled = false\n"+
		"[pool.cas.backend.cas1]\naddress = \"127.0.0.11\"\n[pool.cas.backend.cas2]\naddress = \"127.0.0.12\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m := metrics.New(reg, metrics.Build{Version: "v"})
	srv, err := server.New(cfg, server.Options{Observer: m.Observer()})
	if err != nil {
		t.Fatal(err)
	}
	m.Attach(srv)
	srv.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	api := New(Options{Server: srv, Gatherer: reg, Version: "v"})
	hs := httptest.NewServer(api)
	t.Cleanup(func() { hs.Close(); api.Close() })
	e := &env{t: t, srv: srv, http: hs, api: api}

	client := "127.44.0.1"
	first := bind(t, e, client, dcerpc.EMSMDB)
	if code := e.do("POST", "/api/backends/cas/"+first+"/state", "", `{"state":"maint"}`, nil); code != 200 {
		t.Fatalf("maint: HTTP %d", code)
	}
	second := bind(t, e, client, dcerpc.NSPI)
	c, err := lbtest.DialRPC(client, srv.Addrs()["rpc"])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Bind(dcerpc.EMSMDB, false)
	c.Call(9)

	dom := string(lbtest.Headless(t, bin, hs.URL+"/", "--dump-dom"))
	for _, want := range []string{`<section id="rpc">`, `id="rpc-split" class="split">1<`,
		`<tr data-session="` + client + `"`, "SPLIT: connections on cas1 and cas2, pinned to " + second,
		first + " (not its pin)", `>EMSMDB<`, `>NSPI<`, `>accepted<`,
		`<tr data-rpc-backend="cas/` + second + `">`, `class="num rpc-faults">1<`, "0x1c010003 (1)", " ms (since start)<"} {
		if !strings.Contains(dom, want) {
			t.Errorf("dashboard lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("DOM:\n%s", dom)
	}
}
