//go:build linux

package admin

import (
	"strings"
	"testing"
	"time"

	"github.com/stickylb/stickylb/kit/lbtest"
	"github.com/stickylb/stickylb/pool"
)

// An ejected CAS shows in GET /api/backends with its reason and until
// when, in the recent changes, and in the dashboard's backend table;
// the pool stays ready.
func TestEjectionShown(t *testing.T) {
	e := setupWith(t, "", "[pool.cas]\ndcerpc = \"calls\"\n[pool.cas.outlier]\nconsecutive_faults = 2\nejection_time = \"1m\"\n")
	cas2 := e.srv.Pool("cas").Backend("cas2")
	cas2.ObserveRPC(pool.CallFault)
	cas2.ObserveRPC(pool.CallFault)
	var st Status
	e.do("GET", "/api/backends", "", "", &st)
	for _, b := range st.Pools[0].Backends {
		switch {
		case b.Name != "cas2" && b.Ejected != nil:
			t.Errorf("%s shown ejected: %+v", b.Name, b.Ejected)
		case b.Name == "cas2" && (b.Ejected == nil || b.Ejected.Reason != "consecutive_faults" || b.Ejected.InARow != 1 ||
			time.Until(b.Ejected.Until) < 50*time.Second || b.State != "up"):
			t.Errorf("cas2 shown as %s, ejected %+v; want up, ejected for consecutive_faults for about 1m", b.State, b.Ejected)
		}
	}
	lbtest.Eventually(t, 5*time.Second, "the ejection in the recent changes", func() bool {
		var ev []Event
		e.do("GET", "/api/events", "", "", &ev)
		for _, x := range ev {
			if x.Backend == "cas2" && strings.HasPrefix(x.What, "ejected (consecutive_faults) for 1m0s") {
				return true
			}
		}
		return false
	})
	if code := e.do("GET", "/readyz", "", "", nil); code != 200 {
		t.Errorf("readyz %d with one CAS of three ejected", code)
	}
	bin := lbtest.Chromium(t)
	dom := string(lbtest.Headless(t, bin, e.http.URL+"/", "--dump-dom"))
	for _, want := range []string{`<tr data-backend="cas2" data-pool="cas">`, `data-ejected="consecutive_faults"`, `<td class="why">ejected (consecutive_faults) until `} {
		if !strings.Contains(dom, want) {
			t.Errorf("dashboard lacks %q", want)
		}
	}
	if strings.Count(dom, "data-ejected=") != 1 {
		t.Errorf("dashboard shows %d ejected backends, want 1", strings.Count(dom, "data-ejected="))
	}
}
