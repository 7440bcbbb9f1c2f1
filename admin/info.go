//go:build linux

package admin

import (
	"net/http"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Info is GET /api/info: what HAProxy's `show info` tells, for ctl info.
type Info struct {
	Version        string    `json:"version"`
	PID            int       `json:"pid"`
	Started        time.Time `json:"started"`
	UptimeSeconds  float64   `json:"uptime_seconds"`
	Config         string    `json:"config_file"`
	Listeners      int       `json:"listeners"`
	Pools          int       `json:"pools"`
	Connections    int       `json:"connections"`
	FileLimit      uint64    `json:"file_limit"` // RLIMIT_NOFILE: each proxied connection takes two
	Reloads        uint64    `json:"reloads"`
	ReloadFailures uint64    `json:"reload_failures"`
	Draining       bool      `json:"draining"`
}

func (a *API) info(w http.ResponseWriter, r *http.Request) {
	s := a.opts.Server
	var lim unix.Rlimit
	unix.Getrlimit(unix.RLIMIT_NOFILE, &lim)
	reloads := s.Reloads.Load()
	if reloads > 0 {
		reloads-- // the first load is not a reload
	}
	writeJSON(w, 200, Info{Version: a.opts.Version, PID: os.Getpid(), Started: a.started.UTC(),
		UptimeSeconds: time.Since(a.started).Seconds(), Config: a.opts.ConfigPath, Listeners: len(s.Addrs()),
		Pools: len(s.Pools()), Connections: s.Active(), FileLimit: lim.Cur, Reloads: reloads,
		ReloadFailures: s.ReloadFailures.Load(), Draining: s.Stopping()})
}

// ListenerInfo is one listener in GET /api/listeners.
type ListenerInfo struct {
	Name        string `json:"name"`
	Address     string `json:"address"`  // with the first port
	Ports       string `json:"ports"`    // every port: "135" or "135,6005-59530"
	TakenBy     string `json:"taken_by"` // socket, per-port or sk-lookup
	Pool        string `json:"pool"`
	Connections int    `json:"connections"`
	Accepted    uint64 `json:"accepted_total"`
}

func (a *API) listeners(w http.ResponseWriter, r *http.Request) {
	out := []ListenerInfo{}
	for _, l := range a.opts.Server.Listeners() {
		out = append(out, ListenerInfo{Name: l.Name, Address: l.Addr.String(), Ports: l.Ports, TakenBy: l.TakenBy, Pool: l.Pool, Connections: l.Active, Accepted: l.Accepted})
	}
	writeJSON(w, 200, out)
}
