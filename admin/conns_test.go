//go:build linux

package admin

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/stickylb/stickylb/kit/lbtest"
)

// Open connections are listed with their client, backend and age, and an
// operator closes one client's connections; the others stay open, and so
// does the client's pin.
func TestConnectionsListedAndClosed(t *testing.T) {
	e := setup(t, "tok")
	addr := e.srv.Addrs()["rpc"]
	a, b := lbtest.ClientIP(800), lbtest.ClientIP(801)
	var conns []*lbtest.Client
	for _, src := range []string{a, a, b, b} {
		c, err := lbtest.Connect(src, addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	var list struct {
		Total       int
		Connections []ConnInfo
	}
	e.do("GET", "/api/connections", "", "", &list)
	if list.Total != 4 || len(list.Connections) != 4 {
		t.Fatalf("listed %d connections (%d shown), want 4", list.Total, len(list.Connections))
	}
	for _, c := range list.Connections {
		host := c.Client[:strings.LastIndex(c.Client, ":")]
		if (host != a && host != b) || c.Pool != "cas" || c.Backend == "" || !strings.HasPrefix(c.ID, "rpc/") || c.AgeSeconds < 0 {
			t.Errorf("connection %+v", c)
		}
	}
	if code := e.do("DELETE", "/api/connections?client="+a, "", "", nil); code != 401 {
		t.Fatalf("closing without the token: HTTP %d, want 401", code)
	}
	if code := e.do("DELETE", "/api/connections", "tok", "", nil); code != 400 {
		t.Fatalf("closing with no filter: HTTP %d, want 400 (it would close everything)", code)
	}
	var res struct{ Closed int }
	e.do("DELETE", "/api/connections?client="+a, "tok", "", &res)
	if res.Closed != 2 {
		t.Fatalf("closed %d connections of %s, want 2", res.Closed, a)
	}
	for i, c := range conns {
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		_, err := c.R.ReadByte()
		closed := err == io.EOF || err != nil && !strings.Contains(err.Error(), "timeout")
		if want := i < 2; closed != want {
			t.Errorf("connection %d (client %s): closed %v (%v), want %v", i, []string{a, a, b, b}[i], closed, err, want)
		}
	}
	var pin PinInfo
	if code := e.do("GET", "/api/pins/"+a, "", "", &pin); code != 200 || pin.Backend != conns[0].Backend {
		t.Errorf("after closing its connections, %s's pin is %+v (HTTP %d); want it kept on %s", a, pin, code, conns[0].Backend)
	}
}

// A backend's weight changes at run time: at 0 it takes no new client.
func TestWeightAtRunTime(t *testing.T) {
	e := setup(t, "")
	if code := e.do("POST", "/api/backends/cas/cas1/weight", "", `{"weight": 1001}`, nil); code != 400 {
		t.Fatalf("weight 1001: HTTP %d, want 400", code)
	}
	var bi BackendInfo
	if code := e.do("POST", "/api/backends/cas/cas1/weight", "", `{"weight": 0}`, &bi); code != 200 || bi.Weight != 0 {
		t.Fatalf("weight 0: HTTP %d, %+v", code, bi)
	}
	addr := e.srv.Addrs()["rpc"]
	for i := range 30 {
		if got, err := lbtest.Who(lbtest.ClientIP(900+i), addr); err != nil || got == "cas1" {
			t.Fatalf("a new client reached %q (%v) with cas1 at weight 0", got, err)
		}
	}
}
