//go:build linux

package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"
)

// Signals are the ones a daemon follows; the caller subscribes them
// (signal.Notify) before loading the config, since without a handler a
// SIGHUP ends a Go program and loading a large pin snapshot takes seconds.
var Signals = []os.Signal{syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR2}

// Follow acts on signals until the daemon is to exit: HUP reloads, USR2
// hands over to a new binary, TERM and INT stop. It returns once the
// balancer has stopped, or handed over and finished its connections.
func (d *Daemon) Follow(sigs <-chan os.Signal) {
	for sig := range sigs {
		switch sig {
		case syscall.SIGHUP:
			d.reload()
		case syscall.SIGUSR2:
			if d.upgrade() {
				d.afterHandover(sigs)
				return
			}
		default:
			d.Stop(sig, sigs)
			return
		}
	}
}

// Reason is why a daemon stops when no signal asked it to, so the
// stop's log line says what came instead.
type Reason string

func (r Reason) String() string { return string(r) }

// Signal makes a Reason an os.Signal.
func (Reason) Signal() {}

// Stop drains: no new connections, then up to drain_timeout for the
// open ones. Only a second TERM or INT on sigs cuts the wait short; a
// HUP during the drain is logged and ignored, since reloading a stopping
// balancer helps no one and cutting its connections would hurt.
func (d *Daemon) Stop(sig os.Signal, sigs <-chan os.Signal) {
	g := d.srv.Config().Global
	drain, grace := g.DrainTimeout.Duration, g.StopGrace.Duration
	// systemd kills a stop that outlasts TimeoutStopSec; the stop asks
	// for what it needs (grace, drain, and time to save the pins), so
	// the unit's timeout follows drain_timeout.
	notify(d.log, fmt.Sprintf("%s\nEXTEND_TIMEOUT_USEC=%d", sd.SdNotifyStopping, (grace+drain+stopMargin).Microseconds()))
	if grace > 0 {
		d.grace(sig, grace, sigs)
	}
	d.drain(sig, sigs)
}

// drain stops accepting and waits up to drain_timeout for the open
// connections, or until a second TERM or INT.
func (d *Daemon) drain(sig os.Signal, sigs <-chan os.Signal) {
	drain := d.srv.Config().Global.DrainTimeout.Duration
	d.log.Info("stopping: no new connections; waiting for open ones", "signal", sig.String(),
		"open", d.srv.Active(), "drain_timeout", drain)
	ctx, cancel := context.WithTimeoutCause(context.Background(), drain, errDrainTimeout)
	defer cancel()
	done := make(chan struct{})
	defer func() { <-done }()
	go d.cutOnSecondSignal(ctx, cancel, sigs, done)
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
	cancel()
}

var errDrainTimeout = errors.New("drain timeout")

// stopMargin is what a stop asks systemd for beyond its grace and drain:
// closing connections and writing the snapshot.
const stopMargin = 30 * time.Second

// grace keeps accepting for the stop's grace period while readiness
// already answers 503; a second TERM or INT ends it early.
func (d *Daemon) grace(sig os.Signal, grace time.Duration, sigs <-chan os.Signal) {
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

func (d *Daemon) cutOnSecondSignal(ctx context.Context, cancel context.CancelFunc, sigs <-chan os.Signal, done chan<- struct{}) {
	defer close(done)
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
