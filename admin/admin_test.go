//go:build linux

package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/stickylb/stickylb/config"
	"github.com/stickylb/stickylb/kit/lbtest"
	"github.com/stickylb/stickylb/server"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, lbtest.IgnoreMemberlistProbes()...) }

type env struct {
	t     testing.TB
	srv   *server.Server
	http  *httptest.Server
	cfg   string
	bs    []*lbtest.Backend
	pages sync.Map // name -> HTML served at /_test/NAME
	api   *API     // the handler under test, without the test pages
	// statePosts counts the POSTs to a backend's state the API answered,
	// refused or not: a test of a refusal needs the request to have
	// arrived.
	statePosts atomic.Int64
}

func setup(t testing.TB, token string) *env { return setupWith(t, token, "") }

// setupWith starts a server, with extra appended to its config, and an
// API in front of it.
func setupWith(t testing.TB, token, extra string) *env {
	return setupSource(t, token, func(port int) string { return testConfig(port, "enabled = false\n") + extra })
}

// setupSource is setup with the config src gives for the backends' port.
func setupSource(t testing.TB, token string, src func(port int) string) *env {
	t.Helper()
	bs, ports := lbtest.StartBackends(t, []string{"127.0.0.11", "127.0.0.12", "127.0.0.13"}, 1)
	path := filepath.Join(t.TempDir(), "lb.toml")
	os.WriteFile(path, []byte(src(ports[0])), 0o644)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, cfg)
	api := New(Options{Server: srv, Token: token, ConfigPath: path, Version: "test-version", HistoryEvery: 100 * time.Millisecond})
	e := &env{t: t, srv: srv, cfg: path, bs: bs, api: api}
	// Test pages, served from the API's own origin, as a same-site page
	// (the dashboard itself) would be.
	mux := http.NewServeMux()
	mux.HandleFunc("GET /_test/{page}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		page, ok := e.pages.Load(r.PathValue("page"))
		if !ok {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, page.(string))
	})
	mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		api.ServeHTTP(w, r)
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/state") {
			e.statePosts.Add(1) // once answered: its effect, if any, is done
		}
	}))
	hs := httptest.NewServer(mux)
	e.http = hs
	t.Cleanup(func() {
		hs.Close()
		api.Close()
	})
	return e
}

// startServer starts a server on cfg, shut down when the test ends.
func startServer(t testing.TB, cfg *config.Config) *server.Server {
	t.Helper()
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
	return srv
}

// testConfig is a pool of the three test backends behind one listener,
// with health settings health.
func testConfig(port int, health string) string {
	return fmt.Sprintf("[listener.rpc]\nlisten = \"127.0.0.1:0\"\npool = \"cas\"\nbackend_port = %d\n", port) +
		"[pool.cas.health]\n" + health + "[pool.cas.backend.cas1]\naddress = \"127.0.0.11\"\n" +
		"[pool.cas.backend.cas2]\naddress = \"127.0.0.12\"\n[pool.cas.backend.cas3]\naddress = \"127.0.0.13\"\n"
}

func (e *env) do(method, path, token, body string, out any) int {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.http.URL+path, strings.NewReader(body))
	if method != "GET" {
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(RequestHeader, "1")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.Header.Get("Content-Type") != "application/json" {
		e.t.Errorf("%s %s: content type %q", method, path, resp.Header.Get("Content-Type"))
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			e.t.Fatalf("%s %s: %v in %s", method, path, err, raw)
		}
	}
	return resp.StatusCode
}

// The API lists each backend's pins and connections as the traffic made
// them, and a drain through it keeps pinned clients on their backend
// while new clients go elsewhere.
func TestBackendsPinsAndDrain(t *testing.T) {
	e := setup(t, "")
	addr := e.srv.Addrs()["rpc"]
	owner := map[string]string{}
	var open *lbtest.Client
	for i := range 30 {
		c, err := lbtest.Connect(lbtest.ClientIP(i), addr)
		if err != nil {
			t.Fatal(err)
		}
		owner[lbtest.ClientIP(i)] = c.Backend
		if i == 0 {
			open = c
		} else {
			c.Close()
		}
	}
	defer open.Close()
	drained := owner[lbtest.ClientIP(0)]

	var st Status
	if code := e.do("GET", "/api/backends", "", "", &st); code != 200 || len(st.Pools) != 1 || len(st.Pools[0].Backends) != 3 {
		t.Fatalf("backends: %d %+v", code, st)
	}
	// Closed connections are released by the proxy just after the client
	// closes: wait until only the open one is counted.
	lbtest.Eventually(t, 5*time.Second, "one open connection", func() bool {
		e.do("GET", "/api/backends", "", "", &st)
		n := int64(0)
		for _, b := range st.Pools[0].Backends {
			n += b.Connections
		}
		return n == 1
	})
	total := 0
	for _, b := range st.Pools[0].Backends {
		total += b.Pins
		if b.Name == drained && b.Connections != 1 {
			t.Errorf("%s shows %d connections, want the 1 open", b.Name, b.Connections)
		}
	}
	if total != 30 || st.Pools[0].Pins != 30 {
		t.Fatalf("pins per backend add up to %d (table %d), want 30", total, st.Pools[0].Pins)
	}

	// Drain the backend of client 0: its clients stay, new clients avoid it.
	var b BackendInfo
	if code := e.do("POST", "/api/backends/cas/"+drained+"/state", "", `{"state":"drain"}`, &b); code != 200 || b.State != "drain" {
		t.Fatalf("drain: %d %+v", code, b)
	}
	for src, was := range owner {
		if got, _ := lbtest.Who(src, addr); got != was {
			t.Fatalf("client %s of %s moved to %s by a drain of %s", src, was, got, drained)
		}
	}
	for i := 100; i < 130; i++ {
		if got, _ := lbtest.Who(lbtest.ClientIP(i), addr); got == drained {
			t.Fatalf("new client given draining %s", drained)
		}
	}
	// The open connection still works.
	open.Write([]byte("x\n"))
	if line, err := open.R.ReadString('\n'); err != nil || line != "x\n" {
		t.Fatalf("open connection to draining backend: %q %v", line, err)
	}

	// Pins: paginated and filtered; lookup; delete by client and backend.
	var page struct {
		Total int
		Pins  []PinInfo
	}
	if code := e.do("GET", "/api/pins?limit=5&offset=5", "", "", &page); code != 200 || page.Total != 60 || len(page.Pins) != 5 {
		t.Fatalf("pins page: %d total %d len %d", code, page.Total, len(page.Pins))
	}
	e.do("GET", "/api/pins?backend="+drained+"&limit=1000", "", "", &page)
	for _, p := range page.Pins {
		if p.Backend != drained {
			t.Fatalf("backend filter returned a pin of %s", p.Backend)
		}
	}
	var pin PinInfo
	if code := e.do("GET", "/api/pins/"+lbtest.ClientIP(0), "", "", &pin); code != 200 || pin.Backend != drained || pin.Connections != 1 {
		t.Fatalf("lookup: %d %+v", code, pin)
	}
	var del struct{ Deleted int }
	if code := e.do("DELETE", "/api/pins?client="+lbtest.ClientIP(1), "", "", &del); code != 200 || del.Deleted != 1 {
		t.Fatalf("delete one: %d %+v", code, del)
	}
	if code := e.do("GET", "/api/pins/"+lbtest.ClientIP(1), "", "", nil); code != 404 {
		t.Fatalf("lookup after delete: %d, want 404", code)
	}
	e.do("DELETE", "/api/pins?backend="+drained, "", "", &del)
	if del.Deleted != page.Total {
		t.Fatalf("deleted %d pins of %s, want %d", del.Deleted, drained, page.Total)
	}
	// Maint and back to ready.
	if code := e.do("POST", "/api/backends/cas/"+drained+"/state", "", `{"state":"maint"}`, &b); code != 200 || b.State != "maint" {
		t.Fatalf("maint: %d %+v", code, b)
	}
	var ev []Event
	if e.do("GET", "/api/events", "", "", &ev); len(ev) < 3 {
		t.Errorf("events: %+v", ev)
	}
}

// A malformed request (unknown state, body that is not JSON, unknown pool
// or backend) gets a 4xx with a JSON error naming what is wrong, and
// changes nothing.
func TestMalformedRequests(t *testing.T) {
	e := setup(t, "")
	var errBody struct{ Error string }
	cases := []struct {
		method, path, body string
		code               int
		want               string
	}{
		{"POST", "/api/backends/cas/cas1/state", `{"state":"sleep"}`, 400, "unknown backend state"},
		{"POST", "/api/backends/cas/cas1/state", `not json`, 400, "body must be JSON"},
		{"POST", "/api/backends/cas/nope/state", `{"state":"drain"}`, 404, "no backend"},
		{"POST", "/api/backends/nope/cas1/state", `{"state":"drain"}`, 404, "no pool"},
		{"GET", "/api/pins?limit=-1", "", 400, "limit must be"},
		{"GET", "/api/pins?limit=abc", "", 400, "limit must be"},
		{"GET", "/api/pins/not-an-ip", "", 400, "is not an IP address"},
		{"DELETE", "/api/pins", "", 400, "give exactly one of"},
		{"DELETE", "/api/pins?client=1.2.3.4&backend=cas1", "", 400, "give exactly one of"},
		{"GET", "/api/nothing", "", 404, "no such endpoint"},
		{"PUT", "/api/backends", "", 404, "no such endpoint: PUT /api/backends"},
	}
	for _, c := range cases {
		errBody.Error = ""
		code := e.do(c.method, c.path, "", c.body, nil)
		if code != c.code {
			t.Errorf("%s %s: %d, want %d", c.method, c.path, code, c.code)
		}
		if c.want != "" {
			e.do(c.method, c.path, "", c.body, &errBody)
			if !strings.Contains(errBody.Error, c.want) {
				t.Errorf("%s %s: error %q lacks %q", c.method, c.path, errBody.Error, c.want)
			}
		}
	}
}

// With a token set, reads need none but every change (state, unpin,
// reload) is refused without it and accepted with it.
func TestTokenGuardsChanges(t *testing.T) {
	e := setup(t, "s3cret-token-0123456789")
	if code := e.do("GET", "/api/backends", "", "", nil); code != 200 {
		t.Errorf("reading needs no token, got %d", code)
	}
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/api/backends/cas/cas1/state", `{"state":"drain"}`},
		{"DELETE", "/api/pins?backend=cas1", ""},
		{"POST", "/api/reload", ""},
	} {
		if code := e.do(c.method, c.path, "", c.body, nil); code != 401 {
			t.Errorf("%s %s without token: %d, want 401", c.method, c.path, code)
		}
		if code := e.do(c.method, c.path, "wrong", c.body, nil); code != 401 {
			t.Errorf("%s %s with a wrong token: %d, want 401", c.method, c.path, code)
		}
		if code := e.do(c.method, c.path, "s3cret-token-0123456789", c.body, nil); code != 200 {
			t.Errorf("%s %s with the token: %d, want 200", c.method, c.path, code)
		}
	}
}

// /readyz says 503 once no backend can take a client; a reload through
// the API of a broken file is refused with a 400 naming file and line,
// and the process stays healthy.
func TestReloadAndReadiness(t *testing.T) {
	e := setup(t, "")
	if code := e.do("GET", "/readyz", "", "", nil); code != 200 {
		t.Fatalf("readyz = %d", code)
	}
	for _, b := range e.srv.Pool("cas").Backends() {
		b.SetHealthy(false)
	}
	if code := e.do("GET", "/readyz", "", "", nil); code != 503 {
		t.Fatalf("readyz with every backend down = %d, want 503", code)
	}
	os.WriteFile(e.cfg, []byte("[listener.rpc]\nlisten = 1\n"), 0o644)
	var errBody struct{ Error string }
	if code := e.do("POST", "/api/reload", "", "", &errBody); code != 400 || !strings.Contains(errBody.Error, "lb.toml:2") {
		t.Fatalf("bad reload: %d %q; want 400 naming the file and line", code, errBody.Error)
	}
	if code := e.do("GET", "/healthz", "", "", nil); code != 200 {
		t.Fatalf("healthz = %d", code)
	}
}

// /readyz says 503 from the moment a drain starts, while connections
// still finish: a balancer in front must stop sending clients here.
func TestReadyzDuringDrain(t *testing.T) {
	e := setup(t, "")
	c, err := lbtest.Connect(lbtest.ClientIP(900), e.srv.Addrs()["rpc"])
	if err != nil {
		t.Fatal(err)
	}
	if code := e.do("GET", "/readyz", "", "", nil); code != 200 {
		t.Fatalf("/readyz before the drain: %d", code)
	}
	done := make(chan struct{})
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		e.srv.Shutdown(ctx)
		close(done)
	}()
	lbtest.Eventually(t, 2*time.Second, "/readyz 503", func() bool { return e.do("GET", "/readyz", "", "", nil) == 503 })
	c.Close()
	<-done
}

// A drain restored at start (a restart, an upgrade) is shown since the
// operator's decision, not as a state with no start: ctl backends' FOR
// read "-" there, as if the backend had never been drained.
func TestRestoredDrainKeepsItsTime(t *testing.T) {
	snap := filepath.Join(t.TempDir(), "pins.json")
	src := func(port int) string {
		return "[global]\nsnapshot_file = \"" + snap + "\"\n" + testConfig(port, "enabled = false\n")
	}
	first := setupSource(t, "", src)
	var b BackendInfo
	if code := first.do("POST", "/api/backends/cas/cas2/state", "", `{"state":"drain"}`, &b); code != 200 {
		t.Fatalf("drain: %d", code)
	}
	drained := time.Now()
	time.Sleep(50 * time.Millisecond) // the restart comes well after the decision
	restarted := time.Now()
	again := setupSource(t, "", src)
	var st Status
	if code := again.do("GET", "/api/backends", "", "", &st); code != 200 {
		t.Fatalf("backends: %d", code)
	}
	for _, bi := range st.Pools[0].Backends {
		if bi.Name != "cas2" {
			continue
		}
		if bi.State != "drain" || bi.Since.IsZero() || !bi.Since.Before(restarted) || bi.Since.Sub(drained).Abs() > 5*time.Second {
			t.Fatalf("cas2 after a restart at %v: state %s since %v; want drain since the decision, about %v", restarted, bi.State, bi.Since, drained)
		}
		return
	}
	t.Fatal("no cas2 listed")
}
