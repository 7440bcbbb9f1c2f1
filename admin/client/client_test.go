//go:build linux

package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/stickylb/stickylb/admin"
	"github.com/stickylb/stickylb/config"
	"github.com/stickylb/stickylb/kit/lbtest"
	"github.com/stickylb/stickylb/server"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, lbtest.IgnoreMemberlistProbes()...) }

// api is a real server and its admin API, on a loopback port and an
// admin socket, with token as its admin token.
type api struct {
	addr, socket, tokenFile string
}

func serve(t *testing.T, token string) api {
	t.Helper()
	bs, ports := lbtest.StartBackends(t, []string{"127.0.0.11", "127.0.0.12"}, 1)
	dir := t.TempDir()
	src := fmt.Sprintf("[listener.rpc]\nlisten = \"127.0.0.1:0\"\npool = \"cas\"\nbackend_port = %d\n[pool.cas.health]\nenabled = false\n", ports[0])
	for _, b := range bs {
		src += fmt.Sprintf("[pool.cas.backend.%s]\naddress = %q\n", b.Name, b.Host)
	}
	path := filepath.Join(dir, "lb.toml")
	os.WriteFile(path, []byte(src), 0o600)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(cfg, server.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	a := admin.New(admin.Options{Server: srv, Token: token, ConfigPath: path, Version: "test"})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sock, err := admin.ListenSocket(filepath.Join(dir, "admin.sock"))
	if err != nil {
		t.Fatal(err)
	}
	eps := []*admin.Endpoint{a.Serve(ln, nil), a.Serve(sock, nil)}
	t.Cleanup(func() {
		for _, ep := range eps {
			ep.Close()
		}
		a.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	tf := filepath.Join(dir, "token")
	os.WriteFile(tf, []byte(token+"\n"), 0o600)
	return api{addr: ln.Addr().String(), socket: sock.Path, tokenFile: tf}
}

// The typed calls, over TCP with the token and over the socket without
// it, return what the API did: a drain shows in the backends, a refusal
// carries the API's message and status.
func TestCalls(t *testing.T) {
	a := serve(t, "s3cret-token-for-tests-0123456789")
	ctx := context.Background()
	for name, target := range map[string]Target{
		"tcp":    {Admin: a.addr, AdminSet: true, TokenFile: a.tokenFile},
		"socket": {Socket: a.socket},
	} {
		t.Run(name, func(t *testing.T) {
			c, err := New(target)
			if err != nil {
				t.Fatal(err)
			}
			b, err := c.SetState(ctx, "cas", "cas1", "drain", "")
			if err != nil || b.State != "drain" {
				t.Fatalf("drain cas1: %+v %v", b, err)
			}
			st, err := c.Backends(ctx)
			if err != nil || len(st.Pools) != 1 || st.Pools[0].Backends[0].Admin != "drain" {
				t.Fatalf("backends after the drain: %+v %v", st, err)
			}
			if _, err := c.SetState(ctx, "cas", "cas1", "ready", ""); err != nil {
				t.Fatal(err)
			}
			_, err = c.SetWeight(ctx, "cas", "nosuch", 3)
			var ae *APIError
			if !errors.As(err, &ae) || ae.Status != 404 || !strings.Contains(ae.Message, "nosuch") {
				t.Fatalf("weight of a backend that is not there: %v; want the API's 404 naming it", err)
			}
			if res, err := c.Reload(ctx); err != nil || res.Status != "reloaded" {
				t.Fatalf("reload: %+v %v", res, err)
			}
			if page, err := c.Pins(ctx, PinQuery{Limit: 10}); err != nil || page.Total != 0 {
				t.Fatalf("pins: %+v %v", page, err)
			}
			if _, err := c.Ready(ctx); err != nil {
				t.Fatalf("readyz: %v", err)
			}
		})
	}
}

// A call that needs the token, sent without it, says which file to pass.
func TestNoTokenSaysSo(t *testing.T) {
	a := serve(t, "s3cret-token-for-tests-0123456789")
	c, err := New(Target{Admin: "http://" + a.addr, AdminSet: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.SetState(context.Background(), "cas", "cas1", "drain", ""); !errors.Is(err, ErrToken) {
		t.Fatalf("a drain without the token: %v; want ErrToken", err)
	}
}

// The token is never sent in clear text to another host; a CA file with
// no certificate in it is the caller's mistake.
func TestTargetRefusals(t *testing.T) {
	dir := t.TempDir()
	tf := filepath.Join(dir, "token")
	os.WriteFile(tf, []byte("s3cret-token-for-tests-0123456789\n"), 0o600)
	if _, err := New(Target{Admin: "http://192.0.2.1:9090", AdminSet: true, TokenFile: tf}); err == nil || !strings.Contains(err.Error(), "clear text") {
		t.Errorf("token to another host over plain HTTP: %v; want a refusal", err)
	}
	bad := filepath.Join(dir, "ca.pem")
	os.WriteFile(bad, []byte("not a certificate"), 0o600)
	_, err := New(Target{Admin: "https://192.0.2.1:9090", AdminSet: true, CAFile: bad})
	var ae ArgError
	if !errors.As(err, &ae) {
		t.Errorf("a CA file with no certificate: %v; want an ArgError", err)
	}
}
