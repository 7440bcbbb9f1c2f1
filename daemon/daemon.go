//go:build linux

package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"reflect"
	"sync"

	sd "github.com/coreos/go-systemd/v22/daemon"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/stickylb/stickylb/admin"
	"github.com/stickylb/stickylb/config"
	"github.com/stickylb/stickylb/event"
	"github.com/stickylb/stickylb/metrics"
	"github.com/stickylb/stickylb/proxy"
	"github.com/stickylb/stickylb/server"
)

// Options is what a daemon is started with.
type Options struct {
	ConfigPath string         // the file a reload reads again
	Config     *config.Config // loaded from ConfigPath
	Log        *slog.Logger
	Build      metrics.Build // version and commit, for stickylb_build_info
	Version    string        // the version the admin API shows
	// Executable and Args are the binary an upgrade starts and its
	// arguments; an empty Executable is this process's own.
	Executable string
	Args       []string
}

// Daemon is a running stickylb: the balancer, its metrics and its admin
// listener and socket.
type Daemon struct {
	opts    Options
	cfg     *config.Config // as started; the admin settings apply from it
	log     *slog.Logger
	srv     *server.Server
	api     *admin.API
	metrics *metrics.Metrics
	ready   *os.File // the pipe to tell the process this one replaces it serves
	conns   *os.File // the socket its open connections come over, or nil
	moving  sync.WaitGroup
	// The admin API's sockets (nil when not served) and where it is
	// served; handedOver once a new process took them (admin.go).
	adminTCP   *net.TCPListener
	adminSock  *admin.Socket
	adminEPs   []*admin.Endpoint
	handedOver bool
}

// Start starts the balancer and its admin API, on the sockets of h
// where a process hands over to this one. It does not yet accept: Serve
// does.
func Start(opts Options, h Takeover) (*Daemon, error) {
	cfg, log := opts.Config, opts.Log
	// The program owns the registry; library packages only register on
	// what they are given.
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := metrics.New(reg, opts.Build)
	d := &Daemon{opts: opts, cfg: cfg, log: log, metrics: m, ready: h.ready, conns: h.conns}
	for _, w := range cfg.SecretWarnings() {
		log.Warn("config warning", "warning", w.Error())
	}
	// One stream of events: metrics hear it from the first, the admin
	// API from when it is built (given the notable ones before).
	events := &event.Stream{}
	events.Subscribe(m.Event)
	srv, err := server.New(cfg, server.Options{Log: log, Observer: m.Observer(), Events: events, Inherited: h.socks})
	if err != nil {
		h.closeReady()
		return nil, err
	}
	m.Attach(srv)
	d.srv = srv
	d.api = admin.New(admin.Options{Server: srv, Gatherer: reg, ConfigPath: opts.ConfigPath, Log: log, Token: cfg.Admin.Token,
		TokenForReads: cfg.Admin.TokenForReads, Hosts: cfg.Admin.Hosts, Version: opts.Version})
	err = d.listenAdmin(h.admin)
	h.admin.close()
	if err != nil {
		d.api.Close()
		srv.Shutdown(context.Background())
		h.closeReady()
		return nil, err
	}
	return d, nil
}

// Server is the balancer the daemon runs.
func (d *Daemon) Server() *server.Server { return d.srv }

// Serve starts accepting and the health checks.
func (d *Daemon) Serve() { d.srv.Start() }

// Ready says the daemon serves: to the process it took over from, which
// then drains, and to systemd (Type=notify): listeners bound, pins
// restored, checks started. Without NOTIFY_SOCKET, systemd hears nothing.
func (d *Daemon) Ready() {
	if d.ready == nil {
		notify(d.log, sd.SdNotifyReady)
		return
	}
	line := "ready\n"
	if d.conns != nil {
		line = fmt.Sprintf("ready conns/%d\n", proxy.MoveVersion)
	}
	d.ready.Write([]byte(line))
	d.ready.Close()
	d.ready = nil
	if d.conns != nil {
		d.moving.Go(d.takeConns)
	}
	notify(d.log, fmt.Sprintf("MAINPID=%d\n%s", os.Getpid(), sd.SdNotifyReady))
	d.log.Info("upgrade: took over the listening sockets, pins and operator decisions")
}

func (d *Daemon) reload() {
	notify(d.log, sd.SdNotifyReloading)
	defer notify(d.log, sd.SdNotifyReady)
	if err := d.srv.ReloadFile(d.opts.ConfigPath); err != nil {
		d.log.Error("reload failed", "config", d.opts.ConfigPath, "error", err)
		return
	}
	d.log.Info("reloaded", "config", d.opts.ConfigPath)
	d.srv.Events().Publish(event.Event{Kind: event.Config, What: "config reloaded"})
	if c := d.srv.Config(); !reflect.DeepEqual(c.Admin, d.cfg.Admin) {
		d.log.Warn("admin settings changed; they apply at the next restart", "admin.listen", c.Admin.Listen)
	}
}

// Close stops the admin API and removes its socket's path, unless a new
// process took it. The server was stopped by Stop or handed over.
func (d *Daemon) Close() {
	d.removeAdminSocket()
	d.closeAdmin()
	d.api.Close()
	if d.ready != nil {
		d.ready.Close() // the old process hears that this one will not serve
	}
	d.moving.Wait()
	if d.conns != nil {
		d.conns.Close()
	}
}

// notify tells systemd a state change (sd_notify), when it is listening.
func notify(log *slog.Logger, state string) {
	if _, err := sd.SdNotify(false, state); err != nil {
		log.Warn("cannot notify systemd", "state", state, "error", err)
	}
}
