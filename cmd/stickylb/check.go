//go:build linux

package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"github.com/stickylb/stickylb/admin"
	"github.com/stickylb/stickylb/config"
	"github.com/stickylb/stickylb/persist"
	"github.com/stickylb/stickylb/proxy"
	"golang.org/x/sys/unix"
)

func checkFlags(fs *pflag.FlagSet) runFunc {
	path := fs.StringP("config", "c", config.DefaultPath, "config file")
	as := fs.String("as-user", "", "judge the files, folders and capabilities as this user, as the service runs (the unit's User=, stickylb); root re-runs check as it")
	caps := fs.String("caps", "CAP_NET_BIND_SERVICE", "with --as-user, the capabilities the service has (the unit's AmbientCapabilities=, with a drop-in's)")
	return func(args []string, stdout, stderr io.Writer) int {
		if code, done := checkAsUser(*as, *caps, *path, stdout, stderr); done {
			return code
		}
		cfg, code := loadConfig(*path, stderr)
		if cfg == nil {
			return code
		}
		fatal, warnings := hostProblems(cfg, net.DefaultResolver)
		if len(fatal) == 0 {
			fmt.Fprintf(stdout, "%s: OK\n", *path)
		}
		for _, w := range cfg.Warnings() {
			fmt.Fprintln(stdout, "warning:", w)
		}
		for _, w := range warnings {
			fmt.Fprintln(stdout, "warning:", w)
		}
		if len(fatal) > 0 {
			for _, e := range fatal {
				fmt.Fprintln(stderr, "error:", e)
			}
			fmt.Fprintf(stderr, "%s: valid, but stickylb would not start on this host as %s\n", *path, whoAmI())
			return 1
		}
		summary(stdout, cfg)
		return 0
	}
}

// loadConfig loads path, or prints every mistake and returns the exit
// code (1).
func loadConfig(path string, stderr io.Writer) (*config.Config, int) {
	cfg, err := config.Load(path)
	if err != nil {
		printConfigError(stderr, err)
		return nil, 1
	}
	return cfg, 0
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
	globalSummary(w, cfg)
	listeners := slices.Sorted(maps.Keys(cfg.Listeners))
	fmt.Fprintf(w, "listeners: %d\n", len(listeners))
	for _, n := range listeners {
		l := cfg.Listeners[n]
		port := "same port"
		switch {
		case l.BackendPort != 0:
			port = fmt.Sprintf("port %d", l.BackendPort)
		case l.Multi():
			port = fmt.Sprintf("the port dialled, of %d; %s", l.Ports().Count(), rangeHow(l))
		}
		if l.InspectDCERPC {
			port += "; " + inspectHow(l)
		}
		fmt.Fprintf(w, "  %-12s %-22s -> pool %s (%s)\n", n, l.Listen, l.Pool, port)
	}
	fmt.Fprintf(w, "pools: %d\n", len(cfg.Pools))
	for _, n := range slices.Sorted(maps.Keys(cfg.Pools)) {
		var users []string
		for _, ln := range listeners {
			if cfg.Listeners[ln].Pool == n {
				users = append(users, ln)
			}
		}
		poolSummary(w, cfg.Pools[n], users)
	}
}

// globalSummary prints the admin API, the pin files, the drain and the
// cluster.
func globalSummary(w io.Writer, cfg *config.Config) {
	a := cfg.Admin
	scheme := "http"
	if a.Certificate != nil {
		scheme = "https"
	}
	switch {
	case a.Listen == "off":
		fmt.Fprintln(w, "admin: off")
	case a.TokenForReads:
		fmt.Fprintf(w, "admin: %s://%s (every call but /healthz and /readyz needs the token in %s)\n", scheme, a.Listen, a.TokenFile)
	case a.TokenFile != "":
		fmt.Fprintf(w, "admin: %s://%s (changes need the token in %s)\n", scheme, a.Listen, a.TokenFile)
	default:
		fmt.Fprintf(w, "admin: %s://%s (no token: loopback only)\n", scheme, a.Listen)
	}
	if a.Socket != "" {
		fmt.Fprintf(w, "admin socket: %s (mode %04o: every call, no token, for the user and group stickylb runs as)\n", a.Socket, admin.SocketMode)
	}
	g := cfg.Global
	if g.SnapshotFile == "" {
		fmt.Fprintln(w, "pins on disk: none (snapshot_file unset): a restart places clients by the hash alone, and forgets operators' drains")
	} else {
		f := persist.FilesOf(g.SnapshotFile)
		fmt.Fprintf(w, "pins on disk: %s every %s, journal %s every %s; operators' decisions %s at once\n",
			f.Snapshot, g.SnapshotInterval, f.Journal, g.JournalInterval, f.Operator)
	}
	fmt.Fprintf(w, "drain on stop: up to %s\n", g.DrainTimeout)
	if c := cfg.Cluster; c.Enabled() {
		fmt.Fprintf(w, "cluster: %s on %s, peers %s, sync_timeout %s\n", c.Name(), c.Bind, strings.Join(c.Peers, ", "), c.SyncTimeout)
	}
}

// rangeHow says how a listener of several ports will take them.
func rangeHow(l *config.Listener) string {
	switch ps := l.Ports(); {
	case !l.RangeMode.Steers(ps):
		return fmt.Sprintf("a socket per port, %d sockets", ps.Count())
	case l.RangeMode.FallsBack(ps):
		return "one socket steered by sk_lookup, or a socket per port where BPF is not allowed"
	}
	return "one socket steered by sk_lookup (needs CAP_BPF and CAP_NET_ADMIN)"
}

func poolSummary(w io.Writer, p *config.Pool, listeners []string) {
	a := p.Affinity
	key := a.Key.String()
	if a.Key == config.SrcNet {
		key = fmt.Sprintf("src-net /%d /%d", a.IPv4Prefix, a.IPv6Prefix)
	}
	if len(listeners) == 0 {
		listeners = []string{"none: unused"}
	}
	fmt.Fprintf(w, "  %s: balance %s, affinity %s, ttl %s, max %d pins, on_down %s, listeners %s\n",
		p.Name, p.Balance, key, a.TTL, a.MaxEntries, p.OnDown, strings.Join(listeners, ", "))
	retries := fmt.Sprintf("%d retries", p.ConnectRetries)
	if p.ConnectRetries == 1 {
		retries = "1 retry"
	}
	fmt.Fprintf(w, "    timeouts: connect %s (%s), idle %s, half-close %s; keepalive %s\n", p.ConnectTimeout,
		retries, orOff(p.IdleTimeout.Duration), orOff(p.HalfCloseTimeout.Duration), orOff(p.Keepalive.Duration))
	fmt.Fprintf(w, "    limits per client (IPv4 /%d, IPv6 /%d): open connections %s, new connections per second %s; new pins per second %s\n",
		p.Limits.IPv4Prefix, p.Limits.IPv6Prefix, orNone(p.Limits.MaxConnsPerClient), orNone(p.Limits.ConnRatePerClient), orNone(p.Affinity.NewPinsPerSecond))
	checks := p.ActiveChecks()
	if len(checks) == 0 {
		fmt.Fprintf(w, "    health checks off\n")
	}
	for _, c := range checks {
		port := "every backend port"
		switch {
		case c.Type == config.RPCCheck:
			port = fmt.Sprintf("%s through the endpoint mapper on port %d", c.RPCInterface(), cmp.Or(c.Port, config.EndpointMapperPort))
		case c.Port != 0:
			port = fmt.Sprintf("port %d", c.Port)
		}
		fmt.Fprintf(w, "    check %s: %s on %s every %s, timeout %s, rise %d, fall %d\n",
			c.Name, c.Type, port, c.Interval, c.Timeout, c.Rise, c.Fall)
	}
	for _, bn := range slices.Sorted(maps.Keys(p.Backends)) {
		b := p.Backends[bn]
		fmt.Fprintf(w, "    backend %-10s %-20s weight %d\n", bn, b.Address, b.Weight)
	}
}

// hostProblems are what this machine, as the user running check, would
// refuse or break in cfg: fatal, what run would stop at (a range
// listener without the capabilities sk_lookup needs, transparent mode
// without CAP_NET_ADMIN); warnings, what would work worse than meant (a
// backend host name that does not resolve now, transparent mode without
// the return route, pins that could not be saved).
func hostProblems(cfg *config.Config, r *net.Resolver) (fatal, warnings []string) {
	if err := writable(cfg.Global.SnapshotFile); err != nil {
		warnings = append(warnings, cfg.At("global.snapshot_file", "%v: pins and their journal would not be saved (checked on this host, as this user); "+
			"point snapshot_file at a directory the service may write, such as /var/lib/stickylb/pins.json", err).Error())
	} else if err := diskRoom(cfg); err != nil {
		warnings = append(warnings, cfg.At("global.snapshot_file", "%v", err).Error())
	}
	for _, name := range slices.Sorted(maps.Keys(cfg.Listeners)) {
		if err := proxy.CheckRange(cfg.Listeners[name]); err != nil {
			msg := cfg.At("listener."+name+".listen", "%v (checked on this host, as this user)", err).Error()
			if errors.Is(err, proxy.ErrStartFails) {
				fatal = append(fatal, msg)
			} else {
				warnings = append(warnings, msg)
			}
		}
	}
	warnings = append(warnings, inspectProblems(cfg)...)
	for _, name := range slices.Sorted(maps.Keys(cfg.Pools)) {
		p := cfg.Pools[name]
		for _, bn := range slices.Sorted(maps.Keys(p.Backends)) {
			if err := resolves(r, p.Backends[bn].Address); err != nil {
				warnings = append(warnings, cfg.At("pool."+name+".backend."+bn+".address",
					"%v: stickylb resolves it at each connect, which fails until DNS answers; fix DNS or give the IP address", err).Error())
			}
		}
		if !p.Transparent {
			continue
		}
		if err := proxy.CheckTransparent(); err != nil {
			fatal = append(fatal, cfg.At("pool."+name+".transparent", "%v: start-up will fail (checked on this host, as this user)", err).Error())
		}
		if err := proxy.CheckTransparentRoute(); err != nil {
			warnings = append(warnings, cfg.At("pool."+name+".transparent", "%v (checked on this host, as this user)", err).Error())
		}
	}
	return fatal, warnings
}

// writable tests that the snapshot file's directory takes a new file, as
// the snapshot and the journal beside it need; nil without a file.
func writable(snapshot string) error {
	if snapshot == "" {
		return nil
	}
	dir := filepath.Dir(snapshot)
	f, err := os.CreateTemp(dir, ".stickylb-check-*")
	if err != nil {
		return fmt.Errorf("%s cannot be written in %s", filepath.Base(snapshot), dir)
	}
	f.Close()
	return os.Remove(f.Name())
}

// diskRoom checks that the snapshot's file system has room for full
// tables: the snapshot, the next one while it is written and the reserve
// a quarter larger (docs/operations.md, "A full disk"), counting the room
// those files take now.
func diskRoom(cfg *config.Config) error {
	path := cfg.Global.SnapshotFile
	if path == "" {
		return nil
	}
	pins := 0
	for _, p := range cfg.Pools {
		if p.Affinity.Key != config.NoPins {
			pins += p.Affinity.MaxEntries
		}
	}
	need := persist.RoomFor(pins)
	var st unix.Statfs_t
	if unix.Statfs(filepath.Dir(path), &st) != nil {
		return nil
	}
	have := st.Bavail*uint64(st.Bsize) + persist.FilesOf(path).Used()
	if have >= need {
		return nil
	}
	return fmt.Errorf("%s has %d MB free for pins, and full tables (%d pins) need about %d MB there (the snapshot, the next one while it is written, "+
		"and SNAPSHOT.reserve): with the disk full, snapshots keep only the newest pins; free space there or lower affinity.max_entries",
		filepath.Dir(path), have>>20, pins, (need+1<<20-1)>>20)
}

// resolves checks that host, an address or a name, resolves now.
func resolves(r *net.Resolver, host string) error {
	if _, err := netip.ParseAddr(host); err == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := r.LookupHost(ctx, host); err != nil {
		return fmt.Errorf("host name %q does not resolve on this host: %w", host, err)
	}
	return nil
}

// orOff says a duration, or "off" for zero.
func orOff(d time.Duration) string {
	if d == 0 {
		return "off"
	}
	return d.String()
}

// orNone says a limit, or "none" for zero.
func orNone[N int | float64](n N) string {
	if n == 0 {
		return "none"
	}
	return fmt.Sprint(n)
}
