package cluster

import (
	"time"

	"github.com/stickylb/stickylb/locks"

	"github.com/hashicorp/memberlist"

	"github.com/stickylb/stickylb/affinity"
)

const (
	// outQueue bounds the changes waiting to be sent. Past it a change is
	// dropped and counted, never waited for: the connection that made it
	// goes on, and the next sync repairs the others' tables.
	outQueue = 1 << 16
	// batchMax and batchWait bound a batch: a change waits at most
	// batchWait to share a message with others.
	batchMax  = 4096
	batchWait = 5 * time.Millisecond
)

// Note passes a change of pool's table on to the other members. It never
// blocks: the pin decision does not wait for the network.
func (m *Member) Note(pool string, ev affinity.Event) {
	if !ev.Shared() {
		return
	}
	r, _ := ev.Record()
	select {
	case m.out <- entry{pool: pool, rec: r}:
	default:
		m.stats.Dropped.Add(1)
	}
}

// sendLoop gathers changes into batches and sends each to every member.
func (m *Member) sendLoop() {
	batch := make([]entry, 0, batchMax)
	for {
		select {
		case <-m.ctx.Done():
			return
		case e := <-m.out:
			batch = append(batch[:0], e)
		}
		deadline := time.NewTimer(batchWait)
	fill:
		for len(batch) < batchMax {
			select {
			case e := <-m.out:
				batch = append(batch, e)
			case <-deadline.C:
				break fill
			}
		}
		deadline.Stop()
		m.send(batch)
	}
}

// flushNow sends what is queued, for a member about to leave.
func (m *Member) flushNow() {
	var batch []entry
	for {
		select {
		case e := <-m.out:
			batch = append(batch, e)
			continue
		default:
		}
		break
	}
	if len(batch) > 0 {
		m.send(batch)
	}
}

// send encodes a batch once and queues it for each alive member; a
// member that misses it catches up at the next sync (or, if it was
// joining, from the recent changes sent when it is seen).
func (m *Member) send(batch []entry) {
	m.recent.add(batch)
	msg := outMsg{b: m.message(kindChanges, header{sent: time.Now().Unix(), from: m.self}, batch), records: len(batch)}
	for _, n := range m.peers() {
		m.outbox(n).put(m, msg)
	}
}

// outMsg is an encoded batch and the records in it.
type outMsg struct {
	b       []byte
	records int
}

// peerQueue is the batches waiting for one member. Each member has its
// own sender, so one that stopped answering (a partition, before it is
// found failed) delays nobody else's.
type peerQueue struct {
	q    chan outMsg
	done chan struct{}
}

// peerBacklog bounds the batches waiting for one member.
const peerBacklog = 256

func (p *peerQueue) put(m *Member, msg outMsg) {
	select {
	case p.q <- msg:
	default:
		m.stats.Dropped.Add(uint64(msg.records))
	}
}

// outbox returns n's queue, starting its sender if it has none.
func (m *Member) outbox(n *memberlist.Node) *peerQueue {
	m.outMu.Lock()
	defer m.outMu.Unlock()
	if p, ok := m.outboxes[n.Name]; ok {
		return p
	}
	p := &peerQueue{q: make(chan outMsg, peerBacklog), done: make(chan struct{})}
	m.outboxes[n.Name] = p
	m.background(func() { m.deliver(n, p) })
	return p
}

// dropOutbox stops the sender of a member that left or failed.
func (m *Member) dropOutbox(name string) {
	m.outMu.Lock()
	defer m.outMu.Unlock()
	if p, ok := m.outboxes[name]; ok {
		close(p.done)
		delete(m.outboxes, name)
	}
}

func (m *Member) deliver(n *memberlist.Node, p *peerQueue) {
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-p.done:
			return
		case msg := <-p.q:
			if err := m.ml.SendReliable(n, msg.b); err != nil {
				m.stats.SendFailures.Add(1)
				m.log.Debug("cluster: batch not delivered; the next sync repairs it", "member", n.Name, "error", err)
				continue
			}
			m.stats.Sent.Add(uint64(msg.records))
			m.stats.BytesSent.Add(uint64(len(msg.b)))
		}
	}
}

// maintain repeats the pins this member holds connections of, so no
// other member lets them expire, and rejoins configured peers that are
// not members now, which heals a partition.
func (m *Member) maintain() {
	hold := time.NewTicker(m.opts.HoldEvery)
	rejoin := time.NewTicker(m.opts.Config.SyncInterval.Duration)
	defer hold.Stop()
	defer rejoin.Stop()
	since := time.Now().Unix()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-hold.C:
			now := time.Now().Unix()
			m.repeatHeld(since)
			since = now
		case <-rejoin.C:
			if miss := m.missing(); len(miss) > 0 && m.synced.Load() {
				if n, err := m.ml.Join(miss); n > 0 {
					m.log.Info("cluster: rejoined peers", "peers", miss, "reached", n)
				} else {
					m.log.Debug("cluster: peers still unreachable", "peers", miss, "error", err)
				}
			}
		}
	}
}

// repeatHeld sends the pins whose clients have connections open here (with
// a hold) or closed their last one since the previous round (with that
// close), so that every member reckons the TTL from the last close
// anywhere.
func (m *Member) repeatHeld(since int64) {
	var batch []entry
	for _, p := range m.pools() {
		p.Table.Records(func(r affinity.Record) bool {
			if r.Active == 0 && r.LastSeen < since {
				return true
			}
			r.HeldUntil = m.holdFor(r)
			batch = append(batch, entry{pool: p.Name, rec: r})
			if len(batch) == batchMax {
				m.send(batch)
				batch = batch[:0]
			}
			return true
		})
	}
	if len(batch) > 0 {
		m.send(batch)
	}
}

var _ memberlist.Delegate = (*delegate)(nil)
var _ memberlist.EventDelegate = (*events)(nil)

// recentWindow is how far back the changes sent to a member seen joining
// go. A member joins by a whole-table sync with one peer; the others
// learn of it by gossip a moment later, and their changes of that moment
// would otherwise wait for the next sync.
const (
	recentWindow = 10 * time.Second
	recentMax    = 1 << 16
)

// recentChanges remembers the last recentMax changes sent, with when:
// a slice that grows to recentMax and is then a ring, so adding a batch
// costs its own length and never moves the rest.
type recentChanges struct {
	mu   locks.Mutex
	buf  []timedEntry
	next int // once full, the oldest entry, which the next add replaces
}

type timedEntry struct {
	at time.Time
	e  entry
}

func (r *recentChanges) add(batch []entry) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range batch {
		if len(r.buf) < recentMax {
			r.buf = append(r.buf, timedEntry{now, e})
			continue
		}
		r.buf[r.next] = timedEntry{now, e}
		r.next = (r.next + 1) % recentMax
	}
}

// since returns the changes sent at t or later, oldest first.
func (r *recentChanges) since(t time.Time) []entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []entry
	for i := range len(r.buf) {
		if te := r.buf[(r.next+i)%len(r.buf)]; !te.at.Before(t) {
			out = append(out, te.e)
		}
	}
	return out
}

// catchUp queues for a member just seen the changes of the recent window.
func (m *Member) catchUp(n *memberlist.Node) {
	if batch := m.recent.since(time.Now().Add(-recentWindow)); len(batch) > 0 {
		m.outbox(n).put(m, outMsg{b: m.message(kindChanges, header{sent: time.Now().Unix(), from: m.self}, batch), records: len(batch)})
	}
}
