//go:build linux

package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stickylb/stickylb/admin"
)

// The words ctl and sim print say what happened (issue 35, point 5): a
// backend whose state has not changed in this process holds it "since
// start" (restored after a restart or an upgrade, not unknown); LAST
// CHECK names the check that holds a backend down when the latest check
// is another; sim unity says none of its sessions saw an error rather
// than "0 ... in 30 sessions"; imports count in the singular.
func TestWordsSayWhatHappened(t *testing.T) {
	if got := forCell(time.Time{}); got != "since start" {
		t.Errorf("FOR of a state unchanged since start: %q", got)
	}
	checked := &admin.CheckInfo{Name: "tcp", OK: true, TookMS: 0.3, Time: time.Now()}
	down := admin.BackendInfo{LastCheck: checked, DownReason: "check rpc-client-access: no answer"}
	if got, want := lastCheck(down), "; down by rpc-client-access"; len(got) < len(want) || got[len(got)-len(want):] != want {
		t.Errorf("LAST CHECK of a backend down by another check: %q, want it to end %q", got, want)
	}
	down.DownReason = "check tcp: connection refused"
	checked.OK = false
	if got := lastCheck(down); got[:10] != "tcp failed" || len(got) > 30 {
		t.Errorf("LAST CHECK of a backend down by that check: %q", got)
	}
	down.DownReason = "passive check: 3 connects failed in a row: refused"
	if got := lastCheck(down); len(got) > 30 {
		t.Errorf("LAST CHECK of a backend down by the passive check: %q", got)
	}
	for _, c := range []struct {
		n      int64
		in, of int
		rate   float64
		want   string
	}{
		{0, 0, 30, 0, "MAPI_E_NETWORK_ERROR 0: none of the 30 sessions saw one"},
		{12, 3, 30, 0.004, "MAPI_E_NETWORK_ERROR 12 (0.400% of operations), seen by 3 of the 30 sessions"},
	} {
		if got := mapiErrors(c.n, c.rate, c.in, c.of); got != c.want {
			t.Errorf("mapiErrors(%d, %v, %d, %d) = %q, want %q", c.n, c.rate, c.in, c.of, got, c.want)
		}
	}
	if got := count(1, "listener") + ", " + count(1, "pool"); got != "1 listener, 1 pool" {
		t.Errorf("count: %q", got)
	}
}

// Where a simulated CAS will meet an rpc check, it is said that it
// speaks DCE/RPC and the check works against it, given its endpoint
// mapper's port (issue 35, point 8; issue 32): `sim cas --help`, the
// packaged template beside its rpc checks, and docs/operations.md, which
// also gives the Samba recipe for trying the check on another stack.
func TestSimCASSaysItSpeaksDCERPC(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"sim", "cas", "--help"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "speak DCE/RPC as Exchange does") ||
		!strings.Contains(out.String(), "port = the --epm-port") {
		t.Fatalf("sim cas --help: exit %d\n%s%s", code, out.String(), errb.String())
	}
	for file, want := range map[string][]string{
		"../../packaging/lb.toml":  {"`stickylb sim cas` speaks DCE/RPC as a CAS does", "port = its --epm-port", "\"Trying the rpc check\""},
		"../../docs/operations.md": {"## Trying the rpc check", "`stickylb sim cas` speaks DCE/RPC as a CAS does", "samba-dcerpcd --libexec-rpcds"},
	} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range want {
			if !strings.Contains(string(b), w) {
				t.Errorf("%s lacks %q", file, w)
			}
		}
	}
}
