//go:build linux

// Command stickylb is a sticky layer-4 TCP load balancer: it pins each
// client to one backend across all the ports of a pool, for as long as the
// client's session lives. Run `stickylb help` for its subcommands.
//
// It builds on Linux only; main_other.go says so on any other system.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"syscall"
)

// Set at build time; see versionString:
//
//	go build -ldflags "-X main.version=v1.2.3 -X main.commit=$(git rev-parse HEAD) -X main.date=$(date -u +%Y-%m-%dT%H:%M:%SZ)" ./cmd/stickylb
var version, commit, date = "dev", "", ""

const usage = `stickylb: a sticky layer-4 TCP load balancer

Usage:
  stickylb lab   [--scenario NAME,...] [--duration 5s] [--sessions 24] [--json]
  stickylb run   [-c lb.toml] [--pidfile FILE] [--log-format text|json] [--log-level info]
  stickylb check [-c lb.toml]
  stickylb ctl   [--admin URL] [--json] backends|pins|pin|drain|maint|ready|unpin|reload|events ...
  stickylb sim cas   [--hosts 127.0.0.11,...] [--epm-port 10135] [--rca-port 60001] [--ab-port 60002]
  stickylb sim unity [--target 127.0.0.1] [--epm-port 10135] [--sessions 24] [--duration 10s]
  stickylb bench --target HOST:PORT [--mode short|long|bulk] [--clients 100] [--duration 10s] [--json] [--html F]
  stickylb bench backends [--hosts 127.0.0.11,...] [--port 9000]
  stickylb analyze [--ports 135,60001,60002] [--balancer IP] [--json] capture.pcap
  stickylb analyze --steps LISTEN_PORT,BACKEND_PORT [--json] capture.pcap
  stickylb version

lab     reproduce MAPI_E_NETWORK_ERROR behind broken balancers and show
        stickylb removing it, all on loopback, in about a minute.

run     balance connections as the config says. SIGHUP reloads the config,
        SIGTERM or SIGINT drains (stop accepting, wait up to
        global.drain_timeout for open connections) and exits.
check   validate a config and print what it sets up; exit 1 on error.
ctl     inspect and steer a running stickylb through its admin API
        (stickylb ctl help).
sim     run a simulated CAS array or Unity client fleet (docs/lab.md).
bench   load and score any TCP balancer: speed, stickiness, balance,
        remapping (docs/benchmarks.md).
analyze read a pcap/pcapng capture and flag every client whose
        connections reached more than one backend; with --steps, time
        each step inside a balancer (docs/benchmarks.md).
version print the version.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "run":
		return cmdRun(rest, stdout, stderr)
	case "check":
		return cmdCheck(rest, stdout, stderr)
	case "lab":
		return cmdLab(rest, stdout, stderr)
	case "sim":
		return cmdSim(rest, stdout, stderr)
	case "ctl":
		return cmdCtl(rest, stdout, stderr)
	case "bench":
		return cmdBench(rest, stdout, stderr)
	case "analyze":
		return cmdAnalyze(rest, stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "stickylb", versionString())
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "stickylb: unknown command %q\n\n%s", cmd, usage)
	return 2
}

func versionString() string {
	v, c, d := version, commit, date
	goVersion := runtime.Version()
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version // go install module@version
		}
		for _, s := range bi.Settings { // what go build records from git
			switch {
			case s.Key == "vcs.revision" && c == "":
				c = s.Value
			case s.Key == "vcs.time" && d == "":
				d = s.Value
			}
		}
	}
	return fmt.Sprintf("%s commit %s built %s %s %s/%s", v, orUnknown(c), orUnknown(d), goVersion, runtime.GOOS, runtime.GOARCH)
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// parseFlags parses a subcommand's flags. It says the command is done,
// with its exit code, on a bad flag (2) and on -h or --help (0: help is
// an answer, and never runs the command).
func parseFlags(fs *flag.FlagSet, args []string) (code int, done bool) {
	switch err := fs.Parse(args); {
	case errors.Is(err, flag.ErrHelp):
		return 0, true
	case err != nil:
		return 2, true
	}
	return 0, false
}

// wantsHelp says whether args ask for help anywhere.
func wantsHelp(args []string) bool {
	return slices.ContainsFunc(args, func(a string) bool { return a == "-h" || a == "-help" || a == "--help" })
}

// printJSON writes v as indented JSON, for every subcommand's --json.
func printJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// waitForStop blocks until SIGINT or SIGTERM, for the commands that serve
// until told to stop (sim cas, bench backends).
func waitForStop() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
}

// startCPUProfile profiles the process into path until the returned
// function runs, which reports a failed write.
func startCPUProfile(path string) (func(*slog.Logger), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile %s: %w", path, err)
	}
	return func(log *slog.Logger) {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			log.Error("cpu profile not written", "file", path, "error", err)
			return
		}
		log.Info("cpu profile written", "file", path)
	}, nil
}
