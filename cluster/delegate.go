package cluster

import (
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/stickylb/stickylb/affinity"
)

// delegate is the Member as memberlist calls it for messages and state.
type delegate Member

func (d *delegate) NodeMeta(int) []byte { return nil }

// NotifyMsg takes a batch of changes, or a goodbye, from another member.
func (d *delegate) NotifyMsg(msg []byte) {
	m := (*Member)(d)
	m.stats.BytesReceived.Add(uint64(len(msg)))
	m.receive(msg)
}

// receive decodes a message of any kind and acts on it; a malformed one
// is counted and logged, never applied.
func (m *Member) receive(msg []byte) {
	kind, entries, err := decode(msg)
	switch {
	case err != nil:
		m.stats.Malformed.Add(1)
		m.log.Warn("cluster: message refused", "error", err, "bytes", len(msg))
	case kind == kindBye:
		m.leaving.Store(entries[0].pool, struct{}{})
	case kind == kindTable:
		m.stats.Syncs.Add(1)
		m.merge(entries)
	default:
		m.merge(entries)
	}
}

// GetBroadcasts: changes go straight to each member (see sendLoop), not
// through memberlist's gossip queue, whose packets hold a few dozen.
func (d *delegate) GetBroadcasts(int, int) [][]byte { return nil }

// LocalState is this member's whole table, for a push/pull.
func (d *delegate) LocalState(bool) []byte {
	m := (*Member)(d)
	var entries []entry
	for name, p := range m.opts.Pools() {
		p.Table.Records(func(r affinity.Record) bool {
			r.HeldUntil = m.holdFor(r)
			entries = append(entries, entry{pool: name, rec: r})
			return true
		})
	}
	msg := encode(kindTable, time.Now().Unix(), entries)
	m.stats.SyncBytesSent.Add(uint64(len(msg)))
	return msg
}

// MergeRemoteState merges another member's whole table.
func (d *delegate) MergeRemoteState(msg []byte, _ bool) {
	m := (*Member)(d)
	m.stats.SyncBytesReceived.Add(uint64(len(msg)))
	m.receive(msg)
}

// holdFor is the hold this member gives a pin it sends: a while past the
// next repeat while it has the client's connections open, else none.
func (m *Member) holdFor(r affinity.Record) int64 {
	if r.Active == 0 {
		return 0
	}
	return time.Now().Add(3 * m.opts.HoldEvery).Unix()
}

// merge applies records from another member to the tables they name.
func (m *Member) merge(entries []entry) {
	pools := m.opts.Pools()
	now := time.Now()
	for _, e := range entries {
		p, ok := pools[e.pool]
		var rec affinity.Record
		if ok && p.Table != nil {
			rec, ok = p.Keyer.Admit(e.rec, p.has)
		}
		if !ok || p.Table == nil {
			m.stats.Unknown.Add(1)
			continue
		}
		m.stats.Received.Add(1)
		res := p.Table.Merge(rec)
		if res.Conflict {
			m.stats.Conflicts.Add(1)
		}
		if res.LeftOpen > 0 {
			m.stats.LeftOpen.Add(uint64(res.LeftOpen))
		}
		if res.Outcome == affinity.Added || res.Outcome == affinity.Moved || res.Outcome == affinity.Dropped {
			m.stats.Applied.Add(1)
			m.stats.observeDelay(now.Sub(affinity.StampTime(e.rec.Version)))
		}
	}
}

// has says whether the pool has backend name.
func (p Table) has(name string) bool { return p.Has == nil || p.Has(name) }

// events is the Member as memberlist tells it of other members.
type events Member

// The events run under memberlist's lock on n: what outlives the call
// is copied (see roster).

func (e *events) NotifyJoin(n *memberlist.Node) {
	m := (*Member)(e)
	if n.Name == m.self {
		return
	}
	m.others.set(n, "alive")
	m.memberEvent(n, "joined")
	node := *n // its sender keeps it
	m.catchUp(&node)
}

func (e *events) NotifyUpdate(n *memberlist.Node) {
	if m := (*Member)(e); n.Name != m.self {
		m.others.set(n, "alive") // a new address or metadata:
		m.dropOutbox(n.Name)     // its next batch starts a sender that has it
	}
}

func (e *events) NotifyLeave(n *memberlist.Node) {
	m := (*Member)(e)
	if n.Name == m.self {
		return
	}
	what := "failed"
	if _, ok := m.leaving.LoadAndDelete(n.Name); ok {
		what = "left"
	}
	m.others.set(n, what)
	m.memberEvent(n, what)
	m.dropOutbox(n.Name)
}

func (m *Member) memberEvent(n *memberlist.Node, what string) {
	if n.Name == m.self {
		return
	}
	m.log.Info("cluster member "+what, "member", n.Name, "addr", n.Address())
	if what == "failed" {
		m.log.Warn("cluster member failed: its clients' pins stay here; its own open connections are gone with it", "member", n.Name, "addr", n.Address())
	}
	if m.opts.OnMember != nil {
		m.opts.OnMember(n.Name, what)
	}
}
