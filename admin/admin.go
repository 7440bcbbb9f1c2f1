//go:build linux

// Package admin serves stickylb's admin HTTP API: backends and their
// states, pins, reload, health and readiness, and Prometheus metrics. It
// binds to loopback unless a bearer token is configured, and every
// mutating call must present the token when one is set, but over the
// admin socket (socket.go), where the socket file's permissions decide
// who may call. Serve bounds each listener's connections without letting
// held ones keep health checks out. Malformed requests get a 4xx with a
// JSON error; handlers never panic on input.
//
// It builds on Linux only, as server does.
package admin

import (
	"crypto/subtle"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stickylb/stickylb/affinity"
	"github.com/stickylb/stickylb/event"
	"github.com/stickylb/stickylb/pool"
	"github.com/stickylb/stickylb/server"
)

// Options configure the API.
type Options struct {
	Server   *server.Server
	Gatherer prometheus.Gatherer
	// Token, if set, must be presented as "Authorization: Bearer TOKEN"
	// on every mutating call, but for calls over a Unix socket (Serve).
	Token string
	// TokenForReads asks for the token on reads too (pins, connections
	// with client addresses, metrics), but for /healthz and /readyz,
	// which health checkers call, and the dashboard's page and assets,
	// whose own calls then send the token typed into it.
	TokenForReads bool
	// ConfigPath is what POST /api/reload reads.
	ConfigPath string
	// Hosts are the host names, besides IP addresses and localhost, that
	// requests may name in their Host header (admin.hosts).
	Hosts []string
	// Version is what GET /api/info reports of the binary.
	Version string
	// HistoryEvery is how often the dashboard's history is sampled
	// (default 2s); it keeps the last 300 samples.
	HistoryEvery time.Duration
	Log          *slog.Logger
}

// API is the admin HTTP handler. It lists the notable events of the
// server's stream (events.go), its own calls' among them.
type API struct {
	opts    Options
	started time.Time
	mux     *http.ServeMux

	mu     sync.Mutex
	events []Event // ring of recent changes, newest last

	hist history
}

// Event is a recent change worth showing an operator.
type Event struct {
	Time    time.Time `json:"time"`
	Pool    string    `json:"pool"`
	Backend string    `json:"backend"`
	What    string    `json:"what"`
}

const maxEvents = 100

// dashboard is the live status page: no external assets, no build step.
// Its charts are uPlot (package uplot).
//
//go:embed dashboard.html
var dashboard []byte

// New builds the handler.
func New(opts Options) *API {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.HistoryEvery <= 0 {
		opts.HistoryEvery = 2 * time.Second
	}
	a := &API{opts: opts, mux: http.NewServeMux(), started: time.Now()}
	for _, r := range a.routes() {
		a.mux.Handle(r.pattern, r.handler)
	}
	a.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeErr(w, http.StatusNotFound, fmt.Errorf("no such endpoint: %s %s (see docs/operations.md)", r.Method, r.URL.Path))
	})
	if opts.Server != nil {
		opts.Server.Events().Subscribe(a.remember)
	}
	a.startHistory()
	return a
}

func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		if v := recover(); v != nil {
			a.opts.Log.Error("admin handler panic", "path", r.URL.Path, "panic", v)
			writeErr(w, 500, fmt.Errorf("internal error"))
		}
	}()
	if !a.hostAllowed(r.Host) {
		writeErr(w, http.StatusMisdirectedRequest, fmt.Errorf("host %q is not a name of this admin API: use its IP address, or add the name to admin.hosts", r.Host))
		return
	}
	if a.opts.TokenForReads && !openRead(r.URL.Path) && !a.hasToken(r) {
		writeErr(w, http.StatusUnauthorized, errors.New("admin.token_for_reads is on: every call needs the admin token: Authorization: Bearer <token from admin.token_file>"))
		return
	}
	a.mux.ServeHTTP(w, r)
}

// openRead says whether a path is served without the token even when
// reads need it: health checks, the dashboard's page and its assets.
func openRead(path string) bool {
	return path == "/healthz" || path == "/readyz" || path == "/" || strings.HasPrefix(path, "/static/")
}

// hasToken says whether r presents the admin token (true when none is
// configured, and for a call over the admin socket, whose file's
// permissions decided who could connect).
func (a *API) hasToken(r *http.Request) bool {
	if a.opts.Token == "" || viaSocket(r) {
		return true
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(got), []byte(a.opts.Token)) == 1
}

// asset serves one of the dashboard's embedded files, cached for a day:
// they change only with the binary.
func asset(contentType string, body []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", contentType)
		w.Header().Set("Cache-Control", "max-age=86400")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Write(body)
	}
}

// auth guards a changing call: against cross-site requests always, and
// with the token when one is configured.
func (a *API) auth(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if code, err := checkChange(r); err != nil {
			writeErr(w, code, err)
			return
		}
		if !a.hasToken(r) {
			writeErr(w, http.StatusUnauthorized, errors.New("this call needs the admin token: Authorization: Bearer <token from admin.token_file>"))
			return
		}
		h(w, r)
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeErr(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, map[string]string{"error": err.Error()})
}

// BackendInfo is one backend in the API.
type BackendInfo struct {
	Pool        string `json:"pool"`
	Name        string `json:"name"`
	Address     string `json:"address"`
	State       string `json:"state"`
	Healthy     bool   `json:"healthy"`
	Admin       string `json:"admin"`
	Weight      int    `json:"weight"`
	Connections int64  `json:"connections"`
	Pins        int    `json:"pins"`
	ToBackend   int64  `json:"bytes_to_backend"`
	ToClient    int64  `json:"bytes_to_client"`
	// Since is when the state last changed; zero if it never did.
	Since time.Time `json:"since,omitzero"`
	// DownReason is why the backend is down: the check that failed, or
	// the passive check's failed connects.
	DownReason string `json:"down_reason,omitempty"`
	// Ejected is the backend's outlier ejection ([pool.NAME.outlier])
	// while it lasts: it takes no new clients, and its pinned clients
	// stay.
	Ejected       *EjectionInfo `json:"ejected,omitempty"`
	LastCheck     *CheckInfo    `json:"last_check,omitempty"`
	Opened        uint64        `json:"connections_total"`
	ConnectErrors uint64        `json:"connect_errors_total"`
	// Cluster says whether the other members hold the operator's last
	// decision about the backend: "agreed", or who has not heard yet or
	// holds a newer one; absent without a cluster or a decision.
	Cluster string `json:"cluster,omitempty"`
}

// CheckInfo is a backend's last health check.
type CheckInfo struct {
	Name   string    `json:"name"`
	Time   time.Time `json:"time"`
	TookMS float64   `json:"took_ms"`
	OK     bool      `json:"ok"`
	Error  string    `json:"error,omitempty"`
}

// backendInfo is b as the API shows it, with pins pins.
func backendInfo(pool string, b *pool.Backend, pins int) BackendInfo {
	toBackend, toClient := b.Bytes()
	opened, failed := b.Totals()
	bi := BackendInfo{Pool: pool, Name: b.Name, Address: b.Host, State: b.Status(), Healthy: b.Healthy(),
		Admin: b.AdminState().String(), Weight: b.Weight(), Connections: b.Active(), Pins: pins,
		ToBackend: toBackend, ToClient: toClient, Since: b.LastChange().UTC(), DownReason: b.DownReason(),
		Opened: opened, ConnectErrors: failed}
	bi.Ejected = ejectionInfo(b)
	if c, ok := b.LastCheck(); ok {
		bi.LastCheck = &CheckInfo{Name: c.Name, Time: c.At.UTC(), TookMS: float64(c.Took.Microseconds()) / 1000, OK: c.Err == "", Error: c.Err}
	}
	return bi
}

// PoolInfo summarises a pool's affinity table.
type PoolInfo struct {
	Name     string        `json:"name"`
	Key      string        `json:"affinity_key"`
	Pins     int           `json:"pins"`
	Hits     uint64        `json:"hits"`
	Misses   uint64        `json:"misses"`
	Repins   uint64        `json:"repins"`
	Backends []BackendInfo `json:"backends"`
}

// Status is GET /api/backends.
type Status struct {
	Pools []PoolInfo `json:"pools"`
}

func (a *API) status() Status {
	var st Status
	for _, p := range a.opts.Server.Pools() {
		pi := PoolInfo{Name: p.Name, Key: p.Keyer.Kind.String()}
		pins := map[string]int{}
		if p.Table != nil {
			pins = p.Table.Counts()
			s := p.Table.Stats()
			pi.Pins, pi.Hits, pi.Misses, pi.Repins = p.Table.Len(), s.Hits, s.Misses, s.Repins
		}
		for _, b := range p.Listed() {
			bi := backendInfo(p.Name, b, pins[b.Name])
			bi.Cluster = a.opts.Server.Agreement(p.Name, b.Name)
			pi.Backends = append(pi.Backends, bi)
		}
		st.Pools = append(st.Pools, pi)
	}
	return st
}

func (a *API) backends(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, a.status()) }

// ready is /readyz: 503 from the moment a drain starts (the listeners
// accept no more), before a cluster member's first sync, or while a pool
// has no backend to give a new client; the answer's "error" says which,
// as every other refusal of the API does.
func (a *API) ready(w http.ResponseWriter, r *http.Request) {
	if a.opts.Server.Stopping() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "draining", "error": "draining: stopping, no new connections"})
		return
	}
	if !a.opts.Server.Ready() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "syncing", "detail": "waiting for the pins of a cluster peer (cluster.sync_timeout)",
			"error": "syncing: waiting for the pins of a cluster peer (cluster.sync_timeout)"})
		return
	}
	var notReady []string
	for _, p := range a.opts.Server.Pools() {
		if !p.Pool.TakesNew() {
			notReady = append(notReady, p.Name)
		}
	}
	if len(notReady) > 0 {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "not ready", "pools_without_backend": notReady,
			"error": "no backend can take a new client in pool " + strings.Join(notReady, ", ")})
		return
	}
	writeJSON(w, 200, map[string]string{"status": "ready"})
}

func (a *API) poolView(name string) (server.PoolView, error) {
	pools := a.opts.Server.Pools()
	if name == "" && len(pools) == 1 {
		return pools[0], nil
	}
	for _, p := range pools {
		if p.Name == name {
			return p, nil
		}
	}
	var names []string
	for _, p := range pools {
		names = append(names, p.Name)
	}
	if name == "" {
		return server.PoolView{}, fmt.Errorf("name a pool with ?pool= (pools: %s)", strings.Join(names, ", "))
	}
	return server.PoolView{}, fmt.Errorf("no pool %q (pools: %s)", name, strings.Join(names, ", "))
}

// backendOf finds the backend a /api/backends/{pool}/{backend}/... path
// names, or answers 404 and returns false.
func (a *API) backendOf(w http.ResponseWriter, r *http.Request) (server.PoolView, *pool.Backend, bool) {
	p, err := a.poolView(r.PathValue("pool"))
	if err != nil {
		writeErr(w, 404, err)
		return p, nil, false
	}
	b := p.Pool.Backend(r.PathValue("backend"))
	if b == nil {
		writeErr(w, 404, fmt.Errorf("pool %s has no backend %q", p.Name, r.PathValue("backend")))
		return p, nil, false
	}
	return p, b, true
}

func (a *API) setState(w http.ResponseWriter, r *http.Request) {
	p, b, ok := a.backendOf(w, r)
	if !ok {
		return
	}
	var body struct {
		State    string `json:"state"`
		Deadline string `json:"deadline"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&body); err != nil {
		writeErr(w, 400, fmt.Errorf("body must be JSON like {\"state\": \"drain\", \"deadline\": \"30m\"}: %v", err))
		return
	}
	st, err := pool.ParseAdminState(body.State)
	if err != nil {
		writeErr(w, 400, err)
		return
	}
	var deadline time.Duration
	if body.Deadline != "" {
		if deadline, err = time.ParseDuration(body.Deadline); err != nil || deadline <= 0 || st != pool.Drain {
			writeErr(w, 400, fmt.Errorf("deadline %q: give a positive duration such as \"30m\", with state drain only", body.Deadline))
			return
		}
	}
	old := b.AdminState()
	if _, err := a.opts.Server.SetState(p.Name, b.Name, st, deadline); err != nil {
		writeErr(w, 404, err)
		return
	}
	a.opts.Log.Info("backend state set", "pool", p.Name, "backend", b.Name, "from", old, "to", st, "deadline", body.Deadline)
	a.publish(event.Decision, p.Name, b.Name, "set "+st.String()+" (was "+old.String()+")")
	writeJSON(w, 200, backendInfo(p.Name, b, pinsOf(p, b.Name)))
}

// pinsOf is how many clients of pool p are pinned to backend.
func pinsOf(p server.PoolView, backend string) int {
	if p.Table == nil {
		return 0
	}
	return p.Table.Counts()[backend]
}

// PinInfo is one pin in the API.
type PinInfo struct {
	Pool        string    `json:"pool"`
	Client      string    `json:"client"`
	Backend     string    `json:"backend"`
	Connections int32     `json:"connections"`
	Created     time.Time `json:"created"`
	LastSeen    time.Time `json:"last_seen"`
}

func pinInfo(poolName string, in affinity.Record) PinInfo {
	return PinInfo{Pool: poolName, Client: in.Key.String(), Backend: in.Backend, Connections: in.Active,
		Created: in.CreatedAt().UTC(), LastSeen: in.Seen().UTC()}
}

func intParam(r *http.Request, name string, def, max int) (int, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > max {
		return 0, fmt.Errorf("%s must be a whole number from 0 to %d, not %q", name, max, s)
	}
	return n, nil
}

func (a *API) reload(w http.ResponseWriter, r *http.Request) {
	if err := a.opts.Server.ReloadFile(a.opts.ConfigPath); err != nil {
		a.opts.Log.Error("reload failed", "config", a.opts.ConfigPath, "error", err)
		writeErr(w, 400, err)
		return
	}
	a.opts.Log.Info("reloaded", "config", a.opts.ConfigPath)
	a.publish(event.Config, "", "", "config reloaded")
	writeJSON(w, 200, Reloaded{Status: "reloaded", Config: a.opts.ConfigPath})
}

func (a *API) listEvents(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	ev := slices.Clone(a.events)
	a.mu.Unlock()
	if ev == nil {
		ev = []Event{}
	}
	writeJSON(w, 200, ev)
}

// Reloaded answers POST /api/reload once the config file applied.
type Reloaded struct {
	Status string `json:"status"` // "reloaded"
	Config string `json:"config"` // the file read
}
