//go:build linux

package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/term"

	"github.com/stickylb/stickylb/kit/bench"
	"github.com/stickylb/stickylb/kit/capture"
)

func cmdBench(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "backends" {
		return cmdBenchBackends(args[1:], stderr)
	}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	target := fs.String("target", "", "balancer address host:port (required)")
	mode := fs.String("mode", "short", "short, long or bulk")
	clients := fs.Int("clients", 100, "distinct client source addresses (127.10.0.1 up)")
	conc := fs.Int("concurrency", 32, "connections in flight")
	rate := fs.Float64("rate", 0, "connections per second (0: as fast as possible)")
	duration := fs.Duration("duration", 10*time.Second, "how long to run")
	conns := fs.Int64("conns", 0, "stop after this many connections (0: no limit)")
	size := fs.Int("size", 0, "bytes echoed per connection (default 64; bulk 16 MiB)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	html := fs.String("html", "", "write an HTML report with charts to this file")
	backends := fs.String("backends", "", "start bench's own backends on these hosts (comma-separated), named cas1, cas2, ...")
	port := fs.Int("backend-port", 0, "port of bench's own backends")
	remove := fs.String("remove", "", "kill this backend of bench's own (cas2, ...) during the run, to measure remapping")
	at := fs.Float64("at", 0.5, "when to remove it, as a fraction of the duration")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *target == "" {
		fmt.Fprintln(stderr, "error: --target is required (the balancer's host:port)")
		return 2
	}
	cfg := bench.Config{Target: *target, Mode: bench.Mode(*mode), Clients: *clients, Concurrency: *conc, Rate: *rate,
		Duration: *duration, MaxConns: *conns, Size: *size, At: *at, Removed: *remove}
	if cfg.Mode != bench.Short && cfg.Mode != bench.Long && cfg.Mode != bench.Bulk {
		fmt.Fprintf(stderr, "error: --mode %q: want short, long or bulk\n", *mode)
		return 2
	}
	if *backends != "" {
		if *port == 0 {
			fmt.Fprintln(stderr, "error: --backends needs --backend-port")
			return 2
		}
		bs, err := bench.StartBackends(splitList(*backends), *port)
		if err != nil {
			fmt.Fprintln(stderr, "error: start backends:", err)
			return 1
		}
		defer func() {
			for _, b := range bs {
				b.Close()
			}
		}()
		if *remove != "" {
			var victim *bench.Backend
			for _, b := range bs {
				if b.Name == *remove {
					victim = b
				}
			}
			if victim == nil {
				fmt.Fprintf(stderr, "error: --remove %s: bench's backends are cas1..cas%d\n", *remove, len(bs))
				return 2
			}
			cfg.Event = victim.Kill
		}
	} else if *remove != "" {
		fmt.Fprintln(stderr, "error: --remove needs bench's own --backends")
		return 2
	}
	tty := false
	if f, ok := stderr.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	if tty {
		cfg.Progress = func(p bench.Progress) {
			frac := min(1, p.Elapsed.Seconds()/p.Duration.Seconds())
			n := int(frac * 30)
			fmt.Fprintf(stderr, "\r[%s%s] %3.0f%%  %6d conns  %4d errors", strings.Repeat("#", n), strings.Repeat(" ", 30-n), 100*frac, p.Conns, p.Errors)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	res, err := bench.Run(ctx, cfg)
	if tty {
		fmt.Fprint(stderr, "\r\033[K")
	}
	if err != nil {
		fmt.Fprintln(stderr, "error:", err)
		return 1
	}
	if *html != "" {
		f, err := os.Create(*html)
		if err == nil {
			err = bench.WriteHTML(f, res)
			f.Close()
		}
		if err != nil {
			fmt.Fprintln(stderr, "error: write report:", err)
			return 1
		}
	}
	if *asJSON {
		printJSON(stdout, res)
	} else {
		bench.WriteText(stdout, res)
	}
	if res.Violations > 0 {
		return 1
	}
	return 0
}

func cmdBenchBackends(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench backends", flag.ContinueOnError)
	fs.SetOutput(stderr)
	hosts := fs.String("hosts", "127.0.0.11,127.0.0.12,127.0.0.13", "addresses, one backend each (named cas1, cas2, ...)")
	port := fs.Int("port", 9000, "port on every host")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	bs, err := bench.StartBackends(splitList(*hosts), *port)
	if err != nil {
		fmt.Fprintln(stderr, "error:", err)
		return 1
	}
	for _, b := range bs {
		fmt.Fprintf(stderr, "bench backend %s on %s\n", b.Name, b.Addr)
	}
	waitForStop()
	for _, b := range bs {
		b.Close()
	}
	return 0
}

func cmdAnalyze(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("analyze", flag.ContinueOnError)
	fs.SetOutput(stderr)
	ports := fs.String("ports", "", "only connections to these server ports count, comma-separated (such as 135,60001,60002)")
	backends := fs.String("backends", "", "only connections to these addresses count, comma-separated")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	steps := fs.String("steps", "", "instead, time each step inside a balancer from a loopback capture of both its legs: LISTEN_PORT,BACKEND_PORT (one client connection at a time)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: stickylb analyze [--ports 135,60001,60002] [--backends IP,...] [--json] capture.pcap|capture.pcapng")
		fmt.Fprintln(stderr, "       stickylb analyze --steps LISTEN_PORT,BACKEND_PORT [--json] capture.pcap|capture.pcapng")
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	var opts capture.Options
	for _, p := range splitList(*ports) {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil {
			fmt.Fprintf(stderr, "error: --ports: %q is not a port\n", p)
			return 2
		}
		opts.Ports = append(opts.Ports, uint16(n))
	}
	for _, b := range splitList(*backends) {
		a, err := netip.ParseAddr(b)
		if err != nil {
			fmt.Fprintf(stderr, "error: --backends: %q is not an IP address\n", b)
			return 2
		}
		opts.Backends = append(opts.Backends, a)
	}
	f, err := os.Open(fs.Arg(0))
	if err != nil {
		fmt.Fprintln(stderr, "error:", err)
		return 1
	}
	defer f.Close()
	if *steps != "" {
		return analyzeSteps(f, fs.Arg(0), *steps, *asJSON, stdout, stderr)
	}
	rep, err := capture.Analyze(f, opts)
	if err != nil {
		fmt.Fprintf(stderr, "error: %s: %v\n", fs.Arg(0), err)
		if rep == nil {
			return 1
		}
	}
	if *asJSON {
		printJSON(stdout, rep)
	} else {
		fmt.Fprintf(stdout, "%d packets (%d not IP/TCP), %d connections, %d clients, %d split across backends\n",
			rep.Packets, rep.Skipped, rep.Flows, len(rep.Clients), rep.Split)
		for _, c := range rep.Clients {
			mark := "ok   "
			if c.Split {
				mark = "SPLIT"
			}
			fmt.Fprintf(stdout, "%s %-40s", mark, c.Client)
			for i, v := range c.Visits {
				if i > 0 {
					fmt.Fprint(stdout, " -> ")
				}
				fmt.Fprintf(stdout, "%s %v x%d (%s-%s)", v.Backend, v.Ports, v.Flows, v.First.Format("15:04:05"), v.Last.Format("15:04:05"))
			}
			fmt.Fprintln(stdout)
		}
	}
	if rep.Split > 0 {
		return 1
	}
	return 0
}

// analyzeSteps prints how long a balancer took over each step of its
// connections (capture.Steps).
func analyzeSteps(f io.Reader, name, ports string, asJSON bool, stdout, stderr io.Writer) int {
	var p [2]uint16
	list := splitList(ports)
	for i, s := range list {
		n, err := strconv.ParseUint(s, 10, 16)
		if err != nil || len(list) != 2 {
			fmt.Fprintf(stderr, "error: --steps wants LISTEN_PORT,BACKEND_PORT, such as 19201,9000; got %q\n", ports)
			return 2
		}
		p[i] = uint16(n)
	}
	steps, err := capture.Steps(f, p[0], p[1])
	if err != nil {
		fmt.Fprintf(stderr, "error: %s: %v\n", name, err)
		if steps == nil {
			return 1
		}
	}
	if asJSON {
		printJSON(stdout, steps)
		return 0
	}
	for _, s := range steps {
		fmt.Fprintf(stdout, "%-14s %6d connections  median %6.1f us  p90 %6.1f us\n", s.Name, s.Count,
			float64(s.Median)/float64(time.Microsecond), float64(s.P90)/float64(time.Microsecond))
	}
	return 0
}
