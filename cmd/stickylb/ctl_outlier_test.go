//go:build linux

package main

import (
	"context"
	"fmt"
	"net/http/httptest"
	"regexp"
	"testing"
	"time"

	"github.com/stickylb/stickylb/admin"
	"github.com/stickylb/stickylb/config"
	"github.com/stickylb/stickylb/kit/lbtest"
	"github.com/stickylb/stickylb/pool"
	"github.com/stickylb/stickylb/server"
)

// ctl backends shows an ejected CAS as up and ejected, with the rule,
// until when and how many in a row, against a real server and API.
func TestCtlBackendsShowsEjection(t *testing.T) {
	_, ports := lbtest.StartBackends(t, []string{"127.0.0.11", "127.0.0.12"}, 1)
	cfg, err := config.Parse("lb.toml", []byte(fmt.Sprintf("[listener.l0]\nlisten = \"127.0.0.1:0\"\npool = \"cas\"\nbackend_port = %d\n", ports[0])+
		"[pool.cas.health]\nenabled = false\n[pool.cas]\ndcerpc = \"calls\"\n[pool.cas.outlier]\nfault_rate = 50\nmin_requests = 4\nejection_time = \"1m\"\n"+
		"[pool.cas.backend.cas1]\naddress = \"127.0.0.11\"\n[pool.cas.backend.cas2]\naddress = \"127.0.0.12\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(cfg, server.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	a := admin.New(admin.Options{Server: srv, Version: "test"})
	t.Cleanup(a.Close)
	api := httptest.NewServer(a)
	t.Cleanup(api.Close)
	cas2 := srv.Pool("cas").Backend("cas2")
	for _, o := range []pool.RPCOutcome{pool.CallOK, pool.CallFault, pool.CallOK, pool.CallFault} {
		cas2.ObserveRPC(o)
	}
	e, ok := cas2.Ejected()
	if !ok {
		t.Fatal("cas2 not ejected at 2 faults in 4 calls")
	}
	code, out := ctlOut("--admin", api.URL, "backends")
	until := e.Until.Local().Format(time.TimeOnly)
	row := regexp.MustCompile(`(?m)^cas +cas2 +127\.0\.0\.12 +up, ejected .*ejected \(fault_rate\) until ` + until + `, 1 in a row$`)
	if code != 0 || !row.MatchString(out) || regexp.MustCompile(`(?m)^cas +cas1 .*ejected`).MatchString(out) {
		t.Fatalf("ctl backends = %d:\n%s\nwant cas2 up, ejected (fault_rate) until %s", code, out, until)
	}
}
