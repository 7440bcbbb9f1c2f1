// Package cluster makes stickylb instances members of one cluster that
// shares every pin. Membership and failure detection are memberlist's
// (the gossip engine of Consul and Nomad); this package adds what rides on
// it: each pin, re-pin and operator unpin is sent to every member as it
// happens, in small batches over TCP; whole tables are exchanged when a
// member joins and every sync interval after, which repairs whatever a
// member missed; and members that hold a client's connections open say so
// now and then, so that no member lets the pin expire early. Where two
// members decided a client differently, the newer decision by a hybrid
// logical clock wins on all of them (affinity.Wins). No member is a
// master: a member that restarts pulls the table back from any other.
package cluster

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stickylb/stickylb/locks"

	"github.com/stickylb/stickylb/operator"

	"github.com/hashicorp/memberlist"

	"github.com/stickylb/stickylb/affinity"
	"github.com/stickylb/stickylb/config"
	"github.com/stickylb/stickylb/throttle"
)

// Options set a member up.
type Options struct {
	Config config.Cluster
	// Pins are the pools' pins as the server publishes them; the member
	// shares those of the pools that keep pins.
	Pins *affinity.Latest
	// HoldEvery is how often a member repeats the pins it holds
	// connections of; default a minute. Set it well below the shortest
	// affinity TTL.
	HoldEvery time.Duration
	Log       *slog.Logger
	// OnMember, if set, hears of members joining, leaving and failing.
	OnMember func(name, what string)
	// Decisions, if set, are the operators' decisions about backends
	// this member holds: sent with its whole table, and given the other
	// members' (Merge), their times on this member's clock.
	Decisions *operator.Decisions
	// OnClose, if set, hears another member's request to close
	// connections.
	OnClose func(req CloseRequest, from string)
	// OnViews, if set, hears that what another member published (its
	// backends, its decisions) may have changed.
	OnViews func()
}

// Member is this instance's place in the cluster.
type Member struct {
	opts     Options
	log      *slog.Logger
	ml       *memberlist.Memberlist
	self     string
	seeds    []string
	out      chan entry
	recent   recentChanges
	stats    Stats
	others   roster // the other members, as events report them, and what is kept of each
	selfAddr string
	outMu    locks.Mutex
	outboxes map[string]*peerQueue // by member name

	synced    atomic.Bool
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	leaveOnce sync.Once
	bgMu      locks.Mutex // orders background against stop
	stopped   bool
	bridge    *logBridge
	keyring   *memberlist.Keyring // nil without a secret file
	futureLog throttle.Log
	// Each member's share (in the roster) bounds its messages, so one
	// member, even with the key, cannot spend all of this one's CPU;
	// senders the roster does not know share strangers.
	strangers   strangers
	throttleLog throttle.Log
	strangerLog throttle.Log
	leftOutLog  throttle.Log
	viewsLog    throttle.Log
}

// background runs f on its own goroutine unless the member is stopping;
// stop waits for it.
func (m *Member) background(f func()) {
	m.bgMu.Lock()
	defer m.bgMu.Unlock()
	if m.stopped {
		return
	}
	m.wg.Go(f)
}

// stop ends the member's goroutines, then memberlist.
func (m *Member) stop() {
	m.bgMu.Lock()
	m.stopped = true
	m.bgMu.Unlock()
	m.cancel()
	m.wg.Wait()
	m.bridge.stopping.Store(true)
	m.ml.Shutdown()
}

// Start binds the cluster address and starts the member; it joins nobody
// until Join.
func Start(opts Options) (*Member, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.HoldEvery <= 0 {
		opts.HoldEvery = time.Minute
	}
	m := &Member{opts: opts, log: opts.Log, self: opts.Config.Name(), out: make(chan entry, outQueue),
		outboxes: map[string]*peerQueue{}}
	if len(m.self) > config.MaxName { // check refuses such a node_name; a host name is shorter
		return nil, fmt.Errorf("cluster: member name %.64q... is %d bytes; give cluster.node_name of %d at most", m.self, len(m.self), config.MaxName)
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	mc, err := m.memberlistConfig()
	if err != nil {
		return nil, err
	}
	if m.ml, err = memberlist.Create(mc); err != nil {
		mc.Transport.Shutdown()
		return nil, fmt.Errorf("cluster: cannot start on %s: %w", opts.Config.Bind, err)
	}
	m.selfAddr = m.ml.LocalNode().Address() // read once: memberlist owns the node
	m.seeds = m.otherSeeds()
	m.background(m.sendLoop)
	m.background(m.maintain)
	m.log.Info("cluster member started", "member", m.self, "bind", opts.Config.Bind, "peers", opts.Config.Peers)
	return m, nil
}

func (m *Member) memberlistConfig() (*memberlist.Config, error) {
	c := m.opts.Config
	bind := c.BindAddr
	mc := memberlist.DefaultLANConfig()
	if bind.Addr().IsLoopback() {
		mc = memberlist.DefaultLocalConfig()
	}
	mc.Name = m.self
	// A whole-table sync must finish within it: at a million pins that
	// takes about a second to encode and merge (BenchmarkJoin), beyond
	// the loopback config's 1s.
	mc.TCPTimeout = max(mc.TCPTimeout, 10*time.Second)
	mc.BindAddr, mc.BindPort = bind.Addr().String(), int(bind.Port())
	mc.AdvertiseAddr, mc.AdvertisePort = c.AdvertiseAddr.Addr().String(), int(c.AdvertiseAddr.Port())
	if len(c.Keys) > 0 {
		kr, err := memberlist.NewKeyring(c.Keys, c.Keys[0])
		if err != nil {
			return nil, fmt.Errorf("cluster keyring: %w", err)
		}
		mc.Keyring, m.keyring = kr, kr
	}
	mc.PushPullInterval = c.SyncInterval.Duration
	// Tables are compressed by this package; compressing again costs
	// time and saves nothing.
	mc.EnableCompression = false
	mc.Delegate = (*delegate)(m)
	mc.Events = (*events)(m)
	m.bridge = &logBridge{log: m.log}
	mc.Logger = log.New(m.bridge, "", 0)
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{mc.BindAddr}, BindPort: mc.BindPort, Logger: mc.Logger})
	if err != nil {
		return nil, fmt.Errorf("cluster: cannot listen on %s (is another process on that port?): %w", c.Bind, err)
	}
	mc.Transport = newBoundedTransport(nt, &m.stats.StreamsRefused)
	return mc, nil
}

// otherSeeds are the configured peers but this member's own address.
func (m *Member) otherSeeds() []string {
	self := m.ml.LocalNode().FullAddress().Addr
	var out []string
	for _, p := range m.opts.Config.Peers {
		if p != self && p != m.opts.Config.Bind && p != m.opts.Config.Advertise {
			out = append(out, p)
		}
	}
	return out
}

// Join joins the configured peers and waits for a whole table from one of
// them, until ctx ends. It reports whether this member is in sync: true
// also when it lists no peer but itself (it is the first). Past ctx, it
// serves with the pins it has, and says so.
func (m *Member) Join(ctx context.Context) bool {
	if len(m.seeds) == 0 {
		m.log.Warn("cluster: no peer listed but this member; it waits for others to join it", "member", m.self)
		m.synced.Store(true)
		return true
	}
	for {
		// memberlist's Join tries the seeds one after another, each for
		// up to TCPTimeout (10s, which a million-pin table needs): seeds
		// that accept and never answer held a start for 20s whatever
		// sync_timeout said. The attempt runs on its own and is waited
		// for only until ctx ends; one left behind ends within
		// TCPTimeout.
		joined := make(chan bool, 1)
		go func() { n, _ := m.ml.Join(m.seeds); joined <- n > 0 && m.ml.NumMembers() > 1 }()
		select {
		case ok := <-joined:
			if ok {
				m.synced.Store(true)
				m.log.Info("cluster: joined and took the pins of its peers", "member", m.self, "members", m.ml.NumMembers())
				return true
			}
		case <-ctx.Done():
		}
		select {
		case <-ctx.Done():
			m.log.Warn("cluster: no peer answered within sync_timeout; serving with the pins this member has, which may move some clients",
				"member", m.self, "peers", m.seeds)
			m.synced.Store(true)
			return false
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// AssumeSynced marks the first sync over without waiting for one, for a
// member whose pins are already whole: a process that serves on after a
// failed hand-over. Join still joins and takes the peers' pins.
func (m *Member) AssumeSynced() { m.synced.Store(true) }

// Synced says whether the first sync is over (or was given up on).
func (m *Member) Synced() bool { return m.synced.Load() }

// Name is this member's name.
func (m *Member) Name() string { return m.self }

// MemberInfo is one member as ctl and the admin API show it.
type MemberInfo struct {
	Name  string `json:"name"`
	Addr  string `json:"addr"`
	State string `json:"state"`
	Self  bool   `json:"self"`
	// ClockOffset is how far the member's clock is ahead of this one's
	// (behind when negative), in seconds, as its last message said; 0
	// before any.
	ClockOffset int64 `json:"clock_offset_seconds"`
	// Decisions is how many operators' decisions about backends the
	// member holds, and Differ how many of this member's it does not
	// hold alike (not heard yet, or a newer one).
	Decisions int `json:"decisions"`
	Differ    int `json:"decisions_differ"`
	// Lacks lists this member's backends (POOL/BACKEND) the member does
	// not have: their configs differ, as in the middle of a rolling
	// change; those backends take no new clients meanwhile.
	Lacks []string `json:"lacks,omitempty"`

	meta []byte // its published decisions and backends
}

// Members lists this member, then every other it has known, alive,
// failed or left, in name order.
func (m *Member) Members() []MemberInfo {
	mine := m.decisions()
	others := m.others.infos()
	for i := range others {
		v := decodeViews(others[i].meta)
		others[i].Decisions = len(v.decisions)
		for _, op := range mine {
			if v.decisions[decisionID(op.Pool, op.Backend)] != op.Version {
				others[i].Differ++
			}
		}
		others[i].Lacks = m.lacks(v)
	}
	self := MemberInfo{Name: m.self, Addr: m.selfAddr, State: "alive", Self: true, Decisions: len(mine)}
	return append([]MemberInfo{self}, others...)
}

// Leave tells the others this member is going, so that they do not wait
// to find it failed, and stops it.
//
// Every peer that took the goodbye knows already, so memberlist's own
// leave broadcast then gets only a short grace: peers that stop at the
// same moment (a whole-cluster stop) can no longer carry it, and waiting
// the full timeout for them made every such stop take 5 s.
func (m *Member) Leave(timeout time.Duration) {
	m.leaveOnce.Do(func() {
		m.flushNow()
		told := m.sayBye(timeout)
		wait := timeout
		if told {
			wait = min(timeout, leaveGrace)
		}
		if err := m.ml.Leave(wait); err != nil && !told {
			m.log.Warn("cluster: leave not acknowledged", "error", err)
		}
		m.stop()
	})
}

// leaveGrace is how long a leaving member lets memberlist gossip its
// leave once every peer took its goodbye: a few gossip intervals.
const leaveGrace = 500 * time.Millisecond

// peers returns the other alive members, as copies.
func (m *Member) peers() []*memberlist.Node { return m.others.alive() }

// missing returns the seeds that are no alive member's address, for the
// rejoin that heals a partition.
func (m *Member) missing() []string {
	alive := map[string]bool{}
	for _, n := range m.peers() {
		alive[n.Address()] = true
	}
	var out []string
	for _, s := range m.seeds {
		if !slices.ContainsFunc(addressesOf(s), func(a string) bool { return alive[a] }) {
			out = append(out, s)
		}
	}
	return out
}

// addressesOf is a seed's address as memberlist writes members', or, for
// a host name, each address it resolves to now (none if it does not).
// Without resolving, a seed given by name never matches a member and is
// rejoined at every interval.
func addressesOf(seed string) []string {
	host, port, err := net.SplitHostPort(seed)
	if err != nil {
		return nil
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return []string{canonical(seed)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ips, _ := net.DefaultResolver.LookupHost(ctx, host)
	out := make([]string, 0, len(ips))
	for _, ip := range ips {
		out = append(out, canonical(net.JoinHostPort(ip, port)))
	}
	return out
}

// canonical writes host:port as memberlist does, so they compare.
func canonical(hostport string) string {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return hostport
	}
	if a, err := netip.ParseAddr(host); err == nil {
		n, _ := strconv.Atoi(port)
		return netip.AddrPortFrom(a, uint16(n)).String()
	}
	return hostport
}

// Halt stops the member without telling the others, as a crash would:
// they find it failed. For tests, and for a process that must exit now.
func (m *Member) Halt() {
	m.leaveOnce.Do(m.stop)
}

// sayBye tells every member this one leaves on purpose, so they log a
// leave and not a failure.
// It reports whether every peer took it within timeout.
func (m *Member) sayBye(timeout time.Duration) bool {
	msg := append([]byte{wireVersion, kindBye}, m.self...)
	var wg sync.WaitGroup
	var failed atomic.Bool
	for _, n := range m.peers() {
		wg.Go(func() {
			if m.ml.SendReliable(n, msg) != nil {
				failed.Store(true)
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return !failed.Load()
	case <-time.After(timeout):
		return false
	}
}

// lacks lists this member's backends that v does not have.
func (m *Member) lacks(v view) []string {
	if v.backends == nil {
		return nil
	}
	var out []string
	for _, p := range m.pools() {
		if p.Backends == nil {
			continue
		}
		for _, b := range p.Backends {
			if !v.backends[decisionID(p.Name, b)] {
				out = append(out, p.Name+"/"+b)
			}
		}
	}
	slices.Sort(out)
	return out
}

// decisions are the operators' decisions this member holds; none without.
func (m *Member) decisions() []operator.Decision {
	if m.opts.Decisions == nil {
		return nil
	}
	return m.opts.Decisions.All()
}

// pools are the published pools that keep pins.
func (m *Member) pools() []affinity.Pins {
	if m.opts.Pins == nil {
		return nil
	}
	return m.opts.Pins.Kept()
}
