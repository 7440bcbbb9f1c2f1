// Package server assembles a running balancer from a config: it builds
// the pools, affinity tables and health checkers, binds the listeners, and
// applies reloads all or nothing. It is what `stickylb run` and the lab
// both run, so the lab exercises the production path.
//
// A reload keeps what survives: listeners on the same address keep their
// socket and open connections, pools keep their affinity table (when the
// key kind is unchanged) and backends of the same name and address keep
// their health and connection counts. A new listener that cannot bind
// fails the whole reload and the running config stays.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stickylb/stickylb/affinity"
	"github.com/stickylb/stickylb/config"
	"github.com/stickylb/stickylb/health"
	"github.com/stickylb/stickylb/pool"
	"github.com/stickylb/stickylb/proxy"
)

// Options are the parts of a server that are not in the config file.
type Options struct {
	Log *slog.Logger
	// Dialer opens backend connections; nil means proxy.NetDialer with the
	// pool's keepalive.
	Dialer proxy.Dialer
	// Observer follows connections (metrics); may be nil.
	Observer proxy.Observer
	// OnPinEvent, if set, sees every affinity table change, after the
	// server's own logging.
	OnPinEvent func(pool string, ev affinity.Event)
	// OnHealth, if set, sees every health check result.
	OnHealth func(pool, backend string, err error, took time.Duration)
	// OnStateChange, if set, hears when a backend goes up or down.
	OnStateChange func(pool, backend string, up bool, err error)
}

// PoolView is a pool as the admin API and metrics see it.
type PoolView struct {
	Name  string
	Pool  *pool.Pool
	Table *affinity.Table // nil when the pool keeps no pins
	Keyer affinity.Keyer
}

// Pools returns the current pools in name order.
func (s *Server) Pools() []PoolView {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []PoolView
	for _, name := range sortedKeys(s.pools) {
		p := s.pools[name]
		out = append(out, PoolView{Name: name, Pool: p.pool, Table: p.table, Keyer: p.keyer})
	}
	return out
}

// Server is a running balancer.
type Server struct {
	opts Options
	log  *slog.Logger

	mu        sync.Mutex // serialises Reload and Shutdown
	closed    bool
	cfg       *config.Config
	pools     map[string]*poolRT
	listeners map[string]*listenerRT // by bind key, see bindKey
	retired   []*proxy.Listener      // closed by a reload; their connections still run
	serving   sync.WaitGroup
	// drainTimers turn a drain into maintenance at its deadline.
	drainTimers map[*pool.Backend]*time.Timer

	ctx    context.Context
	cancel context.CancelFunc
	bg     sync.WaitGroup

	Reloads, ReloadFailures atomic.Uint64
	LastReload              atomic.Int64 // unix seconds of the last successful (re)load
}

type poolRT struct {
	pool   *pool.Pool
	table  *affinity.Table
	keyer  affinity.Keyer
	cfg    *config.Pool
	health context.CancelFunc
	done   chan struct{}
	evLog  rateLimit
}

type listenerRT struct {
	l   *proxy.Listener
	cfg *config.Listener
}

// New binds every listener of cfg. Nothing is served until Start.
func New(cfg *config.Config, opts Options) (*Server, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	s := &Server{opts: opts, log: opts.Log, pools: map[string]*poolRT{}, listeners: map[string]*listenerRT{},
		drainTimers: map[*pool.Backend]*time.Timer{}}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if err := s.apply(cfg, false); err != nil {
		s.cancel()
		return nil, err
	}
	return s, nil
}

// Start serves the listeners and runs health checks and pin expiry.
func (s *Server) Start() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, lr := range s.listeners {
		s.serve(lr.l)
	}
	for _, p := range s.pools {
		s.startHealth(p, nil)
	}
	s.bg.Add(2)
	go s.sweep()
	go s.snapshots()
}

// bindKey identifies a listener across reloads by its address, so a
// renamed listener keeps its socket. Port 0 binds anew each time.
func bindKey(l *config.Listener) string {
	ap, _ := config.ParseListen(l.Listen)
	if ap.Port() == 0 {
		return l.Name + "/" + l.Listen
	}
	return ap.String()
}

// Reload applies cfg. On error nothing has changed.
func (s *Server) Reload(cfg *config.Config) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("server is shutting down")
	}
	if err := s.apply(cfg, true); err != nil {
		s.ReloadFailures.Add(1)
		return err
	}
	return nil
}

// apply makes cfg current. Everything that can fail (binding) happens
// first; the rest cannot fail.
func (s *Server) apply(cfg *config.Config, running bool) error {
	fresh := map[string]*proxy.Listener{}
	for _, name := range sortedKeys(cfg.Listeners) {
		lc := cfg.Listeners[name]
		k := bindKey(lc)
		if _, ok := s.listeners[k]; ok {
			continue
		}
		l, err := proxy.Listen(s.ctx, name, lc.Listen, cfg.Pools[lc.Pool].Keepalive.Duration, s.log)
		if err != nil {
			for _, f := range fresh {
				f.Close()
			}
			return err
		}
		fresh[k] = l
	}

	// Pools. Health checks restart once the listeners are in place,
	// since the ports they probe are the listeners'.
	restart := map[*poolRT][]*pool.Backend{}
	for _, name := range sortedKeys(cfg.Pools) {
		pc := cfg.Pools[name]
		p, ok := s.pools[name]
		var before []*pool.Backend
		if ok {
			before = p.pool.Backends()
			removed := p.pool.Update(balance(pc), specs(pc))
			for _, b := range removed {
				s.log.Info("backend removed; its clients will be re-pinned", "pool", name, "backend", b.Name)
			}
		} else {
			p = &poolRT{pool: pool.New(name, balance(pc), specs(pc))}
			s.pools[name] = p
		}
		p.pool.SetSlowStart(pc.SlowStart.Duration)
		kr := keyer(pc)
		switch {
		case kr.Kind == affinity.None:
			p.table = nil
		case p.table != nil && kr == p.keyer:
			p.table.SetTTL(pc.Affinity.TTL.Duration)
			p.table.Resize(pc.Affinity.MaxEntries)
		default:
			if p.table != nil {
				s.log.Warn("affinity key changed; pool starts with an empty table", "pool", name, "key", kr.Kind)
			}
			p.table = affinity.NewTable(affinity.Config{
				TTL: pc.Affinity.TTL.Duration, MaxEntries: pc.Affinity.MaxEntries,
				OnEvent: s.pinEvent(name, p),
			})
		}
		p.keyer, p.cfg = kr, pc
		if running {
			restart[p] = before
		}
	}
	for name, p := range s.pools {
		if _, ok := cfg.Pools[name]; !ok {
			s.stopHealth(p)
			delete(s.pools, name)
			s.log.Info("pool removed", "pool", name)
		}
	}

	// Listeners.
	next := map[string]*listenerRT{}
	for _, name := range sortedKeys(cfg.Listeners) {
		lc := cfg.Listeners[name]
		k := bindKey(lc)
		lr := s.listeners[k]
		if lr == nil {
			lr = &listenerRT{l: fresh[k]}
			if running {
				s.serve(lr.l)
			}
			s.log.Info("listening", "listener", name, "addr", lr.l.Addr(), "pool", lc.Pool)
		}
		lr.cfg = lc
		lr.l.SetRoute(s.route(lc, cfg.Pools[lc.Pool], s.pools[lc.Pool]))
		next[k] = lr
	}
	for k, lr := range s.listeners {
		if _, ok := next[k]; !ok {
			lr.l.Close()
			s.retired = append(s.retired, lr.l)
			s.log.Info("listener removed; its open connections run on", "listener", lr.cfg.Name, "addr", lr.l.Addr())
		}
	}
	s.listeners = next
	for p, before := range restart {
		s.startHealth(p, before)
	}
	s.cfg = cfg
	s.Reloads.Add(1)
	s.LastReload.Store(time.Now().Unix())
	return nil
}

func (s *Server) route(lc *config.Listener, pc *config.Pool, p *poolRT) *proxy.Route {
	port := lc.BackendPort
	if port == 0 {
		ap, _ := config.ParseListen(lc.Listen)
		port = int(ap.Port())
	}
	d := s.opts.Dialer
	if d == nil {
		d = proxy.NetDialer{Keepalive: pc.Keepalive.Duration}
	}
	return &proxy.Route{
		Name: lc.Name, Pool: p.pool, Table: p.table, Keyer: p.keyer, Port: port,
		Reject:           pc.OnDown == "reject",
		ConnectTimeout:   pc.ConnectTimeout.Duration,
		Retries:          pc.ConnectRetries,
		IdleTimeout:      pc.IdleTimeout.Duration,
		HalfCloseTimeout: pc.HalfCloseTimeout.Duration,
		Dialer:           d,
		Observer:         s.opts.Observer,
		Failback:         pc.Failback,
		PassiveFall:      pc.PassiveFall,
		OnPassiveDown: func(b *pool.Backend, err error) {
			if s.opts.OnStateChange != nil {
				s.opts.OnStateChange(p.pool.Name, b.Name, false, err)
			}
			if pc.CloseOnDown {
				s.closeBackend(b, "backend down (passive check) and close_on_down is set")
			}
		},
	}
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

// ports returns the backend ports of the listeners that use pool name.
func (s *Server) ports(name string) []int {
	var ports []int
	for _, lr := range s.listeners {
		if lr.cfg.Pool == name {
			r := lr.l.Route()
			if !slices.Contains(ports, r.Port) {
				ports = append(ports, r.Port)
			}
		}
	}
	slices.Sort(ports)
	return ports
}

// startHealth (re)starts a pool's checkers, one per configured check.
// Backends that were in before keep their verdict; new ones take their
// first check's. A backend is up only while every check passes.
func (s *Server) startHealth(p *poolRT, before []*pool.Backend) {
	s.stopHealth(p)
	ports := s.ports(p.pool.Name)
	checks := p.cfg.Checks
	if len(checks) == 0 {
		if !p.cfg.Health.Enabled {
			return
		}
		h := p.cfg.Health
		checks = map[string]*config.Check{"tcp": {Name: "tcp", Type: "tcp", Interval: h.Interval, Timeout: h.Timeout, Rise: h.Rise, Fall: h.Fall}}
	}
	if len(ports) == 0 {
		return
	}
	pl, closeOnDown := p.pool, p.cfg.CloseOnDown
	var mu sync.Mutex
	verdicts := map[string]map[string]bool{} // backend -> check -> up
	var checkers []*health.Checker
	for _, name := range sortedKeys(checks) {
		ch := checks[name]
		var targets []health.Target
		for _, b := range pl.Backends() {
			targets = append(targets, health.Target{Name: b.Name, Host: b.Host, Up: b.Healthy(),
				Known: slices.Contains(before, b), Current: b.Healthy})
		}
		checkers = append(checkers, health.New(health.Config{
			Interval: ch.Interval.Duration, Timeout: ch.Timeout.Duration, Rise: ch.Rise, Fall: ch.Fall,
			Probes: []health.Probe{probe(ch, ports)},
			OnChange: func(c health.Change) {
				b := pl.Backend(c.Target)
				if b == nil {
					return
				}
				mu.Lock()
				if verdicts[b.Name] == nil {
					verdicts[b.Name] = map[string]bool{}
				}
				verdicts[b.Name][name] = c.Up
				up := true
				for _, v := range verdicts[b.Name] {
					up = up && v
				}
				mu.Unlock()
				if !b.SetHealthy(up) {
					return
				}
				if up {
					s.log.Info("backend up", "pool", pl.Name, "backend", b.Name)
				} else {
					s.log.Warn("backend down", "pool", pl.Name, "backend", b.Name, "check", name, "error", c.Err)
				}
				if s.opts.OnStateChange != nil {
					s.opts.OnStateChange(pl.Name, b.Name, up, c.Err)
				}
				if !up && closeOnDown {
					s.closeBackend(b, "backend down and close_on_down is set")
				}
			},
			OnResult: func(target string, err error, took time.Duration) {
				if s.opts.OnHealth != nil {
					s.opts.OnHealth(pl.Name, target, err, took)
				}
			},
		}, targets))
	}
	ctx, cancel := context.WithCancel(s.ctx)
	p.health, p.done = cancel, make(chan struct{})
	done := p.done
	go func() {
		defer close(done)
		var wg sync.WaitGroup
		for _, c := range checkers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.Run(ctx)
			}()
		}
		wg.Wait()
	}()
}

// probe builds the health probe a check describes.
func probe(ch *config.Check, ports []int) health.Probe {
	if ch.Port != 0 {
		ports = []int{ch.Port}
	}
	switch ch.Type {
	case "send-expect":
		se := health.SendExpect{Ports: ports, Send: []byte(ch.Send), Expect: []byte(ch.Expect)}
		if ch.ExpectRegex != "" {
			se.Regexp = regexp.MustCompile(ch.ExpectRegex) // checked by config
		}
		return se
	case "tls":
		return health.TLS{Ports: ports, SNI: ch.SNI, Verify: ch.Verify}
	case "http", "https":
		h := health.HTTP{Ports: ports, TLS: ch.Type == "https", SNI: ch.SNI, Verify: ch.Verify, Method: ch.Method,
			Path: ch.Path, Host: ch.Host, StatusMin: ch.StatusMin, StatusMax: ch.StatusMax}
		if ch.Body != "" {
			h.Body = regexp.MustCompile(ch.Body)
		}
		return h
	}
	return health.TCP{Ports: ports}
}

// closeBackend closes every connection to b, on every listener.
func (s *Server) closeBackend(b *pool.Backend, why string) int {
	s.mu.Lock()
	ls := slices.Clone(s.retired)
	for _, lr := range s.listeners {
		ls = append(ls, lr.l)
	}
	s.mu.Unlock()
	n := 0
	for _, l := range ls {
		n += l.CloseBackend(b)
	}
	if n > 0 {
		s.log.Warn("closed connections to backend", "backend", b.Name, "connections", n, "why", why)
	}
	return n
}

// SetState sets a backend's administrative state. With a deadline, a
// drain turns into maintenance when it runs out: the backend's remaining
// connections are closed and its clients move at their next connection.
// Any later state change cancels the deadline.
func (s *Server) SetState(poolName, backend string, st pool.Admin, deadline time.Duration) (*pool.Backend, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.pools[poolName]
	if p == nil {
		return nil, fmt.Errorf("no pool %q", poolName)
	}
	b := p.pool.Backend(backend)
	if b == nil {
		return nil, fmt.Errorf("pool %s has no backend %q", poolName, backend)
	}
	if t := s.drainTimers[b]; t != nil {
		t.Stop()
		delete(s.drainTimers, b)
	}
	b.SetAdmin(st)
	if st == pool.Drain && deadline > 0 {
		var t *time.Timer
		t = time.AfterFunc(deadline, func() {
			s.mu.Lock()
			mine := s.drainTimers[b] == t
			delete(s.drainTimers, b)
			s.mu.Unlock()
			if !mine || b.Admin() != pool.Drain {
				return
			}
			b.SetAdmin(pool.Maint)
			s.log.Info("drain deadline reached: backend in maintenance", "pool", poolName, "backend", backend)
			s.closeBackend(b, "drain deadline reached")
		})
		s.drainTimers[b] = t
	}
	return b, nil
}

func (s *Server) stopHealth(p *poolRT) {
	if p.health != nil {
		p.health()
		<-p.done
		p.health = nil
	}
}

func (s *Server) pinEvent(name string, p *poolRT) func(affinity.Event) {
	return func(ev affinity.Event) {
		switch {
		case ev.Kind == affinity.EventRepin:
			s.log.Info("client re-pinned", "pool", name, "client", ev.Key, "from", ev.From, "to", ev.Backend, "reason", ev.Reason)
		case ev.Kind == affinity.EventUnpin && ev.Reason == affinity.ReasonEvicted:
			// One line per burst, not per pin: a full table evicts
			// on every new client.
			if n, ok := p.evLog.allow(10 * time.Second); ok {
				s.log.Warn("affinity table full: evicted least recently used pins; raise affinity.max_entries",
					"pool", name, "evicted", n, "client", ev.Key, "backend", ev.Backend, "open_connections", ev.Active)
			}
		default:
			s.log.Debug("affinity "+ev.Kind.String(), "pool", name, "client", ev.Key, "backend", ev.Backend, "reason", ev.Reason)
		}
		if s.opts.OnPinEvent != nil {
			s.opts.OnPinEvent(name, ev)
		}
	}
}

// sweep frees expired pins now and then.
func (s *Server) sweep() {
	defer s.bg.Done()
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		tables := make([]*affinity.Table, 0, len(s.pools))
		for _, p := range s.pools {
			if p.table != nil {
				tables = append(tables, p.table)
			}
		}
		s.mu.Unlock()
		for _, t := range tables {
			t.Sweep(4096)
		}
	}
}

// Shutdown stops accepting, waits for open connections until ctx ends,
// then closes those left. It returns how many it had to cut. The server's
// lock is held only to collect what to stop, so status calls keep working
// during a long drain.
func (s *Server) Shutdown(ctx context.Context) int {
	s.mu.Lock()
	s.closed = true
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
		wg.Add(1)
		go func() {
			defer wg.Done()
			cut.Add(int64(l.Wait(ctx)))
		}()
	}
	wg.Wait()
	s.cancel()
	s.bg.Wait()
	s.mu.Lock()
	for _, p := range s.pools {
		s.stopHealth(p)
	}
	s.mu.Unlock()
	// Every connection has ended, so every pin's last-seen time is final.
	if path := s.Config().Global.SnapshotFile; path != "" {
		if n, err := s.SaveSnapshot(path); err != nil {
			s.log.Error("pin snapshot failed", "error", err)
		} else {
			s.log.Info("pins saved", "file", path, "pins", n)
		}
	}
	return int(cut.Load())
}

// Active returns the number of open client connections.
func (s *Server) Active() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, lr := range s.listeners {
		n += lr.l.Active()
	}
	for _, l := range s.retired {
		n += l.Active()
	}
	return n
}

// Addrs returns each listener's bound address by name.
func (s *Server) Addrs() map[string]netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := map[string]netip.AddrPort{}
	for _, lr := range s.listeners {
		m[lr.cfg.Name] = lr.l.Addr()
	}
	return m
}

// Pool returns the named pool, or nil.
func (s *Server) Pool(name string) *pool.Pool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.pools[name]; p != nil {
		return p.pool
	}
	return nil
}

// Table returns the named pool's affinity table, or nil.
func (s *Server) Table(name string) *affinity.Table {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.pools[name]; p != nil {
		return p.table
	}
	return nil
}

// Config returns the config in force.
func (s *Server) Config() *config.Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg
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

func balance(pc *config.Pool) pool.Balance {
	b, _ := pool.ParseBalance(pc.Balance) // checked by config
	return b
}

func keyer(pc *config.Pool) affinity.Keyer {
	k, _ := affinity.ParseKind(pc.Affinity.Key) // checked by config
	return affinity.Keyer{Kind: k, V4Prefix: pc.Affinity.IPv4Prefix, V6Prefix: pc.Affinity.IPv6Prefix}
}

func specs(pc *config.Pool) []pool.Spec {
	out := make([]pool.Spec, 0, len(pc.Backends))
	for _, name := range sortedKeys(pc.Backends) {
		b := pc.Backends[name]
		out = append(out, pool.Spec{Name: name, Host: b.Address, Weight: b.Weight, MaxConns: b.MaxConns})
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

// rateLimit lets one call through per period and counts the rest.
type rateLimit struct {
	mu      sync.Mutex
	last    time.Time
	skipped int
}

func (r *rateLimit) allow(period time.Duration) (int, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.skipped++
	if time.Since(r.last) < period {
		return 0, false
	}
	n := r.skipped
	r.last, r.skipped = time.Now(), 0
	return n, true
}
