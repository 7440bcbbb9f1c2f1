package cluster

import "github.com/stickylb/stickylb/config"

// The config refuses, with a cluster, names longer than config.MaxName
// (as JSON writes them), so that every record, decision and close
// request of a valid config fits the wire: this fails to compile if the
// longest text config lets through, with its mark, outgrows a string
// table entry.
var _ [maxNameLen - 1 - config.MaxWireText]struct{}

// message encodes a message, counting and logging what it leaves out.
func (m *Member) message(kind byte, h header, entries []entry) []byte {
	msg, out := encode(kind, h, entries)
	m.noteLeftOut(out)
	return msg
}

// noteLeftOut counts and logs what a message could not carry.
func (m *Member) noteLeftOut(out leftOut) {
	n := out.count()
	if n == 0 {
		return
	}
	m.stats.LeftOut.Add(uint64(n))
	m.leftOutLog.Do(func(messages int) {
		m.log.Warn("cluster: names or operators' decisions longer than a cluster message carries were left out of it; keep pool, backend and node names to 64 bytes (stickylb check says which)",
			"records", out.records, "decisions", out.decisions, "closes", out.closes, "sender_name", out.sender,
			"example", clip(out.example), "messages", messages, "note", m.leftOutLog.Note())
	})
}
