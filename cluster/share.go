package cluster

import (
	"sync"

	"golang.org/x/time/rate"
)

// share is one member's allowance of messages.
type share struct{ changes, tables *rate.Limiter }

// A member sends a batch at most every 5 ms to each other (200 a second)
// and a whole table every sync_interval; these allow ten times that.
const (
	changesPerSecond = 2000
	tablesPerSecond  = 2
)

func newShare() *share {
	return &share{changes: rate.NewLimiter(changesPerSecond, 2*changesPerSecond), tables: rate.NewLimiter(tablesPerSecond, 5)}
}

// strangers is the one allowance of every sender no alive member of the
// roster goes by: a member just joining, whose gossip has not reached
// this one yet, or names made up. Made-up names share it rather than
// each getting one, so that no name costs memory here.
type strangers struct {
	once sync.Once
	s    *share
}

func (st *strangers) share() *share {
	st.once.Do(func() { st.s = newShare() })
	return st.s
}

// allow says whether a message of kind from member fits its share.
func (m *Member) allow(from string, kind byte) bool {
	s := m.others.share(from, newShare)
	if s == nil {
		s = m.strangers.share()
	}
	if kind == kindTable {
		return s.tables.Allow()
	}
	return s.changes.Allow()
}
