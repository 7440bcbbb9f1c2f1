package cluster

import (
	"strconv"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/stickylb/stickylb/affinity"
)

// delegate is the Member as memberlist calls it for messages and state.
type delegate Member

func (d *delegate) NodeMeta(limit int) []byte {
	m := (*Member)(d)
	ops := m.decisions()
	backends := map[string][]string{}
	for _, p := range m.pools() {
		if p.Backends != nil {
			backends[p.Name] = p.Backends
		}
	}
	meta, left := encodeViews(ops, backends, limit)
	if left > 0 {
		m.stats.LeftOut.Add(uint64(left))
		m.viewsLog.Do(func(n int) {
			m.log.Warn("cluster: this member's decisions and backends do not all fit the metadata it publishes: the others' ctl shows those decisions as not heard of; with backends left out, no member can tell which this one has",
				"left_out", left, "decisions", len(ops), "limit_bytes", limit, "times", n, "note", m.viewsLog.Note())
		})
	}
	return meta
}

// NotifyMsg takes a batch of changes, or a goodbye, from another member.
func (d *delegate) NotifyMsg(msg []byte) {
	m := (*Member)(d)
	m.stats.BytesReceived.Add(uint64(len(msg)))
	m.receive(msg)
}

// receive decodes a message of any kind and acts on it; a malformed one
// is counted and logged, never applied.
func (m *Member) receive(msg []byte) {
	pins := 0
	for _, p := range m.pools() {
		pins += p.Table.Cap()
	}
	kind, h, entries, err := decode(msg, maxTable(pins))
	switch {
	case err != nil:
		m.stats.Malformed.Add(1)
		m.log.Warn("cluster: message refused", "error", err, "bytes", len(msg))
	case kind == kindBye:
		if !m.others.heardBye(h.from) {
			m.fromStranger(h.from, kind)
		}
	case !m.allow(h.from, kind):
		m.stats.Throttled.Add(1)
		m.throttleLog.Do(func(n int) {
			m.log.Warn("cluster: a member sends more than its share: its messages are dropped until it slows down", "member", clip(h.from), "messages", n, "note", m.throttleLog.Note())
		})
	default:
		if kind == kindTable {
			m.stats.Syncs.Add(1)
		}
		m.noteClock(kind, h)
		m.merge(m.onOwnClock(h, entries))
		m.mergeOperators(h)
		if m.opts.OnClose != nil {
			for _, c := range h.closes {
				m.opts.OnClose(c, h.from)
			}
		}
	}
}

// noteClock keeps the sender's clock offset, for ctl members, if the
// roster knows the sender; a message of an earlier release names none.
func (m *Member) noteClock(kind byte, h header) {
	if h.from == "" || h.from == m.self {
		return
	}
	if !m.others.noteClock(h.from, h.sent-time.Now().Unix()) {
		m.fromStranger(h.from, kind)
	}
}

// fromStranger counts and logs a message whose sender no member in the
// roster goes by: nothing is kept for it (a goodbye is ignored, a clock
// not noted; its records are taken as any member's). A member just
// joining, whose gossip has not reached this one yet, is one for a
// moment; a steady flow is a member with the key making names up.
func (m *Member) fromStranger(from string, kind byte) {
	m.stats.Strangers.Add(1)
	m.strangerLog.Do(func(n int) {
		m.log.Warn("cluster: messages from a sender no member goes by: nothing is kept for it (its goodbye is ignored); if this persists, a member with the key is making names up",
			"sender", clip(from), "kind", string(rune(kind)), "messages", n, "note", m.strangerLog.Note())
	})
}

// clip shortens a name another member chose for a log line.
func clip(s string) string {
	const most = 64
	if len(s) <= most {
		return strconv.Quote(s)
	}
	return strconv.Quote(s[:most]) + "..."
}

// mergeOperators passes the operators' decisions a message carries on,
// their drain deadlines on this member's clock; one stamped far in the
// future is refused as a pin record would be.
func (m *Member) mergeOperators(h header) {
	if len(h.ops) == 0 || m.opts.Decisions == nil {
		return
	}
	shift := time.Now().Unix() - h.sent
	limit := time.Now().Add(maxClockOffset)
	ops := h.ops[:0]
	for _, op := range h.ops {
		if affinity.StampTime(op.Version).After(limit) {
			m.stats.Future.Add(1)
			continue
		}
		if op.DrainUntil != 0 {
			op.DrainUntil += shift * 1000 // milliseconds
		}
		ops = append(ops, op)
	}
	if m.opts.Decisions.Merge(ops, h.from) {
		m.PublishDecisions()
	}
}

// maxClockOffset is how far ahead of this member's clock a record's
// stamp may be. Stamps order decisions, so one from a clock far ahead
// would win every conflict, outlive every unpin and drag this member's
// clock along; such records are refused. A minute is far beyond what NTP
// leaves between servers, and far below the harm.
const maxClockOffset = time.Minute

// onOwnClock turns the times of a message's records (made, last seen,
// held until) from the sender's clock to this member's, so that holds
// and expiry run on one clock whatever the sender's says.
func (m *Member) onOwnClock(h header, entries []entry) []entry {
	shift := time.Now().Unix() - h.sent
	for i := range entries {
		r := &entries[i].rec
		r.Created += shift
		if r.LastSeen != 0 {
			r.LastSeen += shift
		}
		if r.HeldUntil != 0 {
			r.HeldUntil += shift
		}
	}
	return entries
}

// GetBroadcasts: changes go straight to each member (see sendLoop), not
// through memberlist's gossip queue, whose packets hold a few dozen.
func (d *delegate) GetBroadcasts(int, int) [][]byte { return nil }

// LocalState is this member's whole table, for a push/pull.
func (d *delegate) LocalState(bool) []byte {
	m := (*Member)(d)
	var entries []entry
	for _, p := range m.pools() {
		p.Table.Records(func(r affinity.Record) bool {
			r.HeldUntil = m.holdFor(r)
			entries = append(entries, entry{pool: p.Name, rec: r})
			return true
		})
	}
	h := header{sent: time.Now().Unix(), from: m.self}
	h.ops = m.decisions()
	msg := m.message(kindTable, h, entries)
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
	now := time.Now()
	for _, e := range entries {
		if ahead := affinity.StampTime(e.rec.Version).Sub(now); ahead > maxClockOffset {
			m.stats.Future.Add(1)
			m.futureLog.Do(func(n int) {
				m.log.Warn("cluster: records stamped in the future refused: a member's clock is ahead of this one's (ctl members shows whose); fix its time (NTP)",
					"ahead", ahead.Round(time.Second).String(), "records", n, "note", m.futureLog.Note())
			})
			continue
		}
		p, ok := m.opts.Pins.Named(e.pool)
		var rec affinity.Record
		if ok && p.Table != nil {
			rec, ok = p.Keyer.Admit(e.rec, p.Has)
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

// events is the Member as memberlist tells it of other members.
type events Member

// The events run under memberlist's lock on n: what outlives the call
// is copied (see roster).

func (e *events) NotifyJoin(n *memberlist.Node) {
	m := (*Member)(e)
	if n.Name == m.self {
		return
	}
	m.others.set(n)
	m.memberEvent(n, "joined")
	node := *n // its sender keeps it
	m.catchUp(&node)
}

func (e *events) NotifyUpdate(n *memberlist.Node) {
	if m := (*Member)(e); n.Name != m.self {
		m.others.set(n)      // a new address or metadata:
		m.dropOutbox(n.Name) // its next batch starts a sender that has it
		if m.opts.OnViews != nil {
			m.opts.OnViews()
		}
	}
}

func (e *events) NotifyLeave(n *memberlist.Node) {
	m := (*Member)(e)
	if n.Name == m.self {
		return
	}
	what := m.others.depart(n)
	m.memberEvent(n, what)
	m.dropOutbox(n.Name)
}

func (m *Member) memberEvent(n *memberlist.Node, what string) {
	if n.Name == m.self {
		return
	}
	if m.opts.OnViews != nil {
		defer m.opts.OnViews()
	}
	m.log.Info("cluster member "+what, "member", n.Name, "addr", n.Address())
	if what == "failed" {
		m.log.Warn("cluster member failed: its clients' pins stay here; its own open connections are gone with it", "member", n.Name, "addr", n.Address())
	}
	if m.opts.OnMember != nil {
		m.opts.OnMember(n.Name, what)
	}
}
