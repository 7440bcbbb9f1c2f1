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

func TestBuiltinScenarios(t *testing.T) {
	s := Builtin()
	if len(s) != 7 {
		t.Fatalf("%d built-in scenarios, want 7", len(s))
	}
	broken := 0
	for _, sc := range s {
		if sc.Balancer != "stickylb" {
			broken++
			if sc.Expect != "errors" {
				t.Errorf("broken balancer scenario %s expects %s", sc.Name, sc.Expect)
			}
		} else if sc.Expect == "errors" {
			t.Errorf("stickylb scenario %s expects errors", sc.Name)
		}
	}
	if broken != 3 {
		t.Errorf("%d broken-balancer scenarios, want 3", broken)
	}
}

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
`
	_, err := ParseScenarios("my.toml", []byte(src))
	if err == nil {
		t.Fatal("accepted a bad scenario file")
	}
	for _, want := range []string{"my.toml: unknown key scenario.colour", `balancer must be one of stickylb, round-robin, nlb-hash, reroute, not "haproxy"`,
		"event drain needs balancer stickylb"} {
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
// MAPI_E_NETWORK_ERROR, stickylb removes it, through every event.
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
		if rep.Ops < 100 {
			t.Errorf("scenario %s did only %d operations", r.Scenario.Name, rep.Ops)
		}
	}
}
