package cluster

import (
	"encoding/binary"
	"hash/fnv"
	"time"

	"github.com/stickylb/stickylb/operator"
)

// Each member publishes, in its memberlist metadata, the stamp of every
// operator's decision it holds (a 4-byte hash of pool and backend, then
// the 8-byte stamp), so that any member can say which others hold the
// decision it holds, have not heard of it yet, or hold a newer one
// (`ctl backends`, `ctl members`); and the backends it has (their
// hashes), so that a backend one member has and another lacks, in the
// middle of a rolling change, is known to both.
//
// Layout: a count of decisions (2 bytes), the decisions (12 bytes each),
// then the backend hashes (4 bytes each) to the end.

// metaEntry is one decision in the metadata.
const metaEntry = 12

// decisionID names a backend in the metadata.
func decisionID(pool, backend string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(pool))
	h.Write([]byte{0})
	h.Write([]byte(backend))
	return h.Sum32()
}

// view is what a member published.
type view struct {
	decisions map[uint32]uint64
	backends  map[uint32]bool // nil: not published (an earlier release)
}

// encodeViews writes ops and backends (pool -> names) as metadata, at
// most limit bytes, and says how many of either it left out. The
// backends go all or none: a list cut short would tell the others this
// member lacks the backends past the cut, which then take no new client
// anywhere (see Lacking); none (empty metadata, as from an earlier
// release) claims nothing. Decisions, which only ctl shows, give way to
// them.
func encodeViews(ops []operator.Decision, backends map[string][]string, limit int) ([]byte, int) {
	nb := 0
	for _, names := range backends {
		nb += len(names)
	}
	if 2+4*nb > limit {
		return nil, len(ops) + nb
	}
	keep := min(len(ops), (limit-2-4*nb)/metaEntry)
	b := make([]byte, 2, 2+metaEntry*keep+4*nb)
	binary.BigEndian.PutUint16(b, uint16(keep))
	for _, op := range ops[:keep] {
		b = binary.BigEndian.AppendUint32(b, decisionID(op.Pool, op.Backend))
		b = binary.BigEndian.AppendUint64(b, op.Version)
	}
	for pool, names := range backends {
		for _, name := range names {
			b = binary.BigEndian.AppendUint32(b, decisionID(pool, name))
		}
	}
	return b, len(ops) - keep
}

// decodeViews reads what encodeViews wrote; it never panics.
func decodeViews(meta []byte) view {
	v := view{decisions: map[uint32]uint64{}}
	if len(meta) < 2 {
		return v
	}
	n := int(binary.BigEndian.Uint16(meta))
	meta = meta[2:]
	for ; n > 0 && len(meta) >= metaEntry; n-- {
		v.decisions[binary.BigEndian.Uint32(meta)] = binary.BigEndian.Uint64(meta[4:])
		meta = meta[metaEntry:]
	}
	v.backends = map[uint32]bool{}
	for ; len(meta) >= 4; meta = meta[4:] {
		v.backends[binary.BigEndian.Uint32(meta)] = true
	}
	return v
}

// Lacking names the alive members that do not have backend in pool:
// while one does, the backend takes no new clients anywhere, so that no
// member pins a client to a backend another would move it off.
func (m *Member) Lacking(pool, backend string) []string {
	id := decisionID(pool, backend)
	var out []string
	for _, n := range m.peers() {
		if v := decodeViews(n.Meta); v.backends != nil && !v.backends[id] {
			out = append(out, n.Name)
		}
	}
	return out
}

// Agreement says, for a decision this member holds, which alive members
// hold the same, which have not heard of it yet, and which hold a newer
// one, by their names.
type Agreement struct {
	Same, NotYet, Newer []string
}

// Agree compares op with what every other alive member published.
func (m *Member) Agree(op operator.Decision) Agreement {
	var a Agreement
	id := decisionID(op.Pool, op.Backend)
	for _, n := range m.peers() {
		v := decodeViews(n.Meta).decisions[id]
		switch {
		case v == op.Version:
			a.Same = append(a.Same, n.Name)
		case v < op.Version:
			a.NotYet = append(a.NotYet, n.Name)
		default:
			a.Newer = append(a.Newer, n.Name)
		}
	}
	return a
}

// PublishDecisions updates this member's metadata after a decision
// changed here; the others see it within a gossip round or two.
func (m *Member) PublishDecisions() {
	m.background(func() { m.ml.UpdateNode(5 * time.Second) })
}
