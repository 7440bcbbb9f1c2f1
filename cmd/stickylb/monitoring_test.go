//go:build linux

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stickylb/stickylb/kit/lbtest"
	"github.com/stickylb/stickylb/uplot"
)

// The shipped monitoring files, in the repository.
const (
	rulesFile     = "../../monitoring/stickylb.rules.yml"
	dashboardFile = "../../monitoring/stickylb-dashboard.json"
	rulesTestGlob = "../../monitoring/*_test.yml"
)

// promtool accepts the rules and passes their unit tests, as CI runs it
// (.ci/run), so `go test` alone catches a broken rule too.
func TestMonitoringRulesPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool is not installed (Debian's prometheus package has it; .ci/run installs it)")
	}
	tests, _ := filepath.Glob(rulesTestGlob)
	if len(tests) == 0 {
		t.Fatalf("no promtool unit tests match %s", rulesTestGlob)
	}
	for _, args := range [][]string{{"check", "rules", rulesFile}, append([]string{"test", "rules"}, tests...)} {
		if out, err := exec.Command(promtool, args...).CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// A real Prometheus (Debian's) scrapes a real two-member stickylb
// cluster in front of simulated CAS hosts under a simulated Unity fleet,
// with the shipped rules loaded, and every query the shipped files make
// finds series there: each dashboard panel's, each template variable's,
// each rule's, and the metric and label names the promtool unit tests
// feed the rules. A renamed metric or label fails here, not on an
// operator's dashboard. The lab's planned work (a drain) raises no alert.
func TestMonitoringAgainstPrometheus(t *testing.T) {
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("prometheus is not installed (apt-get install prometheus; .ci/run installs it)")
	}
	rulesPath, err := filepath.Abs(rulesFile)
	if err != nil {
		t.Fatal(err)
	}

	// Addresses of their own on loopback, so that nothing else running
	// on 127.0.0.1 or the lab's 127.0.0.11-13 is in the way.
	members := []string{"127.0.31.1", "127.0.31.2"}
	cas := []string{"127.0.31.11", "127.0.31.12", "127.0.31.13"}
	port := func(host string) string { return strings.TrimPrefix(lbtest.FreeAddr(t, host), host+":") }
	epm, rca, ab := port(members[0]), port(members[0]), port(members[0])
	startBinary(t, nil, "sim", "cas", "--hosts", strings.Join(cas, ","), "--epm-port", epm, "--rca-port", rca, "--ab-port", ab)

	var admins, binds []string
	for _, m := range members {
		admins = append(admins, lbtest.FreeAddr(t, m))
		binds = append(binds, lbtest.FreeAddr(t, m))
	}
	for i, m := range members {
		var b strings.Builder
		fmt.Fprintf(&b, "[global]\ndrain_timeout = \"1s\"\nsnapshot_file = %q\nsnapshot_interval = \"2s\"\n", filepath.Join(t.TempDir(), "pins.json"))
		fmt.Fprintf(&b, "[admin]\nlisten = %q\n", admins[i])
		for name, p := range map[string]string{"epmap": epm, "rpc": rca, "addressbook": ab} {
			fmt.Fprintf(&b, "[listener.%s]\nlisten = \"%s:%s\"\npool = \"cas\"\n", name, m, p)
		}
		b.WriteString("[pool.cas.health]\ninterval = \"500ms\"\n")
		for j, h := range cas {
			fmt.Fprintf(&b, "[pool.cas.backend.cas%d]\naddress = %q\n", j+1, h)
		}
		fmt.Fprintf(&b, "[cluster]\nbind = %q\npeers = [\"%s\"]\nnode_name = \"m%d\"\nsync_timeout = \"3s\"\nsync_interval = \"2s\"\n",
			binds[i], strings.Join(binds, `", "`), i+1)
		startBinary(t, nil, "run", "-c", writeConfig(t, b.String()))
	}
	// No keep-alive: goleak in TestMain finds no idle connection's
	// goroutines after the test.
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for _, a := range admins {
		lbtest.Eventually(t, 30*time.Second, "stickylb "+a+" ready", func() bool {
			resp, err := client.Get("http://" + a + "/readyz")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		})
	}

	dir := t.TempDir()
	promAddr := lbtest.FreeAddr(t, "127.0.0.1")
	promCfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(promCfg, []byte(fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [%q]
scrape_configs:
  - job_name: stickylb
    static_configs:
      - targets: ["%s"]
`, rulesPath, strings.Join(admins, `", "`))), 0o644); err != nil {
		t.Fatal(err)
	}
	prom := exec.Command(promBin, "--config.file="+promCfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+promAddr, "--log.level=warn")
	var promLog lbtest.Buffer
	prom.Stdout, prom.Stderr = &promLog, &promLog
	if err := prom.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		prom.Process.Kill()
		prom.Wait()
		if t.Failed() {
			t.Logf("prometheus log:\n%s", promLog.String())
		}
	})
	api := &promAPI{t: t, base: "http://" + promAddr, client: client}
	lbtest.Eventually(t, 20*time.Second, "Prometheus ready", func() bool {
		resp, err := client.Get(api.base + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	// The load: a Unity fleet at each member, bounded in time; longer
	// for a screenshot, so that its charts have something to show.
	shot := os.Getenv("STICKYLB_MONITORING_SCREENSHOT")
	load := 14 * time.Second
	if shot != "" {
		load = 60 * time.Second
	}
	loadStart := time.Now()
	var fleets []*exec.Cmd
	var fleetOut []*lbtest.Buffer
	for i, m := range members {
		out := &lbtest.Buffer{}
		cmd := exec.Command(binary, "sim", "unity", "--target", m, "--epm-port", epm, "--duration", load.String(), "--sessions", "4",
			"--sources", fmt.Sprintf("127.2.31.%d,127.2.31.%d", 2*i+1, 2*i+2))
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		fleets, fleetOut = append(fleets, cmd), append(fleetOut, out)
	}
	t.Cleanup(func() {
		for _, c := range fleets {
			c.Process.Kill()
			c.Wait()
		}
	})

	lbtest.Eventually(t, 30*time.Second, "Prometheus scraping both members", func() bool {
		return api.count(`up{job="stickylb"} == 1`) == 2
	})
	lbtest.Eventually(t, 20*time.Second, "connections seen by Prometheus", func() bool {
		return api.count(`sum(increase(stickylb_connections_accepted_total[1m])) > 0`) == 1
	})
	// Planned work: a drain, shared with the other member.
	if shot != "" {
		time.Sleep(time.Until(loadStart.Add(load / 2)))
	}
	if out, err := exec.Command(binary, "ctl", "--admin", "http://"+admins[0], "drain", "cas/cas2").CombinedOutput(); err != nil {
		t.Fatalf("ctl drain: %v: %s", err, out)
	}
	lbtest.Eventually(t, 10*time.Second, "the drain scraped from both members", func() bool {
		return api.count(`stickylb_backend_admin_state{backend="cas2",state="drain"} == 1`) == 2
	})
	time.Sleep(3 * time.Second) // a few seconds of rates under load and the drain

	t.Run("rules", func(t *testing.T) { checkRules(t, api) })
	var panels []shotPanel
	t.Run("dashboard", func(t *testing.T) { panels = checkDashboard(t, api) })
	t.Run("unit-test series", func(t *testing.T) { checkUnitTestSeries(t, api) })

	for i, c := range fleets {
		if err := c.Wait(); err != nil {
			t.Errorf("unity fleet at %s: %v\n%s", members[i], err, fleetOut[i].String())
		}
	}
	// Nothing but planned work happened: no alert pending or firing. (A
	// member may wait for its first table at start, a rule pending a
	// moment: that passes within a few evaluations.)
	var active []string
	lbtest.Eventually(t, 10*time.Second, "no alert active", func() bool {
		var alerts struct {
			Alerts []struct {
				Labels map[string]string `json:"labels"`
				State  string            `json:"state"`
			} `json:"alerts"`
		}
		api.get("/api/v1/alerts", nil, &alerts)
		active = active[:0]
		for _, a := range alerts.Alerts {
			active = append(active, fmt.Sprintf("%s %s %v", a.Labels["alertname"], a.State, a.Labels))
		}
		return len(active) == 0
	})
	if len(active) > 0 {
		t.Errorf("alerts active in the lab with only a drain:\n%s", strings.Join(active, "\n"))
	}
	if shot != "" {
		screenshotPanels(t, api, panels, loadStart, shot)
	}
}

// checkRules evaluates every rule Prometheus loaded from the file. An
// alert's expression in a healthy lab returns nothing (that is the
// point), so "returns series" is asked of two derived queries instead:
//   - the expression with every comparison in its `bool` form (`x == 0`
//     becomes `x == bool 0`), which keeps the expression whole (its
//     selectors, aggregations, on/ignoring matching and arithmetic) but
//     turns each filter into a 0 or 1, so it returns series exactly when
//     the metrics, labels and matching it relies on are there; the rules
//     join filters with `and` (never `unless`) so that this holds;
//   - each metric selector alone, so that a selector on one side of an
//     `or` or `and` cannot hide behind the other.
//
// The expression itself must evaluate without error, and Prometheus must
// report every rule healthy.
func checkRules(t *testing.T, api *promAPI) {
	api = api.on(t)
	var rules struct {
		Groups []struct {
			Rules []struct {
				Name, Query, Health, LastError, Type string
			} `json:"rules"`
		} `json:"groups"`
	}
	api.get("/api/v1/rules", nil, &rules)
	src, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	want := len(regexp.MustCompile(`(?m)^\s*- alert:`).FindAll(src, -1))
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			n++
			if r.Health != "ok" {
				t.Errorf("rule %s: health %q: %s", r.Name, r.Health, r.LastError)
			}
			api.query(r.Query) // must not fail
			if c := api.count(boolify(r.Query)); c == 0 {
				t.Errorf("rule %s: %s returns no series", r.Name, boolify(r.Query))
			}
			for _, sel := range selectors(r.Query) {
				if api.count(sel) == 0 {
					t.Errorf("rule %s: selector %s returns no series", r.Name, sel)
				}
			}
		}
	}
	if n != want {
		t.Errorf("Prometheus loaded %d rules, %s has %d", n, rulesFile, want)
	}
}

// checkDashboard evaluates every template variable's query, then every
// panel's query with the variables set to every value they found (as
// Grafana's "All" does) and $__rate_interval to Grafana's floor of a
// minute. Each must return series. The annotation's query is a filter
// (state changes only), so it is asked for series in its `bool` form.
func checkDashboard(t *testing.T, api *promAPI) []shotPanel {
	api = api.on(t)
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Templating struct {
			List []struct {
				Name, Type string
				Query      json.RawMessage
			} `json:"list"`
		} `json:"templating"`
		Annotations struct {
			List []struct{ Name, Expr string } `json:"list"`
		} `json:"annotations"`
		Panels []dashPanel `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	var shots []shotPanel
	vars := map[string]string{"__rate_interval": "1m"}
	subst := func(q string) string {
		return regexp.MustCompile(`\$\{?(\w+)\}?`).ReplaceAllStringFunc(q, func(m string) string {
			name := strings.Trim(m, "${}")
			v, ok := vars[name]
			if !ok {
				t.Errorf("%q uses $%s, which no variable defines", q, name)
			}
			return v
		})
	}
	labelValues := regexp.MustCompile(`^label_values\((.+),\s*(\w+)\)$`)
	nvars := 0
	for _, v := range dash.Templating.List {
		if v.Type != "query" {
			continue
		}
		nvars++
		var q struct{ Query string }
		if json.Unmarshal(v.Query, &q) != nil {
			json.Unmarshal(v.Query, &q.Query) // the older form: a plain string
		}
		m := labelValues.FindStringSubmatch(q.Query)
		if m == nil {
			t.Errorf("variable %s: query %q is not label_values(selector, label)", v.Name, q.Query)
			continue
		}
		// Grafana asks /api/v1/series for label_values; the same values,
		// as a query.
		res := api.query(fmt.Sprintf("count by (%s) (%s)", m[2], subst(m[1])))
		var values []string
		for _, s := range res {
			// Escaped as Grafana does it inside a PromQL string.
			values = append(values, strings.ReplaceAll(regexp.QuoteMeta(s.Metric[m[2]]), `\`, `\\`))
		}
		if len(values) == 0 {
			t.Errorf("variable %s: %s has no values", v.Name, q.Query)
		}
		sort.Strings(values)
		vars[v.Name] = "(" + strings.Join(values, "|") + ")"
	}
	if nvars == 0 {
		t.Error("the dashboard has no query variables")
	}
	var walk func([]dashPanel)
	npanels := 0
	walk = func(ps []dashPanel) {
		for _, p := range ps {
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			npanels++
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			shot := shotPanel{Title: p.Title, Type: p.Type}
			for _, tg := range p.Targets {
				q := subst(tg.Expr)
				if api.count(q) == 0 {
					t.Errorf("panel %q: %s returns no series", p.Title, q)
				}
				// The screenshot's runs are short: rates over 10 s, as
				// Grafana's $__rate_interval is for a 1 s scrape.
				vars["__rate_interval"] = "10s"
				shot.Queries = append(shot.Queries, shotQuery{subst(tg.Expr), tg.LegendFormat})
				vars["__rate_interval"] = "1m"
			}
			for _, m := range p.FieldConfig.Defaults.Mappings {
				for v, o := range m.Options {
					shot.Mappings = append(shot.Mappings, v+" "+o.Text)
				}
			}
			sort.Strings(shot.Mappings)
			shots = append(shots, shot)
		}
	}
	walk(dash.Panels)
	for _, a := range dash.Annotations.List {
		if q := boolify(subst(a.Expr)); a.Expr != "" && api.count(q) == 0 {
			t.Errorf("annotation %q: %s returns no series", a.Name, q)
		}
	}
	if !t.Failed() {
		t.Logf("%d panels, %d variables: every query returns series", npanels, nvars)
	}
	return shots
}

type dashPanel struct {
	Type, Title string
	Targets     []struct{ Expr, LegendFormat string } `json:"targets"`
	Panels      []dashPanel                           `json:"panels"`
	FieldConfig struct {
		Defaults struct {
			Mappings []struct {
				Options map[string]struct{ Text string } `json:"options"`
			} `json:"mappings"`
		} `json:"defaults"`
	} `json:"fieldConfig"`
}

// shotPanel is a dashboard panel with its queries as evaluated, for the
// screenshot.
type shotPanel struct {
	Title, Type string
	Queries     []shotQuery
	Mappings    []string // "1 up", "2 down": a state timeline's values
}

type shotQuery struct{ Expr, Legend string }

// screenshotPanels draws every panel's queries over the test's run on a
// page of its own (Grafana is not at hand; headless Chromium is) and
// saves it at path: STICKYLB_MONITORING_SCREENSHOT=/tmp/monitoring.png
// go test -run TestMonitoringAgainstPrometheus ./cmd/stickylb, then copy
// it over docs/monitoring.png. The page asks Prometheus through a proxy
// on its own origin, with uPlot, as stickylb's dashboard draws.
func screenshotPanels(t *testing.T, api *promAPI, panels []shotPanel, from time.Time, path string) {
	bin := lbtest.Chromium(t)
	target, _ := url.Parse(api.base)
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.Transport = &http.Transport{DisableKeepAlives: true}
	data, _ := json.Marshal(map[string]any{"panels": panels, "start": from.Unix(), "end": time.Now().Unix()})
	mux := http.NewServeMux()
	mux.Handle("/api/", proxy)
	mux.HandleFunc("/uplot.js", func(w http.ResponseWriter, _ *http.Request) { w.Write(uplot.JS) })
	mux.HandleFunc("/uplot.css", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/css")
		w.Write(uplot.CSS)
	})
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, strings.Replace(shotPage, "DATA", string(data), 1))
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	abs, _ := filepath.Abs(path)
	lbtest.Headless(t, bin, srv.URL+"/", "--screenshot="+abs, "--window-size=1400,2040", "--hide-scrollbars")
	t.Logf("screenshot of %d panels in %s", len(panels), abs)
}

const shotPage = `<!doctype html><meta charset="utf-8"><title>stickylb: the Grafana dashboard's queries</title>
<link rel="stylesheet" href="/uplot.css"><script src="/uplot.js"></script>
<style>
body{font:12px system-ui,sans-serif;margin:10px;background:#111217;color:#ccccdc}
h1{font-size:15px;margin:0 0 8px} .g{display:grid;grid-template-columns:repeat(4,340px);gap:8px}
.p{background:#181b1f;border:1px solid #2c3235;padding:4px 6px;height:228px;overflow:hidden}
.p h2{font-size:12px;margin:0 0 2px;font-weight:600} .m{color:#8e8e8e;font-size:11px}
.v{font-size:13px;line-height:1.5} .v b{color:#5794F2} .u-legend{font-size:10px} .u-legend th{font-weight:400}
</style>
<h1>stickylb: every panel of monitoring/stickylb-dashboard.json, its queries drawn from Prometheus on lab data (two members, a Unity fleet, cas2 drained half way)</h1>
<div class="g" id="g"></div>
<script>
const d = DATA;
const colors = ["#5794F2","#B877D9","#FF7383","#8AB8FF","#CA95E5","#FFA6B0","#3274D9","#8F3BB8","#E02F44","#C0D8FF"];
const name = (fmt, m) => (fmt || JSON.stringify(m)).replace(/\{\{\s*(\w+)\s*\}\}/g, (_, k) => m[k] || "");
async function range(expr) {
  const r = await fetch("/api/v1/query_range?" + new URLSearchParams({query: expr, start: d.start, end: d.end, step: 1}));
  return (await r.json()).data.result;
}
(async () => {
  const xs = []; for (let t = d.start; t <= d.end; t++) xs.push(t);
  for (const p of d.panels) {
    const div = document.createElement("div"); div.className = "p";
    div.innerHTML = "<h2></h2>"; div.firstChild.textContent = p.Title;
    document.getElementById("g").appendChild(div);
    if (p.Mappings) { const m = document.createElement("div"); m.className = "m"; m.textContent = p.Mappings.join(" · "); div.appendChild(m); }
    const series = [];
    for (const q of p.Queries) for (const s of await range(q.Expr)) {
      const ys = xs.map(() => null);
      for (const [t, v] of s.values) { const i = Math.round(t) - d.start; if (i >= 0 && i < ys.length && isFinite(+v)) ys[i] = +v; }
      series.push({label: name(q.Legend, s.metric), ys});
    }
    if (p.Type === "stat" || p.Type === "table") {
      const v = document.createElement("div"); v.className = "v";
      for (const s of series) { const last = s.ys.filter(y => y !== null).pop(); const line = document.createElement("div");
        line.innerHTML = "<b></b> "; line.firstChild.textContent = last === undefined ? "-" : +last.toFixed(3); line.append(s.label); v.appendChild(line); }
      div.appendChild(v); continue;
    }
    const stepped = p.Type === "state-timeline" ? uPlot.paths.stepped({align: 1}) : undefined;
    new uPlot({width: 326, height: p.Mappings ? 140 : 155, legend: {show: series.length <= 6, live: false},
      cursor: {show: false}, scales: {x: {time: true}},
      axes: [{stroke: "#8e8e8e", grid: {stroke: "#2c3235"}, size: 24, font: "10px sans-serif"},
             {stroke: "#8e8e8e", grid: {stroke: "#2c3235"}, size: 40, font: "10px sans-serif"}],
      series: [{}].concat(series.map((s, i) => ({label: s.label, stroke: colors[i % colors.length], width: 1.5, paths: stepped, points: {show: false}})))},
      [xs].concat(series.map(s => s.ys)), div);
  }
})();
</script>`

// checkUnitTestSeries: every series the promtool unit tests feed the
// rules has a metric name and label names that a real scrape has, so the
// tests fire on what stickylb exports, not on what someone remembered.
func checkUnitTestSeries(t *testing.T, api *promAPI) {
	api = api.on(t)
	files, _ := filepath.Glob(rulesTestGlob)
	seriesLine := regexp.MustCompile(`series: '(\w+)\{([^}]*)\}'`)
	labelName := regexp.MustCompile(`(\w+)="`)
	seen := map[string]bool{}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range seriesLine.FindAllStringSubmatch(string(src), -1) {
			var names []string
			for _, l := range labelName.FindAllStringSubmatch(m[2], -1) {
				names = append(names, l[1])
			}
			sort.Strings(names)
			key := m[1] + "{" + strings.Join(names, ",") + "}"
			if seen[key] {
				continue
			}
			seen[key] = true
			var real []map[string]string
			api.get("/api/v1/series", url.Values{"match[]": {m[1]}}, &real)
			found := false
			for _, s := range real {
				var got []string
				for k := range s {
					if k != "__name__" {
						got = append(got, k)
					}
				}
				sort.Strings(got)
				found = found || slices.Equal(got, names)
			}
			if !found {
				t.Errorf("%s: the unit tests' %s has no series of these label names in a real scrape (%d series of %s)", f, key, len(real), m[1])
			}
		}
	}
	if len(seen) == 0 {
		t.Errorf("no input series found in %s", rulesTestGlob)
	}
}

// boolify returns expr with every comparison operator in its bool form.
// Label matchers inside {...} and quoted strings are left alone.
func boolify(expr string) string {
	var b strings.Builder
	depth := 0
	var quote byte
	for i := 0; i < len(expr); i++ {
		c := expr[i]
		b.WriteByte(c)
		switch {
		case quote != 0:
			if c == '\\' && i+1 < len(expr) {
				i++
				b.WriteByte(expr[i])
			} else if c == quote {
				quote = 0
			}
			continue
		case c == '"' || c == '\'' || c == '`':
			quote = c
			continue
		case c == '{':
			depth++
		case c == '}':
			depth--
		}
		if depth > 0 || !strings.ContainsRune("=!<>", rune(c)) {
			continue
		}
		if i+1 < len(expr) && expr[i+1] == '=' { // ==, !=, <=, >=
			i++
			b.WriteByte('=')
		} else if c == '=' || c == '!' {
			continue // not a comparison
		}
		if rest := strings.TrimLeft(expr[i+1:], " "); !strings.HasPrefix(rest, "bool ") {
			b.WriteString(" bool")
		}
	}
	return b.String()
}

// selectors returns the stickylb metric selectors (and up's) in expr,
// with their matchers and without any range.
func selectors(expr string) []string {
	var out []string
	re := regexp.MustCompile(`\b(stickylb_\w+|up)\b(\{[^}]*\})?`)
	for _, m := range re.FindAllStringSubmatchIndex(expr, -1) {
		// Not a label value ("up" in state="up") or a label name.
		if m[0] > 0 && strings.ContainsRune(`"'=`, rune(expr[m[0]-1])) {
			continue
		}
		if s := expr[m[0]:m[1]]; !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// promAPI asks Prometheus's HTTP API; any error fails the test.
type promAPI struct {
	t      *testing.T
	base   string
	client *http.Client
}

type promSample struct {
	Metric map[string]string `json:"metric"`
}

// on is the API failing t, a subtest, instead.
func (a *promAPI) on(t *testing.T) *promAPI { return &promAPI{t: t, base: a.base, client: a.client} }

func (a *promAPI) get(path string, q url.Values, data any) {
	a.t.Helper()
	u := a.base + path
	if q != nil {
		u += "?" + q.Encode()
	}
	resp, err := a.client.Get(u)
	if err != nil {
		a.t.Fatalf("prometheus %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var r struct {
		Status, Error string
		Data          json.RawMessage
	}
	if err := json.Unmarshal(body, &r); err != nil || r.Status != "success" {
		a.t.Fatalf("prometheus %s %s: %s %s", path, q.Get("query"), resp.Status, body)
	}
	if err := json.Unmarshal(r.Data, data); err != nil {
		a.t.Fatalf("prometheus %s: %v: %s", path, err, r.Data)
	}
}

// query evaluates an instant query now and returns its vector.
func (a *promAPI) query(q string) []promSample {
	a.t.Helper()
	var d struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	a.get("/api/v1/query", url.Values{"query": {q}}, &d)
	if d.ResultType != "vector" {
		a.t.Fatalf("%s: a %s, not a vector", q, d.ResultType)
	}
	var v []promSample
	json.Unmarshal(d.Result, &v)
	return v
}

func (a *promAPI) count(q string) int { a.t.Helper(); return len(a.query(q)) }
