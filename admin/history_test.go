//go:build linux

package admin

import (
	"strings"
	"testing"
	"time"

	"github.com/stickylb/stickylb/kit/lbtest"
)

// The history the dashboard draws is kept on the server: connections made
// before anyone looks show up as rates per backend and per listener, and
// the open ones as a count.
func TestHistoryKeepsRates(t *testing.T) {
	e := setup(t, "")
	addr := e.srv.Addrs()["rpc"]
	var open []*lbtest.Client
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	for i := range 30 {
		c, err := lbtest.Connect(lbtest.ClientIP(700+i), addr)
		if err != nil {
			t.Fatal(err)
		}
		if i < 5 {
			open = append(open, c)
		} else {
			c.Close()
		}
	}
	var h History
	lbtest.Eventually(t, 5*time.Second, "the connections counted in the history", func() bool {
		h = History{}
		e.do("GET", "/api/history", "", "", &h)
		if len(h.Points) == 0 {
			return false
		}
		var opened, listener float64
		for _, pt := range h.Points {
			for _, b := range pt.Backends {
				opened += b.ConnsPerSec * h.IntervalSeconds
			}
			listener += pt.Listeners["rpc"].ConnsPerSec * h.IntervalSeconds
		}
		last := h.Points[len(h.Points)-1]
		var conns int64
		for _, b := range last.Backends {
			conns += b.Connections
		}
		// Rates are taken over measured, not nominal, intervals: allow
		// for the difference.
		return opened > 27 && opened < 33 && listener > 27 && listener < 33 && conns == 5
	})
}

// The ring is bounded.
func TestHistoryIsBounded(t *testing.T) {
	e := setup(t, "")
	api := New(Options{Server: e.srv, HistoryEvery: time.Hour})
	defer api.Close()
	for range historyLen + 20 {
		api.sample()
	}
	if n := len(api.points().Points); n != historyLen-1 {
		t.Fatalf("%d points after %d samples, want %d", n, historyLen+21, historyLen-1)
	}
}

// A backend's row says what its last check found and why it is down.
func TestBackendSaysWhyDown(t *testing.T) {
	e := setupSource(t, "", func(port int) string {
		return testConfig(port, "interval = \"50ms\"\ntimeout = \"200ms\"\nfall = 2\nrise = 1\n")
	})
	for _, b := range e.bs {
		if b.Name == "cas2" {
			b.StopListening()
		}
	}
	var st Status
	var cas2 BackendInfo
	lbtest.Eventually(t, 5*time.Second, "cas2 down, and every backend checked", func() bool {
		st = Status{}
		e.do("GET", "/api/backends", "", "", &st)
		checked := true
		for _, b := range st.Pools[0].Backends {
			checked = checked && b.LastCheck != nil
			if b.Name == "cas2" {
				cas2 = b
			}
		}
		return cas2.State == "down" && checked
	})
	// Refused, or reset when a check's connect sat in the closed
	// listener's queue: either way the reason names the check and cas2.
	if !strings.HasPrefix(cas2.DownReason, "check tcp: ") || !strings.Contains(cas2.DownReason, "127.0.0.12:") {
		t.Errorf("cas2 is down because %q; want the failing check and its error", cas2.DownReason)
	}
	if c := cas2.LastCheck; c == nil || c.OK || c.Name != "tcp" || time.Since(c.Time) > 2*time.Second {
		t.Errorf("cas2's last check: %+v; want a recent failed tcp check", c)
	}
	for _, b := range st.Pools[0].Backends {
		if b.Name != "cas2" && (b.DownReason != "" || b.LastCheck == nil || !b.LastCheck.OK) {
			t.Errorf("%s: reason %q, last check %+v; want up with a passing check", b.Name, b.DownReason, b.LastCheck)
		}
	}
}
