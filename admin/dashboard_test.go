//go:build linux

package admin

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stickylb/stickylb/config"
	"github.com/stickylb/stickylb/kit/lbtest"
	"github.com/stickylb/stickylb/pool"
)

var rowRE = regexp.MustCompile(`<tr data-backend="([^"]+)" data-pool="cas">.*?data-state="([a-z]+)".*?<td class="num conns">(\d+)</td><td class="num pins">(\d+)</td>`)

// The dashboard, rendered by a real browser against a running server,
// shows every backend with the state, connections and pins the API
// reports.
func TestDashboardInBrowser(t *testing.T) {
	bin := lbtest.Chromium(t)
	e := setupSource(t, "", func(port int) string { return testConfig(port, "interval = \"200ms\"\n") })
	addr := e.srv.Addrs()["rpc"]
	var open []*lbtest.Client
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	for i := range 12 {
		c, err := lbtest.Connect(lbtest.ClientIP(300+i), addr)
		if err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			open = append(open, c)
		} else {
			c.Close()
		}
	}
	e.do("POST", "/api/backends/cas/cas2/state", "", `{"state":"drain"}`, nil)
	lbtest.Eventually(t, 5*time.Second, "closed connections released", func() bool {
		var st Status
		e.do("GET", "/api/backends", "", "", &st)
		n := int64(0)
		for _, b := range st.Pools[0].Backends {
			n += b.Connections
		}
		return n == int64(len(open))
	})
	var st Status
	e.do("GET", "/api/backends", "", "", &st)

	dom := string(lbtest.Headless(t, bin, e.http.URL+"/", "--dump-dom"))
	rows := rowRE.FindAllStringSubmatch(dom, -1)
	if len(rows) != 3 {
		t.Fatalf("dashboard shows %d backend rows, want 3; DOM:\n%.2000s", len(rows), dom)
	}
	for i, b := range st.Pools[0].Backends {
		r := rows[i]
		conns, _ := strconv.Atoi(r[3])
		pins, _ := strconv.Atoi(r[4])
		if r[1] != b.Name || r[2] != b.State || int64(conns) != b.Connections || pins != b.Pins {
			t.Errorf("row %d shows %s %s conns %d pins %d; API says %s %s conns %d pins %d",
				i, r[1], r[2], conns, pins, b.Name, b.State, b.Connections, b.Pins)
		}
	}
	for _, want := range []string{`id="pins-cas">12<`, "set drain (was ready)", `<section id="cluster" hidden=""`,
		// the charts, drawn by uPlot from the server's history, with axes and units
		`data-chart="connections"><h3>Open connections per backend</h3><div class="uplot`,
		`data-chart="connections_per_second"><h3>New connections per second per backend</h3><div class="uplot`,
		`<canvas`, `u-label">cas3</div>`,
		// version and listeners, check status and the buttons
		"test-version · pid ", `<tr data-listener="rpc"><td>rpc</td><td>127.0.0.1:`,
		`<button data-action="ready">ready</button>`, `<button data-action="maint">maint</button>`} {
		if !strings.Contains(dom, want) {
			t.Errorf("dashboard lacks %q", want)
		}
	}
	// A screenshot for docs/, when asked: STICKYLB_SCREENSHOT=path.
	if path := os.Getenv("STICKYLB_SCREENSHOT"); path != "" {
		screenshotTraffic(t, e, addr)
		abs, _ := filepath.Abs(path)
		lbtest.Headless(t, bin, e.http.URL+"/", "--screenshot="+abs, "--window-size=1400,1000", "--hide-scrollbars")
	}
}

// screenshotTraffic gives the screenshot's charts something to show: 8
// seconds of clients coming and going, some staying, with cas3 put in
// maintenance half way.
func screenshotTraffic(t *testing.T, e *env, addr netip.AddrPort) {
	var held []*lbtest.Client
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for i := range 80 {
		if i == 40 {
			e.do("POST", "/api/backends/cas/cas3/state", "", `{"state":"maint"}`, nil)
		}
		for j := range 3 + i%5 {
			c, err := lbtest.Connect(lbtest.ClientIP(5000+(i*7+j)%200), addr)
			if err != nil {
				continue
			}
			if j == 0 && len(held) < 40 {
				held = append(held, c)
			} else {
				c.Close()
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
}

var memberRE = regexp.MustCompile(`<tr data-member="([^"]+)"><td>[^<]*</td><td>[^<]*</td><td><span class="state [a-z]+" data-state="([a-z]+)">`)

// With a [cluster], the dashboard shows every member and its state, as
// GET /api/cluster does.
func TestDashboardShowsCluster(t *testing.T) {
	bin := lbtest.Chromium(t)
	g1, g2 := lbtest.FreeAddr(t, "127.0.0.1"), lbtest.FreeAddr(t, "127.0.0.1")
	e := setupWith(t, "", fmt.Sprintf("[cluster]\nbind = %q\nnode_name = \"lb1\"\n", g1))
	src, err := os.ReadFile(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	second := strings.Replace(string(src), fmt.Sprintf("bind = %q\nnode_name = \"lb1\"", g1),
		fmt.Sprintf("bind = %q\nnode_name = \"lb2\"\npeers = [%q]", g2, g1), 1)
	cfg, err := config.Parse("lb2.toml", []byte(second))
	if err != nil {
		t.Fatal(err)
	}
	startServer(t, cfg)
	lbtest.Eventually(t, 5*time.Second, "lb1 to see lb2", func() bool { return len(e.srv.Cluster().Members()) == 2 })

	dom := string(lbtest.Headless(t, bin, e.http.URL+"/", "--dump-dom"))
	got := map[string]string{}
	for _, m := range memberRE.FindAllStringSubmatch(dom, -1) {
		got[m[1]] = m[2]
	}
	if got["lb1"] != "alive" || got["lb2"] != "alive" || len(got) != 2 {
		t.Fatalf("dashboard shows members %v, want lb1 and lb2 alive; DOM:\n%.3000s", got, dom)
	}
	if strings.Contains(dom, `id="cluster" hidden`) {
		t.Errorf("the cluster section is hidden with a cluster")
	}
}

// The dashboard's buttons change a backend's state through the API, with
// the token an operator typed; without it, the page says why nothing
// changed.
func TestDashboardButtons(t *testing.T) {
	bin := lbtest.Chromium(t)
	e := setup(t, "s3cret")
	// A same-origin page that opens the dashboard in a frame, types the
	// token (or not) and clicks cas2's maint button, as a person would.
	click := func(token string) string {
		return `<iframe id="f" src="/" width="1200" height="900"></iframe><script>
f.onload = () => setTimeout(() => {
  const d = f.contentDocument, in_ = d.getElementById("token");
  in_.value = "` + token + `"; in_.dispatchEvent(new Event("change"));
  d.querySelector('tr[data-backend="cas2"] button[data-action="maint"]').click();
  setTimeout(() => { document.title = "action: " + d.getElementById("action").textContent; }, 1000);
}, 1000);
</script>`
	}
	e.pages.Store("wrong", click("guess"))
	out := lbtest.Headless(t, bin, e.http.URL+"/_test/wrong", "--dump-dom")
	if st := e.srv.Pool("cas").Backend("cas2").AdminState(); st != pool.Ready {
		t.Fatalf("a click with a wrong token set cas2 to %s", st)
	}
	if !strings.Contains(string(out), "<title>action: maint cas/cas2: this call needs the admin token") {
		t.Fatalf("after a refused click the page does not say why:\n%s", out)
	}
	e.pages.Store("right", click("s3cret"))
	out = lbtest.Headless(t, bin, e.http.URL+"/_test/right", "--dump-dom")
	if st := e.srv.Pool("cas").Backend("cas2").AdminState(); st != pool.Maint {
		t.Fatalf("after a click on maint with the token, cas2 is %s; page:\n%s", st, out)
	}
}
