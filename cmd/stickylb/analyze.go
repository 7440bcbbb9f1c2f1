//go:build linux

package main

import (
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"github.com/stickylb/stickylb/kit/capture"
)

func analyzeFlags(fs *pflag.FlagSet) runFunc {
	ports := fs.String("ports", "", "only connections to these server ports count, comma-separated (such as 135,60001,60002)")
	backends := fs.String("backends", "", "only connections to these addresses count, comma-separated")
	balancers := fs.String("balancer", "", "connections from these addresses are a balancer's own (health checks) and are left out of the verdicts, comma-separated")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	steps := fs.String("steps", "", "instead, time each step inside a balancer from a loopback capture of both its legs: LISTEN_PORT,BACKEND_PORT (one client connection at a time)")
	return func(args []string, stdout, stderr io.Writer) int {
		opts, err := analyzeOptions(*ports, *backends, *balancers)
		if err != nil {
			fmt.Fprintln(stderr, "error:", err)
			return 2
		}
		f, err := os.Open(args[0])
		if err != nil {
			fmt.Fprintln(stderr, "error:", err)
			return 1
		}
		defer f.Close()
		if *steps != "" {
			return analyzeSteps(f, args[0], *steps, *asJSON, stdout, stderr)
		}
		rep, err := capture.Analyze(f, opts)
		if err != nil {
			fmt.Fprintf(stderr, "error: %s: %v\n", args[0], err)
			if rep == nil {
				return 1
			}
		}
		if *asJSON {
			printJSON(stdout, rep)
		} else {
			writeAnalysis(stdout, rep)
		}
		if rep.Split > 0 {
			return 1
		}
		return 0
	}
}

// analyzeOptions reads analyze's --ports and --backends filters.
func analyzeOptions(ports, backends, balancers string) (capture.Options, error) {
	var opts capture.Options
	for _, p := range splitList(ports) {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil {
			return opts, fmt.Errorf("--ports: %q is not a port", p)
		}
		opts.Ports = append(opts.Ports, uint16(n))
	}
	for _, b := range splitList(backends) {
		a, err := netip.ParseAddr(b)
		if err != nil {
			return opts, fmt.Errorf("--backends: %q is not an IP address", b)
		}
		opts.Backends = append(opts.Backends, a)
	}
	for _, b := range splitList(balancers) {
		a, err := netip.ParseAddr(b)
		if err != nil {
			return opts, fmt.Errorf("--balancer: %q is not an IP address", b)
		}
		opts.Balancers = append(opts.Balancers, a)
	}
	return opts, nil
}

// writeAnalysis prints the backends each client reached, over time.
func writeAnalysis(w io.Writer, rep *capture.Report) {
	fmt.Fprintf(w, "%d packets (%d not IP/TCP), %d connections, %d clients, %d split across backends\n",
		rep.Packets, rep.Skipped, rep.Flows, len(rep.Clients), rep.Split)
	if rep.LeftOut > 0 {
		fmt.Fprintf(w, "left out of the verdicts: %d connections of a balancer's own (--balancer) or from sources that never sent a byte (health checks)", rep.LeftOut)
		if len(rep.Probers) > 0 {
			fmt.Fprintf(w, ": %s", strings.Join(rep.Probers, ", "))
		}
		fmt.Fprintln(w)
	}
	for _, c := range rep.Clients {
		mark := "ok   "
		if c.Split {
			mark = "SPLIT"
		}
		fmt.Fprintf(w, "%s %-40s", mark, c.Client)
		for i, v := range c.Visits {
			if i > 0 {
				fmt.Fprint(w, " -> ")
			}
			fmt.Fprintf(w, "%s %v x%d (%s-%s)", v.Backend, v.Ports, v.Flows, v.First.Format("15:04:05"), v.Last.Format("15:04:05"))
		}
		fmt.Fprintln(w)
	}
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
