//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/term"

	"github.com/spf13/pflag"
	"github.com/stickylb/stickylb/config"
	"github.com/stickylb/stickylb/kit/lab"
	"github.com/stickylb/stickylb/kit/sim"
)

func labFlags(fs *pflag.FlagSet) runFunc {
	duration := fs.Duration("duration", 4*time.Second, "how long each scenario runs")
	sessions := fs.Int("sessions", 24, "Unity mailbox sessions per scenario")
	sources := fs.Int("sources", 6, "Unity source addresses (127.2.0.1, ...)")
	only := fs.String("scenario", "", "run only these scenarios (comma-separated names)")
	file := fs.String("scenarios", "", "TOML file of scenarios to run instead of the built-in ones")
	asJSON := fs.Bool("json", false, "print results as JSON")
	list := fs.Bool("list", false, "list the scenarios and exit")
	verbose := fs.BoolP("verbose", "v", false, "show the balancer's and CASes' logs (warnings and up)")
	return func(args []string, stdout, stderr io.Writer) int {
		scenarios, code := pickScenarios(*file, *only, stderr)
		if code != 0 {
			return code
		}
		if *list {
			for _, s := range scenarios {
				fmt.Fprintf(stdout, "%-24s %-20s expect %-14s %s\n", s.Name, s.Balancer, s.Expect, s.Description)
			}
			return 0
		}
		log := slog.New(slog.DiscardHandler)
		if *verbose {
			log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		}
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		defer stop()
		p := &labPrinter{stdout: stdout, stderr: stderr, asJSON: *asJSON}
		if f, ok := stderr.(*os.File); ok {
			p.tty = term.IsTerminal(int(f.Fd()))
		}
		if !p.asJSON {
			fmt.Fprintf(stdout, "stickylb lab: %d scenarios, %s each, %d Unity sessions from %d source addresses (unless a scenario says),\n"+
				"3 simulated CAS hosts (127.0.0.11-13), balancer on %s (the second of a pair on %s).\n\n",
				len(scenarios), *duration, *sessions, *sources, lab.VIP, lab.VIP2)
			lab.WriteHeader(stdout)
		}
		results, err := lab.Run(ctx, scenarios, lab.Options{Duration: *duration, Sessions: *sessions, Sources: *sources, Log: log,
			Progress: p.progress, OnResult: p.result})
		p.clear()
		if err != nil {
			fmt.Fprintln(stderr, "error:", err)
			return 1
		}
		return p.finish(results)
	}
}

// pickScenarios returns the scenarios to run: the built-in ones or a
// file's, narrowed to the comma-separated names in only. A non-zero code
// means an error was printed.
func pickScenarios(file, only string, stderr io.Writer) ([]lab.Scenario, int) {
	scenarios := lab.Builtin()
	if file != "" {
		var err error
		if scenarios, err = lab.LoadScenarios(file); err != nil {
			fmt.Fprintln(stderr, "error:", err)
			return nil, 1
		}
	}
	if only == "" {
		return scenarios, 0
	}
	var picked []lab.Scenario
	for _, name := range strings.Split(only, ",") {
		i := slices.IndexFunc(scenarios, func(s lab.Scenario) bool { return s.Name == strings.TrimSpace(name) })
		if i < 0 {
			fmt.Fprintf(stderr, "error: no scenario %q (see stickylb lab --list)\n", name)
			return nil, 2
		}
		picked = append(picked, scenarios[i])
	}
	return picked, 0
}

// labPrinter shows a lab run: a progress line on a terminal (a line per
// scenario otherwise), each row as its scenario finishes, so the failure
// shows within the first half minute, and the legend at the end.
type labPrinter struct {
	stdout, stderr io.Writer
	asJSON, tty    bool
	last           string
}

func (p *labPrinter) progress(pr lab.Progress) {
	line := fmt.Sprintf("[%d/%d] %-24s %4.1fs/%.0fs  ops %6d  MAPI_E_NETWORK_ERROR %5d  conn errors %4d",
		pr.Index, pr.Total, pr.Name, pr.Elapsed.Seconds(), pr.Duration.Seconds(), pr.Ops, pr.MAPINetworkErrors, pr.ConnErrors)
	if p.tty {
		fmt.Fprintf(p.stderr, "\r%s", line)
	} else if pr.Name != p.last {
		fmt.Fprintf(p.stderr, "running [%d/%d] %s ...\n", pr.Index, pr.Total, pr.Name)
	}
	p.last = pr.Name
}

func (p *labPrinter) result(i int, r lab.Result) {
	if p.asJSON {
		return
	}
	p.clear()
	lab.WriteRow(p.stdout, i, r)
}

func (p *labPrinter) clear() {
	if p.tty {
		fmt.Fprint(p.stderr, "\r\033[K")
	}
}

// finish prints the results (JSON) or the legend, and fails when a
// scenario did not turn out as expected.
func (p *labPrinter) finish(results []lab.Result) int {
	if p.asJSON {
		printJSON(p.stdout, results)
	} else {
		fmt.Fprintln(p.stdout)
		fmt.Fprintln(p.stdout, "MAPI_E_NETW: MAPI_E_NETWORK_ERROR (0x80040115) replies, the error Unity logs when a CAS")
		fmt.Fprintln(p.stdout, "does not know its session. conn: broken or refused connections. relog: sessions that had")
		fmt.Fprintln(p.stdout, "to log on again. split: sessions answered by a CAS other than the one holding them.")
	}
	for _, r := range results {
		if !r.Pass {
			fmt.Fprintf(p.stderr, "scenario %s did not turn out as expected: %s\n", r.Scenario.Name, r.Verdict)
			return 1
		}
	}
	return 0
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func simCASFlags(fs *pflag.FlagSet) runFunc {
	hosts := fs.String("hosts", "127.0.0.11,127.0.0.12,127.0.0.13", "addresses to serve, one simulated CAS each (named cas1, cas2, ...)")
	names := fs.String("names", "", "names for the CAS hosts, comma-separated (default cas1, cas2, ...)")
	epm := fs.Int("epm-port", 10135, "endpoint mapper port (135 on a real lab machine)")
	rca := fs.Int("rca-port", 60001, "RPC Client Access port")
	ab := fs.Int("ab-port", 60002, "Address Book port")
	idle := fs.Duration("session-idle", 30*time.Minute, "end a session after this long unused")
	dynamic := fs.String("dynamic-ports", "", "serve RPC Client Access and the Address Book on two ports each host picks at random from this range (such as 6005-59530), as Exchange does without static ports; replaces --rca-port and --ab-port")
	return func(args []string, stdout, stderr io.Writer) int {
		log := slog.New(slog.NewTextHandler(stderr, nil))
		var dyn config.PortRange
		if *dynamic != "" {
			_, ps, err := config.ParseListenPorts(":" + *dynamic)
			if err != nil || len(ps) != 1 || ps[0].Last-ps[0].First < 1 {
				fmt.Fprintf(stderr, "error: --dynamic-ports %q: give one range of at least two ports, such as 6005-59530\n", *dynamic)
				return 2
			}
			dyn = ps[0]
		}
		hs, ns := splitList(*hosts), splitList(*names)
		if len(ns) > 0 && len(ns) != len(hs) {
			fmt.Fprintf(stderr, "error: %d names for %d hosts\n", len(ns), len(hs))
			return 2
		}
		var cases []*sim.CAS
		for i, h := range hs {
			name := fmt.Sprintf("cas%d", i+1)
			if len(ns) > 0 {
				name = ns[i]
			}
			c, err := sim.StartCAS(sim.CASConfig{Name: name, Host: h, EPMPort: *epm, RCAPort: *rca, ABPort: *ab, SessionIdle: *idle, Log: log,
				DynamicFirst: int(dyn.First), DynamicLast: int(dyn.Last)})
			if err != nil {
				fmt.Fprintln(stderr, "error:", err)
				for _, c := range cases {
					c.Close()
				}
				return 1
			}
			cases = append(cases, c)
			rcaPort, abPort := c.Ports()
			log.Info("simulated CAS serving", "cas", name, "host", h, "epm", *epm, "rca", rcaPort, "ab", abPort)
		}
		waitForStop()
		for _, c := range cases {
			st := c.Stats()
			log.Info("simulated CAS stopping", "cas", c.Name(), "logons", st.Logons, "ops", st.Ops,
				"mapi_e_network_error", st.NetworkErrors, "protocol_errors", st.ProtocolErrors)
			c.Close()
		}
		return 0
	}
}

func simUnityFlags(fs *pflag.FlagSet) runFunc {
	target := fs.String("target", "127.0.0.1", "balancer address (the CAS array name's IP)")
	epm := fs.Int("epm-port", 10135, "endpoint mapper port on the target (135 for a real array)")
	sources := fs.String("sources", "", "source addresses to connect from, comma-separated (default: the OS chooses)")
	sessions := fs.Int("sessions", 24, "mailbox sessions")
	duration := fs.Duration("duration", 10*time.Second, "how long to run")
	interval := fs.Duration("interval", 50*time.Millisecond, "mean pause between a session's operations")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	return func(args []string, stdout, stderr io.Writer) int {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		defer stop()
		f := sim.NewFleet(sim.FleetConfig{Target: *target, EPMPort: *epm, Sources: splitList(*sources),
			Sessions: *sessions, Duration: *duration, OpInterval: *interval})
		rep := f.Run(ctx)
		if *asJSON {
			printJSON(stdout, rep)
			return fleetVerdict(rep, stderr)
		}
		fmt.Fprintf(stdout, "target %s, %d sessions, %s\n", rep.Target, rep.Sessions, rep.Duration.Round(time.Millisecond))
		fmt.Fprintf(stdout, "operations          %d (%d ok)\n", rep.Ops, rep.OK)
		fmt.Fprintln(stdout, mapiErrors(rep.MAPINetworkErrors, rep.ErrorRate, rep.ErrorSessions, rep.Sessions))
		fmt.Fprintf(stdout, "connection errors   %d\n", rep.ConnErrors)
		for _, k := range slices.Sorted(maps.Keys(rep.Errors)) {
			fmt.Fprintf(stdout, "  %-32s %d\n", k, rep.Errors[k])
		}
		fmt.Fprintf(stdout, "other errors        %d\n", rep.OtherErrors)
		fmt.Fprintf(stdout, "logons              %d (%d again after a lost session)\n", rep.Logons, rep.Relogons)
		fmt.Fprintf(stdout, "split sessions      %d\n", rep.SplitSessions)
		fmt.Fprintf(stdout, "latency ms          p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.2f\n",
			rep.Latency.P50, rep.Latency.P90, rep.Latency.P99, rep.Latency.P999, rep.Latency.Max)
		fmt.Fprint(stdout, "sessions per CAS   ")
		for _, k := range slices.Sorted(maps.Keys(rep.SessionsPerCAS)) {
			fmt.Fprintf(stdout, " %s:%d", k, rep.SessionsPerCAS[k])
		}
		fmt.Fprintln(stdout)
		return fleetVerdict(rep, stderr)
	}
}

// fleetVerdict is sim unity's exit code, in text and JSON alike: 1 when
// a session saw MAPI_E_NETWORK_ERROR, or when the fleet could not do its
// job at all (no operation succeeded), with the reason on stderr.
func fleetVerdict(rep *sim.Report, stderr io.Writer) int {
	switch {
	case rep.MAPINetworkErrors > 0:
		fmt.Fprintf(stderr, "error: %d MAPI_E_NETWORK_ERROR: sessions were sent to a CAS that does not hold them\n", rep.MAPINetworkErrors)
		return 1
	case rep.OK == 0:
		fmt.Fprintf(stderr, "error: no operation succeeded (%d connection errors: %v): is a balancer listening at %s?\n", rep.ConnErrors, rep.Errors, rep.Target)
		return 1
	}
	return 0
}

// mapiErrors is sim unity's MAPI_E_NETWORK_ERROR line: how many, and how
// many of the sessions saw one ("0 (0.000% of operations) in 30
// sessions" read as 30 sessions that saw it).
func mapiErrors(n int64, rate float64, inSessions, sessions int) string {
	if n == 0 {
		return fmt.Sprintf("MAPI_E_NETWORK_ERROR 0: none of the %d sessions saw one", sessions)
	}
	return fmt.Sprintf("MAPI_E_NETWORK_ERROR %d (%.3f%% of operations), seen by %d of the %d sessions", n, 100*rate, inSessions, sessions)
}
