//go:build linux

// Package lab reproduces Unity's MAPI_E_NETWORK_ERROR behind a broken
// balancer and shows stickylb removing it, on one machine: simulated CAS
// hosts on 127.0.0.11-13, a balancer on 127.0.0.1 and a simulated Unity
// fleet, run through scenarios that each end in a verdict. The stickylb
// scenarios run the production server package; the broken balancers
// (Broken) exist only here and no stickylb config can select them.
//
// It is part of the lab and benchmark kit (kit/), which no runtime package
// imports, and builds on Linux only, as server does.
package lab

import (
	_ "embed"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/stickylb/stickylb/config"
)

//go:embed scenarios.toml
var builtin []byte

// Scenario is one lab run.
type Scenario struct {
	Name        string `toml:"name" json:"name"`
	Description string `toml:"description" json:"description"`
	// Balancer: stickylb; stickylb-pair (two members sharing pins) or
	// stickylb-independent (two members that do not); with ports
	// dynamic, stickylb-fixed-ports (the endpoint mapper's port alone)
	// or stickylb-follow (the same, following the endpoint mapper);
	// round-robin, nlb-hash or reroute.
	Balancer string `toml:"balancer" json:"balancer"`
	// Event happens At (a fraction of the duration) into the run: none,
	// kill, drain, restart, member-restart, add-member, reroute.
	Event string  `toml:"event" json:"event"`
	At    float64 `toml:"at" json:"at"`
	// Expect is the outcome that passes: errors (the failure is
	// reproduced), clean (no error of any kind), no-mapi-errors
	// (connections may break but no session is lost) or only-affected
	// (only sessions of the killed CAS see errors, and all recover).
	Expect string `toml:"expect" json:"expect"`
	// Ports is how the CAS hosts serve RPC Client Access and the Address
	// Book: static (default; every host on the same two ports) or dynamic
	// (each host on two ports of its own dynamic range, handed out by
	// its endpoint mapper, as Exchange does without static ports).
	Ports string `toml:"ports" json:"ports,omitempty"`
	// Affinity is stickylb's affinity key (default src-ip).
	Affinity config.KeyKind `toml:"affinity" json:"affinity,omitempty"`
	// Sessions, Sources and Duration override the run's options.
	Sessions int             `toml:"sessions" json:"sessions,omitempty"`
	Sources  int             `toml:"sources" json:"sources,omitempty"`
	Duration config.Duration `toml:"duration" json:"-"`
}

var (
	balancers = []string{"stickylb", "stickylb-pair", "stickylb-independent", "stickylb-fixed-ports", "stickylb-follow", "round-robin", "nlb-hash", "reroute"}
	portKinds = []string{"static", "dynamic"}
	events    = []string{"none", "kill", "drain", "restart", "member-restart", "add-member", "reroute"}
	expects   = []string{"errors", "clean", "no-mapi-errors", "only-affected"}
)

// epmOnly says whether a balancer forwards the endpoint mapper's port
// alone, with no listener for the CAS hosts' dynamic ports.
func epmOnly(balancer string) bool {
	return balancer == "stickylb-fixed-ports" || balancer == "stickylb-follow"
}

// Builtin returns the built-in scenarios.
func Builtin() []Scenario {
	s, err := ParseScenarios("builtin scenarios", builtin)
	if err != nil {
		panic(err) // the embedded file is checked by a test
	}
	return s
}

// LoadScenarios reads a scenario file.
func LoadScenarios(path string) ([]Scenario, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read scenario file: %w", err)
	}
	return ParseScenarios(path, b)
}

// ParseScenarios decodes and checks a scenario file.
func ParseScenarios(file string, src []byte) ([]Scenario, error) {
	var doc struct {
		Scenario []Scenario `toml:"scenario"`
	}
	md, err := toml.Decode(string(src), &doc)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	var errs []error
	for _, k := range md.Undecoded() {
		errs = append(errs, fmt.Errorf("%s: unknown key %s", file, k))
	}
	if len(doc.Scenario) == 0 {
		errs = append(errs, fmt.Errorf("%s: no [[scenario]] defined", file))
	}
	for i := range doc.Scenario {
		s := &doc.Scenario[i]
		at := fmt.Sprintf("%s: scenario %d (%q)", file, i+1, s.Name)
		if s.Event == "" {
			s.Event = "none"
		}
		if s.At == 0 {
			s.At = 0.4
		}
		if s.Ports == "" {
			s.Ports = "static"
		}
		check := func(key, v string, allowed []string) {
			if !slices.Contains(allowed, v) {
				errs = append(errs, fmt.Errorf("%s: %s must be one of %s, not %q", at, key, strings.Join(allowed, ", "), v))
			}
		}
		if s.Name == "" {
			errs = append(errs, fmt.Errorf("%s: name is required", at))
		}
		check("balancer", s.Balancer, balancers)
		check("event", s.Event, events)
		check("expect", s.Expect, expects)
		check("ports", s.Ports, portKinds)
		if s.At <= 0 || s.At >= 1 {
			errs = append(errs, fmt.Errorf("%s: at must be between 0 and 1, not %v", at, s.At))
		}
		switch {
		case (s.Event == "drain" || s.Event == "restart") && s.Balancer != "stickylb":
			errs = append(errs, fmt.Errorf("%s: event %s needs balancer stickylb", at, s.Event))
		case s.Event == "member-restart" && !paired(s.Balancer):
			errs = append(errs, fmt.Errorf("%s: event member-restart needs balancer stickylb-pair or stickylb-independent", at))
		case s.Event == "add-member" && s.Balancer != "nlb-hash":
			errs = append(errs, fmt.Errorf("%s: event add-member needs balancer nlb-hash", at))
		case s.Event == "reroute" && s.Balancer != "reroute":
			errs = append(errs, fmt.Errorf("%s: event reroute needs balancer reroute", at))
		case s.Ports == "dynamic" && s.Balancer != "stickylb" && !epmOnly(s.Balancer):
			errs = append(errs, fmt.Errorf("%s: ports dynamic needs balancer stickylb, stickylb-fixed-ports or stickylb-follow", at))
		case epmOnly(s.Balancer) && s.Ports != "dynamic":
			errs = append(errs, fmt.Errorf("%s: balancer %s needs ports dynamic", at, s.Balancer))
		case s.Expect == "only-affected" && s.Event != "kill":
			errs = append(errs, fmt.Errorf("%s: expect only-affected needs event kill", at))
		}
	}
	return doc.Scenario, errors.Join(errs...)
}
