//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/pflag"

	"github.com/stickylb/stickylb/admin"
	"github.com/stickylb/stickylb/config"
	"github.com/stickylb/stickylb/event"
	"github.com/stickylb/stickylb/metrics"
	"github.com/stickylb/stickylb/server"
)

// runFlags is `stickylb run`: load, start, then follow signals until
// told to stop.
func runFlags(fs *pflag.FlagSet) runFunc {
	path := fs.StringP("config", "c", config.DefaultPath, "config file")
	format := fs.String("log-format", "", "text or json (default: the config's global.log_format)")
	level := fs.String("log-level", "", "debug, info, warn or error (default: the config's global.log_level)")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file, for go tool pprof")
	pidfile := fs.String("pidfile", "", "write the process id to this file once serving, and remove it at exit (for kill -TERM $(cat FILE))")
	return func(args []string, stdout, stderr io.Writer) int {
		// Signals are taken before anything else: without a handler a SIGHUP
		// ends a Go program, and loading a large pin snapshot takes seconds.
		// What arrives while starting waits in the channel.
		sigs := make(chan os.Signal, 8)
		signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR2)
		defer signal.Stop(sigs)
		cfg, code := loadConfig(*path, stderr)
		if cfg == nil {
			return code
		}
		log, err := runLogger(stderr, cfg.Global, *format, *level)
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
		if *pidfile != "" {
			if err := pidfileFolder(*pidfile); err != nil {
				log.Error("cannot start", "error", err)
				return 1
			}
		}
		h, err := inherited()
		if err != nil {
			log.Error("cannot start", "error", err)
			return 1
		}
		d, err := startDaemon(cfg, *path, log, h)
		if err != nil {
			log.Error("cannot start", "error", err)
			return 1
		}
		defer d.close()
		d.srv.Start()
		if *pidfile != "" {
			if err := writePidfile(*pidfile); err != nil {
				log.Error("cannot write the pid file", "file", *pidfile, "error", err)
				d.stop(noSignal("none: the pid file could not be written"), sigs)
				return 1
			}
			defer removePidfile(*pidfile)
		}
		log.Info("stickylb running", "version", version, "pid", os.Getpid(), "config", *path, "listeners", len(cfg.Listeners), "pools", len(cfg.Pools))
		// Under systemd (Type=notify) the service is ready now: listeners
		// bound, pins restored, checks started. Without NOTIFY_SOCKET this
		// does nothing.
		if h.ready != nil {
			tookOver(d, h.ready)
		} else {
			notify(log, daemon.SdNotifyReady)
		}
		return d.follow(sigs, args)
	}
}

// follow acts on signals until the process is to exit: HUP reloads,
// USR2 hands over to a new binary, TERM and INT stop.
func (d *service) follow(sigs chan os.Signal, args []string) int {
	exe, _ := os.Executable()
	for sig := range sigs {
		switch sig {
		case syscall.SIGHUP:
			d.reload()
		case syscall.SIGUSR2:
			if d.upgrade(exe, os.Args[1:]) {
				d.afterHandover(sigs)
				return 0
			}
		default:
			d.stop(sig, sigs)
			return 0
		}
	}
	return 0
}

// writePidfile writes this process's id to path; removePidfile removes
// it at exit unless a process that took over from this one wrote its own.
func writePidfile(path string) error {
	return os.WriteFile(path, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
}

func removePidfile(path string) {
	if b, err := os.ReadFile(path); err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(os.Getpid()) {
		os.Remove(path)
	}
}

// runLogger makes the logger, the command line's format and level
// overriding the config's.
func runLogger(w io.Writer, g config.Global, format, level string) (*slog.Logger, error) {
	if format != "" {
		if err := g.LogFormat.UnmarshalText([]byte(format)); err != nil {
			return nil, fmt.Errorf("--log-format: %w", err)
		}
	}
	if level != "" {
		if err := g.LogLevel.UnmarshalText([]byte(level)); err != nil {
			return nil, fmt.Errorf("--log-level: %w", err)
		}
	}
	opts := &slog.HandlerOptions{Level: g.LogLevel.Slog()}
	if g.LogFormat == config.JSONLog {
		// Durations as the text format and the config write them
		// ("15s"), not as nanoseconds.
		opts.ReplaceAttr = func(_ []string, a slog.Attr) slog.Attr {
			if a.Value.Kind() == slog.KindDuration {
				a.Value = slog.StringValue(a.Value.Duration().String())
			}
			return a
		}
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return slog.New(slog.NewTextHandler(w, opts)), nil
}

// service is a running `stickylb run`: the balancer, its metrics and its
// admin listener and socket.
type service struct {
	path    string
	cfg     *config.Config // as started; the admin settings apply from it
	log     *slog.Logger
	srv     *server.Server
	api     *admin.API
	metrics *metrics.Metrics
	// The admin API's sockets (nil when not served) and where it is
	// served; handedOver once a new process took them (adminserve.go).
	adminTCP   *net.TCPListener
	adminSock  *admin.Socket
	adminEPs   []*admin.Endpoint
	handedOver bool
}

// startDaemon starts the balancer and its admin API, on the sockets of
// h where a process hands over to this one.
func startDaemon(cfg *config.Config, path string, log *slog.Logger, h takeover) (*service, error) {
	// The program owns the registry; library packages only register on
	// what they are given.
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := metrics.New(reg, metrics.Build{Version: version, Commit: commit})
	d := &service{path: path, cfg: cfg, log: log, metrics: m}
	for _, w := range cfg.SecretWarnings() {
		log.Warn("config warning", "warning", w.Error())
	}
	// One stream of events: metrics hear it from the first, the admin
	// API from when it is built (given the notable ones before).
	events := &event.Stream{}
	events.Subscribe(m.Event)
	srv, err := server.New(cfg, server.Options{Log: log, Observer: m.Observer(), Events: events, Inherited: h.socks})
	if err != nil {
		return nil, err
	}
	m.Attach(srv)
	d.srv = srv
	d.api = admin.New(admin.Options{Server: srv, Gatherer: reg, ConfigPath: path, Log: log, Token: cfg.Admin.Token,
		TokenForReads: cfg.Admin.TokenForReads, Hosts: cfg.Admin.Hosts, Version: versionString()})
	err = d.listenAdmin(h.admin)
	h.admin.close()
	if err != nil {
		d.api.Close()
		srv.Shutdown(context.Background())
		return nil, err
	}
	return d, nil
}

func (d *service) reload() {
	notify(d.log, daemon.SdNotifyReloading)
	defer notify(d.log, daemon.SdNotifyReady)
	if err := d.srv.ReloadFile(d.path); err != nil {
		d.log.Error("reload failed", "config", d.path, "error", err)
		return
	}
	d.log.Info("reloaded", "config", d.path)
	d.srv.Events().Publish(event.Event{Kind: event.Config, What: "config reloaded"})
	if c := d.srv.Config(); !reflect.DeepEqual(c.Admin, d.cfg.Admin) {
		d.log.Warn("admin settings changed; they apply at the next restart", "admin.listen", c.Admin.Listen)
	}
}

// stop drains: no new connections, then up to drain_timeout for the open
// ones. Only a second TERM or INT cuts the wait short; a HUP during the
// drain is logged and ignored, since reloading a stopping balancer helps
// no one and cutting its connections would hurt.
func (d *service) stop(sig os.Signal, sigs <-chan os.Signal) {
	g := d.srv.Config().Global
	drain, grace := g.DrainTimeout.Duration, g.StopGrace.Duration
	// systemd kills a stop that outlasts TimeoutStopSec; the stop asks
	// for what it needs (grace, drain, and time to save the pins), so
	// the unit's timeout follows drain_timeout.
	notify(d.log, fmt.Sprintf("%s\nEXTEND_TIMEOUT_USEC=%d", daemon.SdNotifyStopping, (grace+drain+stopMargin).Microseconds()))
	if grace > 0 {
		d.grace(sig, grace, sigs)
	}
	d.drain(sig, sigs)
}

// drain stops accepting and waits up to drain_timeout for the open
// connections, or until a second TERM or INT.
func (d *service) drain(sig os.Signal, sigs <-chan os.Signal) {
	drain := d.srv.Config().Global.DrainTimeout.Duration
	d.log.Info("stopping: no new connections; waiting for open ones", "signal", sig.String(),
		"open", d.srv.Active(), "drain_timeout", drain)
	ctx, cancel := context.WithTimeoutCause(context.Background(), drain, errDrainTimeout)
	defer cancel()
	go d.cutOnSecondSignal(ctx, cancel, sigs)
	start := time.Now()
	cut := d.srv.Shutdown(ctx)
	waited := time.Since(start).Round(time.Millisecond)
	switch {
	case cut == 0:
		d.log.Info("stopped cleanly", "waited", waited)
	case context.Cause(ctx) == errDrainTimeout:
		d.log.Warn("drain timeout reached: closed open connections", "closed", cut, "waited", waited)
	default:
		d.log.Warn("drain cut short by a second signal: closed open connections", "closed", cut, "waited", waited)
	}
}

var errDrainTimeout = errors.New("drain timeout")

// stopMargin is what a stop asks systemd for beyond its grace and drain:
// closing connections and writing the snapshot.
const stopMargin = 30 * time.Second

// grace keeps accepting for the stop's grace period while readiness
// already answers 503; a second TERM or INT ends it early.
func (d *service) grace(sig os.Signal, grace time.Duration, sigs <-chan os.Signal) {
	d.srv.Leave()
	d.log.Info("stopping: readiness says no; still accepting for stop_grace, then the drain", "signal", sig.String(), "stop_grace", grace)
	t := time.NewTimer(grace)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			return
		case s := <-sigs:
			if s == syscall.SIGHUP {
				d.log.Warn("reload ignored: stickylb is stopping")
				continue
			}
			d.log.Info("stop_grace cut short by a second signal", "signal", s.String())
			return
		}
	}
}

func (d *service) cutOnSecondSignal(ctx context.Context, cancel context.CancelFunc, sigs <-chan os.Signal) {
	for {
		select {
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				d.log.Warn("reload ignored: stickylb is draining; send TERM or INT again to close open connections now")
				continue
			}
			d.log.Warn("second signal: closing open connections now", "signal", sig.String())
			cancel()
			return
		case <-ctx.Done():
			return
		}
	}
}

func (d *service) close() {
	d.removeAdminSocket()
	d.closeAdmin()
	d.api.Close()
}

// notify tells systemd a state change (sd_notify), when it is listening.
func notify(log *slog.Logger, state string) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		log.Warn("cannot notify systemd", "state", state, "error", err)
	}
}
