//go:build linux

package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stickylb/stickylb/locks"

	"github.com/stickylb/stickylb/throttle"

	"github.com/stickylb/stickylb/affinity"
	"github.com/stickylb/stickylb/cluster"
	"github.com/stickylb/stickylb/config"
	"github.com/stickylb/stickylb/event"
	"github.com/stickylb/stickylb/health"
	"github.com/stickylb/stickylb/operator"
	"github.com/stickylb/stickylb/persist"
	"github.com/stickylb/stickylb/pool"
	"github.com/stickylb/stickylb/proxy"
)

// Options are the parts of a server that are not in the config file.
type Options struct {
	Log *slog.Logger
	// Dialer opens backend connections; nil means proxy.NetDialer with the
	// pool's keepalive.
	Dialer proxy.Dialer
	// Observer follows connections (metrics); the zero value hears nothing.
	Observer proxy.Observer
	// Events is the stream the server publishes what happens to (pin
	// changes, check results, backends up and down, cluster members,
	// operators' decisions, connections closed at a peer's request);
	// nil: a stream of its own, which Events returns.
	Events *event.Stream
	// Inherited are the listening sockets of the process this one takes
	// over from (a binary upgrade); nil otherwise.
	Inherited *proxy.Sockets
}

// Server is a running balancer.
type Server struct {
	opts Options
	log  *slog.Logger

	mu        locks.Mutex // serialises Reload and Shutdown
	stopping  atomic.Bool // Shutdown has begun: no new connections, no reloads
	leaving   atomic.Bool // a stop's grace has begun: readiness says no
	pools     map[string]*poolRT
	published atomic.Pointer[[]PoolView] // pools as readers see them, without s.mu (Pools)
	pins      affinity.Latest            // their pins, as the store and the cluster read them
	listeners map[string]*listenerRT     // by bind key, see bindKey
	retired   []*proxy.Listener          // closed by a reload; their connections still run
	serving   sync.WaitGroup
	current   atomic.Pointer[config.Config] // the config in force, published: read without s.mu
	// decisions are the operators' (package operator), told of the
	// backends with s.mu held: their lock is taken after s.mu, never
	// before.
	decisions *operator.Decisions

	ctx    context.Context
	cancel context.CancelFunc
	bg     sync.WaitGroup

	Reloads, ReloadFailures atomic.Uint64
	LastReload              atomic.Int64 // unix seconds of the last successful (re)load
	// The pin store's counters: snapshot writes and journal failures.
	persist.Stats

	// store keeps the pins on disk, in the snapshot file fixed at start
	// (a reload that changes global.snapshot_file applies at the next
	// restart); it keeps nothing without one.
	store *persist.Store

	cluster  atomic.Pointer[cluster.Member] // nil without [cluster]; fixed at start
	views    chan struct{}                  // a peer published new views (watchViews)
	outliers chan struct{}                  // a pool ejected a backend, or stopped ejecting (watchOutliers)
}

// poolRT is a pool as it runs: its backends, its pins and its checkers.
type poolRT struct {
	pool    *pool.Pool
	table   *affinity.Table
	keyer   affinity.Keyer
	cfg     *config.Pool
	limiter *proxy.Limiter // nil without client limits
	health  context.CancelFunc
	done    chan struct{}
	states  map[stateKey]*health.State // by check and backend, kept across restarts
	evLog   throttle.Log               // idle pins evicted from a full table
	fullLog throttle.Log               // new clients left unpinned
}

type listenerRT struct {
	l   *proxy.Listener
	cfg *config.Listener
}

// New binds every listener of cfg and restores the pins of the snapshot
// file, if any. Nothing is served until Start.
func New(cfg *config.Config, opts Options) (*Server, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Events == nil {
		opts.Events = &event.Stream{}
	}
	s := &Server{opts: opts, log: opts.Log, pools: map[string]*poolRT{}, listeners: map[string]*listenerRT{},
		views: make(chan struct{}, 1), outliers: make(chan struct{}, 1)}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.store = persist.New(cfg.Global.SnapshotFile, &s.Stats, s.log)
	s.decisions = s.newDecisions(cfg.Global.SnapshotFile)
	if err := s.apply(cfg, false); err != nil {
		s.cancel()
		return nil, err
	}
	s.store.Restore(s.tables())
	s.decisions.Restore()
	if err := s.startCluster(cfg); err != nil {
		s.closeListeners()
		s.cancel()
		return nil, err
	}
	return s, nil
}

// Events is the stream the server publishes to, for subscribers.
func (s *Server) Events() *event.Stream { return s.opts.Events }

// closeListeners closes every bound listener, for a New that fails late.
func (s *Server) closeListeners() {
	for _, lr := range s.listeners {
		lr.l.Close()
	}
}

// Start joins the cluster, if any (waiting up to its sync_timeout for the
// pins of a peer), then serves the listeners and runs health checks, pin
// expiry and snapshots.
func (s *Server) Start() {
	s.joinCluster()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, lr := range s.listeners {
		s.serve(lr.l)
	}
	for _, p := range s.pools {
		s.startHealth(p, nil)
	}
	s.bg.Add(4)
	go s.sweep()
	go s.snapshots()
	go s.watchViews()
	go s.watchOutliers()
}

func (s *Server) serve(l *proxy.Listener) {
	s.serving.Add(1)
	go func() {
		defer s.serving.Done()
		if err := l.Serve(); err != nil {
			s.log.Error("listener stopped", "listener", l.Name, "error", err)
		}
	}()
}

// Reload applies cfg. On error nothing has changed.
func (s *Server) Reload(cfg *config.Config) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping.Load() {
		return errors.New("server is shutting down")
	}
	before := s.current.Load().Cluster
	if err := s.apply(cfg, true); err != nil {
		s.ReloadFailures.Add(1)
		return err
	}
	if m := s.cluster.Load(); m != nil {
		s.recheck(s.Pools()) // a backend the others lack takes no new clients from now
		m.PublishDecisions() // and they learn this member's backends
	}
	s.reloadKeys(before, cfg.Cluster)
	after := cfg.Cluster
	before.Keys, after.Keys = nil, nil
	if !reflect.DeepEqual(before, after) {
		s.log.Warn("[cluster] changed; it applies at the next restart")
	}
	if cfg.Global.SnapshotFile != s.store.Path() {
		s.log.Warn("global.snapshot_file changed; it applies at the next restart", "running", s.store.Path(), "new", cfg.Global.SnapshotFile)
	}
	return nil
}

// ErrReload wraps a rejected reload.
var ErrReload = errors.New("reload rejected; the previous config is still running")

// ReloadFile loads path and applies it, or says why not.
func (s *Server) ReloadFile(path string) error {
	cfg, err := config.Load(path)
	if err == nil {
		err = s.Reload(cfg)
	} else {
		s.ReloadFailures.Add(1)
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrReload, err)
	}
	return nil
}

// Stopping reports whether a stop has begun, its grace (Leave) or its
// drain (Shutdown): a balancer in front (keepalived, a router) should
// stop sending clients here.
func (s *Server) Stopping() bool { return s.stopping.Load() || s.leaving.Load() }

// Leave starts a stop's grace: readiness says no, and the listeners go
// on accepting until Shutdown, so that clients sent here before the
// address moved are still served.
func (s *Server) Leave() { s.leaving.Store(true) }

// Shutdown stops accepting, waits for open connections until ctx ends,
// then closes those left, stops the checkers and saves the pins. It
// returns how many connections it had to cut. The server's lock is held
// only to collect what to stop, so status calls keep working during a
// long drain.
func (s *Server) Shutdown(ctx context.Context) int {
	s.mu.Lock()
	s.stopping.Store(true) // under mu: a Reload either ran before or sees it
	all := slices.Clone(s.retired)
	for _, lr := range s.listeners {
		lr.l.Close()
		all = append(all, lr.l)
	}
	s.mu.Unlock()
	s.serving.Wait()
	var cut atomic.Int64
	var wg sync.WaitGroup
	for _, l := range all {
		wg.Go(func() { cut.Add(int64(l.Wait(ctx))) })
	}
	wg.Wait()
	s.cancel()
	s.bg.Wait()
	s.mu.Lock()
	for _, p := range s.pools {
		s.stopHealth(p)
	}
	s.mu.Unlock()
	s.decisions.Stop()
	if m := s.cluster.Load(); m != nil {
		m.Leave(5 * time.Second)
	}
	// Every connection has ended, so every pin's last-seen time is final.
	s.savePins()
	return int(cut.Load())
}
