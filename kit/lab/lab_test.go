//go:build linux

package lab

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The built-in scenarios are all there, and each expects what its
// balancer must show: the broken ones the error, stickylb none.
func TestBuiltinScenarios(t *testing.T) {
	s := Builtin()
	if len(s) != 12 {
		t.Fatalf("%d built-in scenarios, want 12", len(s))
	}
	// What each balancer must show: the broken ones, two members that
	// share nothing and fixed ports in front of dynamic RPC ports
	// reproduce the error; stickylb alone or as a cluster does not.
	reproduces := map[string]bool{"round-robin": true, "nlb-hash": true, "reroute": true, "stickylb-independent": true, "stickylb-fixed-ports": true}
	for _, sc := range s {
		if got := sc.Expect == "errors"; got != reproduces[sc.Balancer] {
			t.Errorf("scenario %s on %s expects %s", sc.Name, sc.Balancer, sc.Expect)
		}
	}
}

// A scenario file's mistakes are all reported with the file and the
// scenario, and a good file gets its defaults.
func TestScenarioFileErrors(t *testing.T) {
	src := `
[[scenario]]
name = "x"
balancer = "haproxy"
expect = "errors"
colour = "blue"

[[scenario]]
name = "y"
balancer = "round-robin"
event = "drain"
expect = "clean"

[[scenario]]
name = "z"
balancer = "stickylb"
event = "member-restart"
expect = "clean"
`
	_, err := ParseScenarios("my.toml", []byte(src))
	if err == nil {
		t.Fatal("accepted a bad scenario file")
	}
	for _, want := range []string{"my.toml: unknown key scenario.colour", `balancer must be one of stickylb, stickylb-pair, stickylb-independent, stickylb-fixed-ports, stickylb-follow, round-robin, nlb-hash, reroute, not "haproxy"`,
		"event drain needs balancer stickylb", "event member-restart needs balancer stickylb-pair or stickylb-independent"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %v\nlacks %q", err, want)
		}
	}
	ok := "[[scenario]]\nname = \"mine\"\nbalancer = \"stickylb\"\nexpect = \"clean\"\naffinity = \"src-net\"\nsessions = 4\nduration = \"1s\"\n"
	s, err := ParseScenarios("ok.toml", []byte(ok))
	if err != nil || s[0].At != 0.4 || s[0].Event != "none" || s[0].Duration.Duration != time.Second {
		t.Fatalf("good file: %+v %v", s, err)
	}
}

// The verdicts the lab exists for: the broken balancers reproduce
// MAPI_E_NETWORK_ERROR, stickylb removes it, through every event, and
// with CAS hosts on dynamic RPC ports a balancer of fixed ports fails
// every call while stickylb's range listener serves them all.
func TestScenarioVerdicts(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole lab")
	}
	results, err := Run(context.Background(), Builtin(), Options{Duration: 2 * time.Second, Sessions: 12})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range results {
		rep := r.Report
		t.Logf("%-24s ops %5d MAPI_E_NETWORK_ERROR %4d conn %3d relogons %3d per CAS %v: %s",
			r.Scenario.Name, rep.Ops, rep.MAPINetworkErrors, rep.ConnErrors, rep.Relogons, rep.SessionsPerCAS, r.Verdict)
		if !r.Pass {
			t.Errorf("scenario %s: %s (errors %v)", r.Scenario.Name, r.Verdict, rep.Errors)
		}
		switch {
		case r.Scenario.Balancer == "stickylb-follow" && (r.Pinholes == nil || r.Pinholes.Ports == 0):
			t.Errorf("scenario %s passed with no port learned: %+v", r.Scenario.Name, r.Pinholes)
		case r.Scenario.Balancer == "stickylb-fixed-ports":
			// Its failure is that no call gets through at all.
			if rep.Ops != 0 || rep.ConnErrors == 0 {
				t.Errorf("scenario %s: %d operations and %d connection errors; want none through and refused calls", r.Scenario.Name, rep.Ops, rep.ConnErrors)
			}
		case rep.Ops < 100:
			t.Errorf("scenario %s did only %d operations", r.Scenario.Name, rep.Ops)
		}
	}
}

// Following the endpoint mapper serves a CAS array on dynamic ports with
// a listener of the endpoint mapper's port alone, no range: every
// session works on the CAS whose endpoint mapper it asked, and the ports
// learned are two per CAS that served a session (RPC Client Access and
// the Address Book), all read (nothing passed over unparsed), all
// opened. The same listener without following fails every call.
func TestFollowServesDynamicPortsWithoutRange(t *testing.T) {
	if testing.Short() {
		t.Skip("runs two lab scenarios")
	}
	var follow, fixed Scenario
	for _, s := range Builtin() {
		switch s.Name {
		case "dynamic-follow":
			follow = s
		case "dynamic-fixed-ports":
			fixed = s
		}
	}
	results, err := Run(context.Background(), []Scenario{follow, fixed}, Options{Duration: 2 * time.Second, Sessions: 12})
	if err != nil {
		t.Fatal(err)
	}
	f, rep := results[0], results[0].Report
	t.Logf("%s: ops %d, MAPI_E_NETWORK_ERROR %d, conn %d, per CAS %v, pinholes %+v: %s",
		f.Scenario.Name, rep.Ops, rep.MAPINetworkErrors, rep.ConnErrors, rep.SessionsPerCAS, f.Pinholes, f.Verdict)
	if !f.Pass || rep.Ops < 100 || rep.SplitSessions != 0 || rep.Relogons != 0 {
		t.Fatalf("following: %s, %d operations, %d split, %d relogons", f.Verdict, rep.Ops, rep.SplitSessions, rep.Relogons)
	}
	if ph := f.Pinholes; ph == nil || ph.Ports != 2*len(rep.SessionsPerCAS) || ph.Unparsed != 0 || ph.OpenFailed != 0 {
		t.Fatalf("learned %+v for sessions on %d CAS hosts", ph, len(rep.SessionsPerCAS))
	}
	if r := results[1]; r.Report.Ops != 0 || r.Report.ConnErrors == 0 {
		t.Fatalf("without following: %d operations, %d connection errors; want none through", r.Report.Ops, r.Report.ConnErrors)
	}
}
