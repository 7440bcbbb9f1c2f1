// Command stickylb is a sticky layer-4 TCP load balancer: it pins each
// client to one backend across all the ports of a pool, for as long as the
// client's session lives. Run `stickylb help` for its subcommands.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/stickylb/stickylb/admin"
	"github.com/stickylb/stickylb/config"
	"github.com/stickylb/stickylb/metrics"
	"github.com/stickylb/stickylb/server"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = "dev"

const usage = `stickylb: a sticky layer-4 TCP load balancer

Usage:
  stickylb lab   [--scenario NAME,...] [--duration 5s] [--sessions 24] [--json]
  stickylb run   [-c lb.toml] [--log-format text|json] [--log-level info]
  stickylb check [-c lb.toml]
  stickylb ctl   [--admin URL] [--json] backends|pins|pin|drain|maint|ready|unpin|reload|events ...
  stickylb sim cas   [--hosts 127.0.0.11,...] [--epm-port 10135] [--rca-port 60001] [--ab-port 60002]
  stickylb sim unity [--target 127.0.0.1] [--epm-port 10135] [--sessions 24] [--duration 10s]
  stickylb bench --target HOST:PORT [--mode short|long|bulk] [--clients 100] [--duration 10s] [--json] [--html F]
  stickylb bench backends [--hosts 127.0.0.11,...] [--port 9000]
  stickylb analyze [--ports 135,60001,60002] [--json] capture.pcap
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
	v := version
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += " (" + s.Value[:12] + ")"
			}
		}
		v += " " + bi.GoVersion
	}
	return v
}

func cmdCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("c", "lb.toml", "config file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := config.Load(*path)
	if err != nil {
		printConfigError(stderr, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: OK\n", *path)
	summary(stdout, cfg)
	return 0
}

func printConfigError(w io.Writer, err error) {
	var joined interface{ Unwrap() []error }
	if errors.As(err, &joined) {
		for _, e := range joined.Unwrap() {
			fmt.Fprintln(w, "error:", e)
		}
		return
	}
	fmt.Fprintln(w, "error:", err)
}

// summary prints what a config sets up, one line per thing.
func summary(w io.Writer, cfg *config.Config) {
	names := func(m map[string]*config.Listener) []string {
		var out []string
		for k := range m {
			out = append(out, k)
		}
		sort.Strings(out)
		return out
	}
	fmt.Fprintf(w, "listeners: %d\n", len(cfg.Listeners))
	for _, n := range names(cfg.Listeners) {
		l := cfg.Listeners[n]
		port := "same port"
		if l.BackendPort != 0 {
			port = fmt.Sprintf("port %d", l.BackendPort)
		}
		fmt.Fprintf(w, "  %-12s %-22s -> pool %s (%s)\n", n, l.Listen, l.Pool, port)
	}
	var pools []string
	for k := range cfg.Pools {
		pools = append(pools, k)
	}
	sort.Strings(pools)
	fmt.Fprintf(w, "pools: %d\n", len(pools))
	for _, n := range pools {
		p := cfg.Pools[n]
		a := p.Affinity
		key := a.Key
		if key == "src-net" {
			key = fmt.Sprintf("src-net /%d /%d", a.IPv4Prefix, a.IPv6Prefix)
		}
		var users []string
		for _, ln := range names(cfg.Listeners) {
			if cfg.Listeners[ln].Pool == n {
				users = append(users, ln)
			}
		}
		if len(users) == 0 {
			users = []string{"none: unused"}
		}
		fmt.Fprintf(w, "  %s: balance %s, affinity %s, ttl %s, max %d pins, on_down %s, listeners %s\n",
			n, p.Balance, key, a.TTL, a.MaxEntries, p.OnDown, strings.Join(users, ", "))
		health := "health checks off"
		if p.Health.Enabled {
			health = fmt.Sprintf("health tcp every %s, timeout %s, rise %d, fall %d",
				p.Health.Interval, p.Health.Timeout, p.Health.Rise, p.Health.Fall)
		}
		fmt.Fprintf(w, "    %s\n", health)
		var bs []string
		for k := range p.Backends {
			bs = append(bs, k)
		}
		sort.Strings(bs)
		for _, bn := range bs {
			b := p.Backends[bn]
			fmt.Fprintf(w, "    backend %-10s %-20s weight %d\n", bn, b.Address, b.Weight)
		}
	}
}

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log format %q: want text or json", format)
}

func cmdRun(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("c", "lb.toml", "config file")
	format := fs.String("log-format", "", "text or json (default: the config's global.log_format)")
	level := fs.String("log-level", "", "debug, info, warn or error (default: the config's global.log_level)")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file, for `go tool pprof`")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := config.Load(*path)
	if err != nil {
		printConfigError(stderr, err)
		return 1
	}
	if *format == "" {
		*format = cfg.Global.LogFormat
	}
	if *level == "" {
		*level = cfg.Global.LogLevel
	}
	log, err := newLogger(stderr, *format, *level)
	if err != nil {
		fmt.Fprintln(stderr, "error:", err)
		return 2
	}
	if *cpuprofile != "" {
		stop, err := startCPUProfile(*cpuprofile)
		if err != nil {
			log.Error("cannot start the CPU profile", "error", err)
			return 1
		}
		defer stop(log)
	}
	// The program owns the registry; library packages only register on
	// what they are given.
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := metrics.New(reg)
	var api *admin.API
	srv, err := server.New(cfg, server.Options{Log: log, Observer: m.Observer(), OnPinEvent: m.PinEvent, OnHealth: m.Health,
		OnStateChange: func(pool, backend string, up bool, err error) {
			if api == nil {
				return
			}
			if up {
				api.Record(pool, backend, "up")
			} else {
				api.Record(pool, backend, fmt.Sprintf("down: %v", err))
			}
		}})
	if err != nil {
		log.Error("cannot start", "error", err)
		return 1
	}
	m.Attach(srv)
	if path := cfg.Global.SnapshotFile; path != "" {
		restored, dropped, err := srv.LoadSnapshot(path)
		if err != nil {
			log.Warn("pin snapshot ignored", "error", err)
		} else {
			log.Info("pins restored", "file", path, "restored", restored, "dropped", dropped)
		}
	}
	api = admin.New(admin.Options{Server: srv, Gatherer: reg, ConfigPath: *path, Log: log, Token: readToken(cfg.Admin.TokenFile)})
	var adminSrv *http.Server
	if cfg.Admin.Listen != "off" {
		ln, err := net.Listen("tcp", cfg.Admin.Listen)
		if err != nil {
			log.Error("cannot start the admin listener: another process may hold the port; change admin.listen or set it to \"off\"",
				"addr", cfg.Admin.Listen, "error", err)
			srv.Shutdown(context.Background())
			return 1
		}
		adminSrv = &http.Server{Handler: api, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
			WriteTimeout: 30 * time.Second, IdleTimeout: time.Minute}
		go adminSrv.Serve(ln)
		defer adminSrv.Close()
		log.Info("admin listening", "addr", ln.Addr().String())
	}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	srv.Start()
	log.Info("stickylb running", "version", version, "pid", os.Getpid(), "config", *path, "listeners", len(cfg.Listeners), "pools", len(cfg.Pools))

	for sig := range sigs {
		if sig == syscall.SIGHUP {
			if err := srv.ReloadFile(*path); err != nil {
				log.Error("reload failed", "config", *path, "error", err)
			} else {
				log.Info("reloaded", "config", *path)
				api.Record("", "", "config reloaded")
				if c := srv.Config(); c.Admin != cfg.Admin {
					log.Warn("admin settings changed; they apply at the next restart", "admin.listen", c.Admin.Listen)
				}
			}
			continue
		}
		drain := srv.Config().Global.DrainTimeout.Duration
		log.Info("stopping: no new connections; waiting for open ones", "signal", sig.String(),
			"open", srv.Active(), "drain_timeout", drain)
		ctx, cancel := context.WithTimeout(context.Background(), drain)
		// A second signal cuts the wait short.
		go func() {
			select {
			case <-sigs:
				log.Warn("second signal: closing open connections now")
				cancel()
			case <-ctx.Done():
			}
		}()
		start := time.Now()
		cut := srv.Shutdown(ctx)
		cancel()
		if cut > 0 {
			log.Warn("drain timeout reached: closed open connections", "closed", cut, "waited", time.Since(start).Round(time.Millisecond))
		} else {
			log.Info("stopped cleanly", "waited", time.Since(start).Round(time.Millisecond))
		}
		return 0
	}
	return 0
}

// readToken reads the admin token; config has already checked the file.
func readToken(path string) string {
	if path == "" {
		return ""
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
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
