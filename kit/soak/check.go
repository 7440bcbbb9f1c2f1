//go:build linux

package soak

import (
	"bufio"
	"encoding/json"
	"fmt"
	"maps"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/stickylb/stickylb/kit/sim"
)

// Verdict is one invariant's outcome.
type Verdict struct {
	Name   string
	Pass   bool
	Detail string
}

func (v Verdict) String() string {
	word := "PASS"
	if !v.Pass {
		word = "FAIL"
	}
	return fmt.Sprintf("%s %-22s %s", word, v.Name, v.Detail)
}

// grace is how long after a fault ends its effects may still show: a
// session learns its CAS lost it at its next operation, a member's
// health checks take rise × interval to see a CAS back.
const grace = 10 * time.Second

// window is the time a fault on one member or CAS may explain what
// goes wrong there.
type window struct {
	kind     Kind
	lane     string // m1, cas2
	from, to time.Duration
}

func windows(faults []Fault) []window {
	var out []window
	for _, f := range faults {
		if f.excuses() {
			out = append(out, window{f.Kind, f.target(), f.At, f.At + f.For + grace})
		}
	}
	return out
}

// explain names the fault on lane at t, or "".
func explain(ws []window, lane string, t time.Duration) string {
	for _, w := range ws {
		if w.lane == lane && t >= w.from-time.Second && t <= w.to {
			return fmt.Sprintf("%s %s at %.1fs", w.kind, w.lane, w.from.Seconds())
		}
	}
	return ""
}

// memberOf is the member name of a balancer host.
func memberOf(host string) string {
	for i, h := range memberHosts {
		if h == host {
			return fmt.Sprintf("m%d", i+1)
		}
	}
	return host
}

// explainFailure says which fault explains a failure the fleet saw: one
// on the session's CAS, or for a connection cut, on the member it went
// through.
func (r *rig) explainFailure(ws []window, f sim.Failure) string {
	t := f.Time.Sub(r.start)
	if why := explain(ws, f.CAS, t); why != "" {
		return why
	}
	if f.Kind != "MAPI_E_NETWORK_ERROR" && f.Via != "" {
		return explain(ws, memberOf(f.Via), t)
	}
	return ""
}

// check gives each invariant its verdict.
func (r *rig) check(faults []Fault, rep *sim.Report, base, end map[string]usage) []Verdict {
	ws := windows(faults)
	r.mu.Lock()
	failures, readyErr := r.failures, r.readyErr
	r.mu.Unlock()
	var mapi, mapiBad, long, longBad int
	var bad []string
	for _, f := range failures {
		why := r.explainFailure(ws, f)
		switch {
		case f.Kind == "MAPI_E_NETWORK_ERROR":
			mapi++
			if why == "" {
				mapiBad++
			}
		case f.Long:
			long++
			if why == "" {
				longBad++
			}
		default:
			continue
		}
		if why == "" && len(bad) < 5 {
			bad = append(bad, fmt.Sprintf("%.1fs %s on %s via %s: %s", f.Time.Sub(r.start).Seconds(), f.Mailbox, f.CAS, f.Via, f.Kind))
		}
	}
	var out []Verdict
	out = append(out, Verdict{"no session split", mapiBad == 0,
		fmt.Sprintf("%d MAPI_E_NETWORK_ERROR in %d operations, %d explained by a fault on the session's own CAS; unexplained: %v", mapi, rep.Ops, mapi-mapiBad, bad)})
	out = append(out, Verdict{"long-lived connections", longBad == 0,
		fmt.Sprintf("%d cut, %d by a fault on their own CAS or member", long, long-longBad)})
	out = append(out, r.checkPins(rep))
	var unexplained []string
	for _, n := range readyErr {
		if explain(ws, n.Lane, n.At) == "" {
			unexplained = append(unexplained, fmt.Sprintf("%.1fs %s: %s", n.At.Seconds(), n.Lane, n.What))
		}
	}
	out = append(out, Verdict{"admin API and events", len(unexplained) == 0,
		fmt.Sprintf("%d failed /readyz polls or fault checks, %d outside the member's own faults: %v", len(readyErr), len(unexplained), first(unexplained, 5))})
	out = append(out, growth(base, end))
	return out
}

func first(s []string, n int) []string { return s[:min(n, len(s))] }

// checkPins: after the quiet end every member holds the same pins, and
// every session's client is pinned to the CAS of its last logon.
func (r *rig) checkPins(rep *sim.Report) Verdict {
	var tables []map[string]string
	var err error
	agree := waitFor(15*time.Second, "the members' pins to agree", func() bool {
		tables = nil
		for _, m := range r.members {
			var t map[string]string
			if t, err = pinsOf(m); err != nil {
				return false
			}
			tables = append(tables, t)
		}
		return maps.Equal(tables[0], tables[1]) && maps.Equal(tables[1], tables[2])
	})
	if err != nil {
		return Verdict{"pins", false, err.Error()}
	}
	lost := 0
	for _, s := range rep.PerSession {
		if n := len(s.CAS); n > 0 && tables[0][s.Source] != s.CAS[n-1] {
			lost++
		}
	}
	detail := fmt.Sprintf("%d pins on each member; %d of %d sessions' clients not pinned to their CAS", len(tables[0]), lost, len(rep.PerSession))
	if agree != nil {
		detail = fmt.Sprintf("members disagree 15s after the quiet end: %d, %d and %d pins; %s", len(tables[0]), len(tables[1]), len(tables[2]), detail)
	}
	return Verdict{"pins", agree == nil && lost == 0, detail}
}

// pinsOf is a member's pins, client to CAS.
func pinsOf(m *member) (map[string]string, error) {
	resp, err := client.Get("http://" + m.admin + "/api/pins?pool=cas&limit=10000")
	if err != nil {
		return nil, fmt.Errorf("pins of %s: %w", m.name, err)
	}
	defer resp.Body.Close()
	var body struct {
		Pins []struct{ Client, Backend string }
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("pins of %s: %w", m.name, err)
	}
	out := map[string]string{}
	for _, p := range body.Pins {
		out[p.Client] = p.Backend
	}
	return out, nil
}

// hasEvent says whether m's event list has one for backend since t.
func (r *rig) hasEvent(m *member, backend string, since time.Time) bool {
	resp, err := client.Get("http://" + m.admin + "/api/events")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var evs []struct {
		Time    time.Time
		Backend string
	}
	if json.NewDecoder(resp.Body).Decode(&evs) != nil {
		return false
	}
	for _, e := range evs {
		if e.Backend == backend && !e.Time.Before(since.Add(-time.Second)) {
			return true
		}
	}
	return false
}

// usage is one process's descriptors, goroutines and resident memory.
type usage struct{ fds, goroutines, rssKB int }

func (r *rig) usage() map[string]usage {
	out := map[string]usage{}
	for _, m := range r.members {
		pid := m.pid()
		if pid == 0 {
			continue
		}
		var u usage
		if ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err == nil {
			u.fds = len(ents)
		}
		if f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
					u.rssKB, _ = strconv.Atoi(strings.Fields(v)[0])
				}
			}
			f.Close()
		}
		u.goroutines = goroutines(m)
		out[m.name] = u
	}
	return out
}

// goroutines reads go_goroutines from a member's /metrics.
func goroutines(m *member) int {
	resp, err := client.Get((&url.URL{Scheme: "http", Host: m.admin, Path: "/metrics"}).String())
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			n, _ := strconv.ParseFloat(v, 64)
			return int(n)
		}
	}
	return 0
}

// growth: every member ends within margin of its figures after the
// warm-up (a member restarted since starts again lower).
func growth(base, end map[string]usage) Verdict {
	pass := true
	var parts []string
	for _, name := range []string{"m1", "m2", "m3"} {
		b, e := base[name], end[name]
		ok := e.fds <= b.fds+32 && e.goroutines <= b.goroutines*3/2+32 && e.rssKB <= b.rssKB*3/2+16<<10
		pass = pass && ok
		parts = append(parts, fmt.Sprintf("%s fds %d->%d goroutines %d->%d rss %dMiB->%dMiB", name, b.fds, e.fds, b.goroutines, e.goroutines, b.rssKB>>10, e.rssKB>>10))
	}
	return Verdict{"no growth", pass, strings.Join(parts, "; ") + " (margin: fds +32, goroutines x1.5+32, rss x1.5+16MiB)"}
}
