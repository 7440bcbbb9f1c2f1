//go:build linux

package daemon

import (
	"fmt"
	"net"
	"time"

	"github.com/stickylb/stickylb/proxy"
)

// At an upgrade the open connections move too (package proxy, move.go):
// once the new process serves, this one pauses each connection at a
// safe point and hands over its two sockets, and the new process copies
// on. The new process says in its "ready" line which version of the
// hand-over it speaks; an old process that hears none, or another,
// keeps its connections and drains them, as before connections moved.

// pauseWait bounds how long one connection may hold up the hand-over:
// a direction writing to a peer that does not read cannot stop, and that
// connection then stays here.
const pauseWait = 2 * time.Second

// moveConns hands this process's open connections to the new process
// over conns, when it speaks version. It fails only when none moved
// because the new process did not take them (it died, or hung): the
// upgrade then fails as a whole.
func (d *Daemon) moveConns(conns *net.UnixConn, version int) error {
	defer conns.Close()
	if version != proxy.MoveVersion {
		d.log.Info("upgrade: the new process does not take open connections; this one finishes them", "its_version", version, "ours", proxy.MoveVersion)
		return nil
	}
	start := time.Now()
	parcels := d.srv.PauseConns(pauseWait)
	moved, err := proxy.HandOver(conns, parcels)
	took := time.Since(start).Round(time.Microsecond)
	switch {
	case err != nil && moved == 0:
		return fmt.Errorf("the new process did not take the open connections (%d kept here): %w", len(parcels), err)
	case err != nil:
		d.log.Error("upgrade: handing over open connections failed part way; this process keeps the rest", "moved", moved, "paused", len(parcels), "took", took, "error", err)
	default:
		d.log.Info("upgrade: open connections handed to the new process", "moved", moved, "paused", len(parcels), "took", took)
	}
	return nil
}

// takeConns takes the connections the old process hands over.
func (d *Daemon) takeConns() {
	uc, err := proxy.FileUnixConn(d.conns)
	d.conns.Close()
	d.conns = nil
	if err != nil {
		d.log.Error("upgrade: cannot take the old process's connections", "error", err)
		return
	}
	defer uc.Close()
	n, err := d.srv.ReceiveConns(uc)
	if err != nil {
		d.log.Error("upgrade: taking the old process's connections failed part way; it keeps the rest", "taken", n, "error", err)
		return
	}
	d.log.Info("upgrade: took the old process's open connections", "taken", n)
}
