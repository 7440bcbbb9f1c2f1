package cluster

import (
	"encoding/binary"
	"hash/fnv"
	"time"

	"github.com/stickylb/stickylb/config"
)

// Each member publishes, in its memberlist metadata, the stamp of every
// operator's decision it holds (a 4-byte hash of pool and backend, then
// the 8-byte stamp), so that any member can say which others hold the
// decision it holds, have not heard of it yet, or hold a newer one:
// `ctl backends` and `ctl members` show it.

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

// encodeViews writes ops as metadata, at most limit bytes.
func encodeViews(ops []config.Operator, limit int) []byte {
	var b []byte
	for _, op := range ops {
		if len(b)+metaEntry > limit {
			break
		}
		b = binary.BigEndian.AppendUint32(b, decisionID(op.Pool, op.Backend))
		b = binary.BigEndian.AppendUint64(b, op.Version)
	}
	return b
}

// decodeViews reads what encodeViews wrote.
func decodeViews(meta []byte) map[uint32]uint64 {
	out := map[uint32]uint64{}
	for ; len(meta) >= metaEntry; meta = meta[metaEntry:] {
		out[binary.BigEndian.Uint32(meta)] = binary.BigEndian.Uint64(meta[4:])
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
func (m *Member) Agree(op config.Operator) Agreement {
	var a Agreement
	id := decisionID(op.Pool, op.Backend)
	for _, n := range m.peers() {
		v := decodeViews(n.Meta)[id]
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
