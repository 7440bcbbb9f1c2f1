package cluster

import (
	"time"

	"github.com/stickylb/stickylb/operator"
)

// ShareOperators sends operators' decisions to every other member at
// once; a member that misses them takes them with the next whole table.
func (m *Member) ShareOperators(ops []operator.Decision) {
	m.sendAll(header{sent: time.Now().Unix(), from: m.self, ops: ops})
}

// AskClose asks every other member to close the connections req names,
// and returns how many it asked. A member that is away does not hear it.
func (m *Member) AskClose(req CloseRequest) int {
	return m.sendAll(header{sent: time.Now().Unix(), from: m.self, closes: []CloseRequest{req}})
}

// sendAll sends a message of h alone to every other member, each on its
// own, and returns how many it sends to: none if the message could carry
// none of h's decisions and requests.
func (m *Member) sendAll(h header) int {
	msg, out := encode(kindChanges, h, nil)
	m.noteLeftOut(out)
	if out.decisions+out.closes == len(h.ops)+len(h.closes) {
		return 0
	}
	peers := m.peers()
	for _, n := range peers {
		m.background(func() {
			if err := m.ml.SendReliable(n, msg); err != nil {
				m.stats.SendFailures.Add(1)
			}
		})
	}
	return len(peers)
}
