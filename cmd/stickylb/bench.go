//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/term"

	"github.com/spf13/pflag"
	"github.com/stickylb/stickylb/kit/bench"
	"github.com/stickylb/stickylb/kit/loop"
)

func benchFlags(fs *pflag.FlagSet) runFunc {
	target := fs.String("target", "", "balancer address host:port (required)")
	mode := fs.String("mode", "short", "short, long, bulk or rpc (bind EMSMDB, make --calls requests)")
	clients := fs.Int("clients", 100, "distinct client source addresses (127.10.0.1 up)")
	conc := fs.Int("concurrency", 32, "connections in flight")
	rate := fs.Float64("rate", 0, "connections per second (0: as fast as possible)")
	duration := fs.Duration("duration", 10*time.Second, "how long to run")
	conns := fs.Int64("conns", 0, "stop after this many connections (0: no limit)")
	size := fs.Int("size", 0, "bytes echoed per connection (default 64; bulk 16 MiB); rpc: stub bytes per request")
	calls := fs.Int("calls", 1, "rpc: requests per connection")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	html := fs.String("html", "", "write an HTML report with charts to this file")
	backends := fs.String("backends", "", "start bench's own backends on these hosts (comma-separated), named cas1, cas2, ...")
	port := fs.Int("backend-port", 0, "port of bench's own backends (with --mode rpc, their DCE/RPC port)")
	remove := fs.String("remove", "", "kill this backend of bench's own (cas2, ...) during the run, to measure remapping")
	at := fs.Float64("at", 0.5, "when to remove it, as a fraction of the duration")
	return func(args []string, stdout, stderr io.Writer) int {
		if *target == "" {
			fmt.Fprintln(stderr, "error: --target is required (the balancer's host:port)")
			return 2
		}
		cfg := bench.Config{Target: *target, Mode: bench.Mode(*mode), Clients: *clients, Concurrency: *conc, Rate: *rate,
			Duration: *duration, MaxConns: *conns, Size: *size, Calls: *calls, At: *at, Removed: *remove}
		if cfg.Mode != bench.Short && cfg.Mode != bench.Long && cfg.Mode != bench.Bulk && cfg.Mode != bench.RPC {
			fmt.Fprintf(stderr, "error: --mode %q: want short, long, bulk or rpc\n", *mode)
			return 2
		}
		stopBackends, code := benchBackends(&cfg, *backends, *port, stderr)
		if code != 0 {
			return code
		}
		defer stopBackends()
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
		meta := bench.Meta{Version: versionString(), Command: commandLine("stickylb bench", fs)}
		if err := writeBenchReport(res, meta, *html, *asJSON, stdout); err != nil {
			fmt.Fprintln(stderr, "error: write report:", err)
			return 1
		}
		if res.Violations > 0 {
			return 1
		}
		return 0
	}
}

// benchBackends starts bench's own backends on the comma-separated hosts,
// when asked (serving DCE/RPC on port for the rpc mode, else greeting
// and echoing), and arms the removal of cfg.Removed. A non-zero code means
// an error was printed.
func benchBackends(cfg *bench.Config, hosts string, port int, stderr io.Writer) (stop func(), code int) {
	stop = func() {}
	if hosts == "" {
		if cfg.Removed != "" {
			fmt.Fprintln(stderr, "error: --remove needs bench's own --backends")
			return stop, 2
		}
		return stop, 0
	}
	if port == 0 {
		fmt.Fprintln(stderr, "error: --backends needs --backend-port")
		return stop, 2
	}
	echoPort, rpcPort := port, 0
	if cfg.Mode == bench.RPC {
		echoPort, rpcPort = 0, port
	}
	bs, err := loop.Start(splitList(hosts), echoPort, rpcPort)
	if err != nil {
		fmt.Fprintln(stderr, "error: start backends:", err)
		return stop, 1
	}
	stop = func() {
		for _, b := range bs {
			b.Close()
		}
	}
	if cfg.Removed == "" {
		return stop, 0
	}
	for _, b := range bs {
		if b.Name == cfg.Removed {
			cfg.Event = b.Kill
			return stop, 0
		}
	}
	fmt.Fprintf(stderr, "error: --remove %s: bench's backends are cas1..cas%d\n", cfg.Removed, len(bs))
	stop()
	return func() {}, 2
}

// writeBenchReport writes the HTML report, if asked, and the result as
// text or JSON.
func writeBenchReport(res *bench.Result, meta bench.Meta, html string, asJSON bool, stdout io.Writer) error {
	if html != "" {
		f, err := os.Create(html)
		if err != nil {
			return err
		}
		err = bench.WriteHTML(f, res, meta)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	if asJSON {
		printJSON(stdout, res)
	} else {
		bench.WriteText(stdout, res)
	}
	return nil
}

func benchBackendsFlags(fs *pflag.FlagSet) runFunc {
	hosts := fs.String("hosts", "127.0.0.11,127.0.0.12,127.0.0.13", "addresses, one backend each (named cas1, cas2, ...)")
	port := fs.Int("port", 9000, "port on every host")
	rpcPort := fs.Int("rpc-port", 0, "also serve DCE/RPC on this port of every host, for bench --mode rpc (0: not)")
	return func(args []string, stdout, stderr io.Writer) int {
		bs, err := loop.Start(splitList(*hosts), *port, *rpcPort)
		if err != nil {
			fmt.Fprintln(stderr, "error:", err)
			return 1
		}
		for _, b := range bs {
			fmt.Fprintf(stderr, "bench backend %s on %s\n", b.Name, net.JoinHostPort(b.Host, strconv.Itoa(*port)))
			if *rpcPort != 0 {
				fmt.Fprintf(stderr, "bench backend %s serving DCE/RPC on %s\n", b.Name, net.JoinHostPort(b.Host, strconv.Itoa(*rpcPort)))
			}
		}
		waitForStop()
		for _, b := range bs {
			b.Close()
		}
		return 0
	}
}

// commandLine is the command as the flags set on fs give it, for a report
// to say how it was made.
func commandLine(cmd string, fs *pflag.FlagSet) string {
	parts := []string{cmd}
	fs.Visit(func(f *pflag.Flag) { parts = append(parts, "--"+f.Name+"="+f.Value.String()) })
	return strings.Join(parts, " ")
}
