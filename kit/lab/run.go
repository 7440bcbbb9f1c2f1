//go:build linux

package lab

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/stickylb/stickylb/config"
	"github.com/stickylb/stickylb/kit/loop"
	"github.com/stickylb/stickylb/kit/sim"
	"github.com/stickylb/stickylb/pool"
	"github.com/stickylb/stickylb/proxy"
	"github.com/stickylb/stickylb/server"
)

// Options apply to every scenario of a run.
type Options struct {
	Duration time.Duration // per scenario (default 4s)
	Sessions int           // mailbox sessions (default 24)
	Sources  int           // Unity source addresses (default 6)
	Log      *slog.Logger  // the balancer's and CASes' logs (default: discarded)
	// Progress, if set, is called about four times a second while a
	// scenario runs.
	Progress func(Progress)
	// OnResult, if set, is called as each scenario finishes.
	OnResult func(i int, r Result)
}

// Progress is the state of the scenario being run.
type Progress struct {
	Index, Total                       int
	Name                               string
	Elapsed, Duration                  time.Duration
	Ops, MAPINetworkErrors, ConnErrors int64
}

// Result is a scenario's outcome.
type Result struct {
	Scenario Scenario    `json:"scenario"`
	Report   *sim.Report `json:"report"`
	// Verdict is reproduced or fixed when the outcome is the expected
	// one; otherwise it says what went wrong.
	Verdict string `json:"verdict"`
	Pass    bool   `json:"pass"`
	// Target is the CAS the event hit (killed or drained), if any.
	Target string `json:"event_target,omitempty"`
	// Pinholes, with balancer stickylb-follow, is what following the
	// endpoint mapper learned by the end of the run.
	Pinholes *proxy.PinholeStats `json:"pinholes,omitempty"`
}

// CAS hosts and the balancer's address in the lab.
var (
	CASHosts = []string{"127.0.0.11", "127.0.0.12", "127.0.0.13"}
	VIP      = "127.0.0.1"
)

// SourceIP returns Unity source address i: 127.2.0.1, 127.2.0.2, ...
func SourceIP(i int) string { return loop.SourceIP(2, i) }

// Run runs the scenarios in order.
func Run(ctx context.Context, scenarios []Scenario, opts Options) ([]Result, error) {
	if opts.Duration <= 0 {
		opts.Duration = 4 * time.Second
	}
	if opts.Sessions <= 0 {
		opts.Sessions = 24
	}
	if opts.Sources <= 0 {
		opts.Sources = 6
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	var out []Result
	used := map[int]bool{}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0))
	for i, s := range scenarios {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		r, err := runOne(ctx, s, i, len(scenarios), opts, used, rng)
		if err != nil {
			return out, fmt.Errorf("scenario %s: %w", s.Name, err)
		}
		out = append(out, r)
		if opts.OnResult != nil {
			opts.OnResult(i, r)
		}
	}
	return out, nil
}

// rig is what one scenario runs: the CAS array and a balancer.
type rig struct {
	// ports are the endpoint mapper's, RPC Client Access's and the
	// Address Book's; with dynamic ports, the endpoint mapper's alone,
	// and dynamic is the block of every host's ranges.
	ports   []int
	dynamic config.PortRange
	cases   []*sim.CAS
	broken  *Broken
	srv     *server.Server
	cfg     *config.Config
	log     *slog.Logger
	// The two-member scenarios' members and their configs.
	members   []*server.Server
	memberCfg []*config.Config
	fleet     *sim.Fleet
	// Ports already used in this run, and where new ones come from.
	used map[int]bool
	rng  *rand.Rand
}

func (r *rig) close() {
	if r.broken != nil {
		r.broken.Close()
	}
	for _, srv := range append([]*server.Server{r.srv}, r.members...) {
		if srv == nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		srv.Shutdown(ctx)
		cancel()
	}
	for _, c := range r.cases {
		c.Close()
	}
}

// startRig picks three ports free on the VIP and on every CAS host and
// starts the CAS array on them. Ports come from below Linux's ephemeral
// range (32768 and up), so no outgoing connection of this or another
// process can be holding one as its source port (seen here with 60002),
// and none is used twice in a run, so each scenario starts on ports with
// no history.
func startRig(s Scenario, used map[int]bool, rng *rand.Rand, log *slog.Logger) (*rig, error) {
	var last error
	for attempt := 0; attempt < 50; attempt++ {
		var ports []int
		var probes []net.Listener
		for len(ports) < 3 {
			p := 20000 + rng.IntN(12000)
			if used[p] {
				continue
			}
			used[p] = true
			if err := probe(p, VIP2); err != nil {
				last = err
				continue
			}
			ln, err := net.Listen("tcp", net.JoinHostPort(VIP, fmt.Sprint(p)))
			if err != nil {
				last = err
				continue
			}
			probes = append(probes, ln)
			ports = append(ports, p)
		}
		for _, ln := range probes {
			ln.Close()
		}
		r := &rig{ports: ports, log: log, used: used, rng: rng}
		if err := r.startArray(s); err != nil {
			last = err
			continue
		}
		return r, nil
	}
	return nil, fmt.Errorf("no free ports for the lab on %v: %w", CASHosts, last)
}

// startBalancer binds the balancer on the VIP at the rig's ports.
func (r *rig) startBalancer(s Scenario) error {
	var err error
	for attempt := 0; attempt < 20; attempt++ {
		switch s.Balancer {
		case "stickylb", "stickylb-fixed-ports", "stickylb-follow":
			err = r.startStickylb(s)
		case "stickylb-pair", "stickylb-independent":
			err = r.startPair(s)
		case "round-robin":
			r.broken, err = StartBroken(PerConnection, VIP, r.ports, CASHosts)
		case "nlb-hash":
			members := CASHosts
			if s.Event == "add-member" {
				members = CASHosts[:2]
			}
			r.broken, err = StartBroken(NLBHash, VIP, r.ports, members)
		case "reroute":
			r.broken, err = StartBroken(Reroute, VIP, r.ports, CASHosts)
		}
		if err == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return err
}

// StickylbConfig is the config the lab runs stickylb with: three
// listeners sharing pool cas, fast health checks.
func StickylbConfig(ports []int, affinityKey config.KeyKind) string {
	return stickylbConfig(VIP, ports, affinityKey)
}

func stickylbConfig(vip string, ports []int, affinityKey config.KeyKind) string {
	var b strings.Builder
	names := []string{"epmap", "rpc", "addressbook"}
	for i, p := range ports {
		fmt.Fprintf(&b, "[listener.%s]\nlisten = \"%s\"\npool = \"cas\"\n", names[i], net.JoinHostPort(vip, fmt.Sprint(p)))
	}
	fmt.Fprintf(&b, "[pool.cas]\nconnect_timeout = \"1s\"\n[pool.cas.affinity]\nkey = %q\n", affinityKey.String())
	b.WriteString("[pool.cas.health]\ninterval = \"100ms\"\ntimeout = \"200ms\"\nrise = 2\nfall = 2\n")
	for i, h := range CASHosts {
		fmt.Fprintf(&b, "[pool.cas.backend.cas%d]\naddress = %q\n", i+1, h)
	}
	return b.String()
}

func (r *rig) startStickylb(s Scenario) error {
	if r.cfg == nil {
		text := StickylbConfig(r.ports, s.Affinity)
		if s.Ports == "dynamic" {
			text = dynamicConfig(VIP, r.ports[0], r.dynamic, s.Balancer)
		}
		cfg, err := config.Parse("lab:"+s.Name, []byte(text))
		if err != nil {
			return err
		}
		r.cfg = cfg
	}
	srv, err := server.New(r.cfg, server.Options{Log: r.log})
	if err != nil {
		return err
	}
	srv.Start()
	r.srv = srv
	return nil
}

// pinholes returns the stickylb's learned ports, if it follows the
// endpoint mapper.
func (r *rig) pinholes() *proxy.PinholeStats {
	if r.srv == nil {
		return nil
	}
	if st, ok := r.srv.Pinholes()["epmap"]; ok {
		return &st
	}
	return nil
}

// busiest returns the CAS holding the most sessions.
func (r *rig) busiest() *sim.CAS {
	best := r.cases[0]
	for _, c := range r.cases[1:] {
		if c.Stats().Sessions > best.Stats().Sessions {
			best = c
		}
	}
	return best
}

// event performs the scenario's event and returns the CAS it hit, if any.
func (r *rig) event(s Scenario, d time.Duration) (string, error) {
	switch s.Event {
	case "kill":
		c := r.busiest()
		c.Kill()
		return c.Name(), nil
	case "drain":
		c := r.busiest()
		r.srv.Pool("cas").Backend(c.Name()).SetAdminState(pool.Drain)
		return c.Name(), nil
	case "restart":
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		r.srv.Shutdown(ctx)
		cancel()
		r.srv = nil
		return "", r.startBalancer(s)
	case "member-restart":
		return "", r.memberRestart(d)
	case "add-member":
		r.broken.SetMembers(CASHosts)
	case "reroute":
		r.broken.RerouteFlows()
	}
	return "", nil
}

func runOne(ctx context.Context, s Scenario, idx, total int, opts Options, used map[int]bool, rng *rand.Rand) (Result, error) {
	d := opts.Duration
	if s.Duration.Duration > 0 {
		d = s.Duration.Duration
	}
	sessions, sources := opts.Sessions, opts.Sources
	if s.Sessions > 0 {
		sessions = s.Sessions
	}
	if s.Sources > 0 {
		sources = s.Sources
	}
	r, err := startRig(s, used, rng, opts.Log)
	if err != nil {
		return Result{}, err
	}
	defer r.close()
	if err := r.startBalancer(s); err != nil {
		return Result{}, err
	}
	var srcs []string
	for i := range sources {
		srcs = append(srcs, SourceIP(i))
	}
	targets := []string{VIP}
	if paired(s.Balancer) {
		targets = append(targets, VIP2)
	}
	fleet := sim.NewFleet(sim.FleetConfig{Targets: targets, EPMPort: r.ports[0], Sources: srcs,
		Sessions: sessions, Duration: d, Seed: uint64(idx + 1)})
	r.fleet = fleet
	done := make(chan *sim.Report, 1)
	go func() { done <- fleet.Run(ctx) }()

	start := time.Now()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	eventAt := time.After(time.Duration(float64(d) * s.At))
	if s.Event == "none" {
		eventAt = nil
	}
	var target string
	var evErr error
	for {
		select {
		case rep := <-done:
			if evErr != nil {
				return Result{}, fmt.Errorf("event %s: %w", s.Event, evErr)
			}
			res := Result{Scenario: s, Report: rep, Target: target, Pinholes: r.pinholes()}
			res.Verdict, res.Pass = verdict(s, rep, target)
			if res.Pinholes != nil && res.Pass {
				res.Verdict += fmt.Sprintf(": 135 alone, %d ports learned", res.Pinholes.Ports)
			}
			return res, nil
		case <-eventAt:
			eventAt = nil
			target, evErr = r.event(s, d)
		case <-tick.C:
			if opts.Progress != nil {
				ops, mapi, conn := fleet.Progress()
				opts.Progress(Progress{Index: idx + 1, Total: total, Name: s.Name, Elapsed: time.Since(start),
					Duration: d, Ops: ops, MAPINetworkErrors: mapi, ConnErrors: conn})
			}
		}
	}
}

// verdict judges a scenario's report against what it expects.
func verdict(s Scenario, rep *sim.Report, target string) (string, bool) {
	switch s.Expect {
	case "errors":
		switch {
		case rep.MAPINetworkErrors > 0:
			return "reproduced", true
		case s.Ports == "dynamic" && rep.Logons == 0 && rep.ConnErrors > 0:
			// MAPI reports an RPC endpoint it cannot reach as
			// MAPI_E_NETWORK_ERROR: Unity's log is the same.
			return fmt.Sprintf("reproduced: all %d connections to the ports the endpoint mapper handed out failed", rep.ConnErrors), true
		}
		return "NOT reproduced: no MAPI_E_NETWORK_ERROR", false
	case "clean":
		if rep.MAPINetworkErrors == 0 && rep.ConnErrors == 0 {
			return "fixed", true
		}
		return fmt.Sprintf("NOT fixed: %d MAPI_E_NETWORK_ERROR, %d connection errors %v", rep.MAPINetworkErrors, rep.ConnErrors, rep.Errors), false
	case "no-mapi-errors":
		if rep.MAPINetworkErrors == 0 {
			return "fixed", true
		}
		return fmt.Sprintf("NOT fixed: %d MAPI_E_NETWORK_ERROR", rep.MAPINetworkErrors), false
	case "only-affected":
		var bad []string
		for _, ps := range rep.PerSession {
			affected := slices.Contains(ps.CAS, target)
			switch {
			case !affected && ps.MAPINetworkErrors+ps.ConnErrors > 0:
				bad = append(bad, fmt.Sprintf("session %d on %v saw errors", ps.ID, ps.CAS))
			case affected && (len(ps.CAS) == 0 || ps.CAS[len(ps.CAS)-1] == target):
				bad = append(bad, fmt.Sprintf("session %d did not log on again away from %s", ps.ID, target))
			}
		}
		if len(bad) == 0 {
			return "fixed", true
		}
		return "NOT fixed: " + strings.Join(bad[:min(3, len(bad))], "; "), false
	}
	return "unknown expectation", false
}
