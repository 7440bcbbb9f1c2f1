//go:build linux

package admin

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stickylb/stickylb/kit/lbtest"
	"github.com/stickylb/stickylb/pool"
)

// raw sends a request with exactly the headers given (no helper adds
// any) and returns the status.
func (e *env) raw(method, path, host, body string, headers map[string]string) int {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.http.URL+path, strings.NewReader(body))
	if host != "" {
		req.Host = host
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// Changing calls that a browser could send from another site are refused:
// no request header, a non-JSON body, a foreign Origin. Requests naming a
// host the API does not answer to (DNS rebinding) are refused, reads too.
func TestCrossSiteCallsRefused(t *testing.T) {
	e := setup(t, "")
	path, body := "/api/backends/cas/cas1/state", `{"state":"maint"}`
	ok := map[string]string{"Content-Type": "application/json", RequestHeader: "1"}
	with := func(k, v string) map[string]string {
		m := map[string]string{k: v}
		for kk, vv := range ok {
			if kk != k {
				m[kk] = vv
			}
		}
		return m
	}
	cases := []struct {
		name         string
		method, host string
		headers      map[string]string
		want         int
	}{
		{"simple text/plain POST, as a form or no-cors fetch sends", "POST", "", map[string]string{"Content-Type": "text/plain"}, 403},
		{"JSON without the request header", "POST", "", map[string]string{"Content-Type": "application/json"}, 403},
		{"request header, text body", "POST", "", with("Content-Type", "text/plain"), 415},
		{"foreign origin", "POST", "", with("Origin", "http://evil.example"), 403},
		{"rebinding host, read", "GET", "evil.example:9090", nil, 421},
		{"rebinding host, change", "POST", "evil.example", ok, 421},
		{"DELETE without the request header", "DELETE", "", nil, 403},
	}
	for _, c := range cases {
		p := path
		if c.method == "GET" {
			p = "/api/pins"
		} else if c.method == "DELETE" {
			p = "/api/pins?backend=cas1"
		}
		if got := e.raw(c.method, p, c.host, body, c.headers); got != c.want {
			t.Errorf("%s: status %d, want %d", c.name, got, c.want)
		}
	}
	if st := e.srv.Pool("cas").Backend("cas1").AdminState(); st != pool.Ready {
		t.Fatalf("a refused call changed cas1 to %s", st)
	}
	// The same-origin call with both headers, by IP or localhost, works.
	for _, host := range []string{"", "localhost:1234"} {
		if got := e.raw("POST", path, host, `{"state":"ready"}`, with("Origin", "http://"+strings.TrimPrefix(e.http.URL, "http://"))); host == "" && got != 200 {
			t.Errorf("same-origin call: status %d", got)
		}
		if got := e.raw("GET", "/api/backends", host, "", nil); got != 200 {
			t.Errorf("read with Host %q: status %d", host, got)
		}
	}
}

// A real browser on a page of another origin (another loopback address)
// cannot change a backend's state: neither a no-cors fetch nor a form
// post gets through, though the API has no token.
func TestCrossSitePageInBrowser(t *testing.T) {
	bin := lbtest.Chromium(t)
	e := setup(t, "")
	target := e.http.URL + "/api/backends/cas/cas1/state"
	page := fmt.Sprintf(`<!doctype html><html><body>
<form id="f" method="POST" action="%s" enctype="text/plain" target="sink">
<input name='{"state":"maint","x":"' value='"}'></form><iframe name="sink"></iframe>
<script>
fetch(%q, {method: "POST", mode: "no-cors", headers: {"Content-Type": "text/plain"}, body: '{"state":"maint"}'})
  .catch(() => {}).finally(() => { document.getElementById("f").submit(); document.title = "sent"; });
</script></body></html>`, target, target)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "index.html"), []byte(page), 0o644)
	ln, err := net.Listen("tcp", "127.0.0.77:0")
	if err != nil {
		t.Fatal(err)
	}
	evil := httptest.NewUnstartedServer(http.FileServer(http.Dir(dir)))
	evil.Listener.Close()
	evil.Listener = ln
	evil.Start()
	defer evil.Close()
	dom := string(lbtest.Headless(t, bin, evil.URL+"/", "--dump-dom"))
	if !strings.Contains(dom, "<title>sent</title>") {
		t.Fatalf("the attacking page did not run its requests:\n%.1000s", dom)
	}
	// The requests must have reached the API for its refusal to mean
	// anything: a page whose requests never left the browser would pass.
	lbtest.Eventually(t, 5*time.Second, "the attacking page's requests at the API", func() bool { return e.statePosts.Load() >= 1 })
	if st := e.srv.Pool("cas").Backend("cas1").AdminState(); st != pool.Ready {
		t.Fatalf("a page on %s put cas1 in %s through the admin API", evil.URL, st)
	}
}

// No request crashes a handler or gets a 5xx: any method, path, query,
// headers and body are answered with a status and a JSON error at worst.
func FuzzAdminRequests(f *testing.F) {
	f.Add("POST", "/api/backends/cas/cas1/state", `{"state":"drain","deadline":"30m"}`, "application/json", "1", "")
	f.Add("GET", "/api/pins?limit=5&offset=-1&pool=cas&backend=cas1", "", "", "", "")
	f.Add("DELETE", "/api/pins?client=10.0.0.0/33", "", "", "1", "http://127.0.0.1")
	f.Add("GET", "/api/pins/%zz", "", "", "", "")
	f.Add("POST", "/api/reload", "{", "application/json; charset=utf-8", "1", "null")
	f.Add("DELETE", "/api/connections?client=10.0.0.1&id=rpc%2F1", "", "", "1", "")
	f.Add("POST", "/api/backends/cas/cas2/weight", `{"weight":-1}`, "application/json", "1", "")
	f.Add("GET", "/api/connections?limit=0&backend=cas9", "", "", "", "")
	f.Add("GET", "/api/history", "", "", "", "")
	api := setup(f, "").api
	f.Fuzz(func(t *testing.T, method, target, body, ctype, marker, origin string) {
		if method == "" || strings.ContainsAny(method, " \r\n\t()<>@,;:\\\"/[]?={}") || !strings.HasPrefix(target, "/") {
			return // not a request line net/http would hand to a handler
		}
		req, err := http.NewRequest(method, "http://127.0.0.1"+target, strings.NewReader(body))
		if err != nil {
			return
		}
		req.Header.Set("Content-Type", ctype)
		req.Header.Set(RequestHeader, marker)
		req.Header.Set("Origin", origin)
		w := httptest.NewRecorder()
		api.ServeHTTP(w, req)
		if w.Code >= 500 {
			t.Fatalf("%s %s: status %d: %s", method, target, w.Code, w.Body)
		}
	})
}
