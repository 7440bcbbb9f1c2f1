package cluster

import "golang.org/x/time/rate"

// share is one member's allowance of messages.
type share struct{ changes, tables *rate.Limiter }

// A member sends a batch at most every 5 ms to each other (200 a second)
// and a whole table every sync_interval; these allow ten times that.
const (
	changesPerSecond = 2000
	tablesPerSecond  = 2
)

// allow says whether a message of kind from member fits its share.
func (m *Member) allow(from string, kind byte) bool {
	m.sharesMu.Lock()
	defer m.sharesMu.Unlock()
	if m.shares == nil {
		m.shares = map[string]*share{}
	}
	s := m.shares[from]
	if s == nil && len(m.shares) >= maxShares {
		// Names are the members' own; a flood of invented names shares
		// one allowance rather than growing the map.
		from = "\x00many"
		s = m.shares[from]
	}
	if s == nil {
		s = &share{changes: rate.NewLimiter(changesPerSecond, 2*changesPerSecond), tables: rate.NewLimiter(tablesPerSecond, 5)}
		m.shares[from] = s
	}
	if kind == kindTable {
		return s.tables.Allow()
	}
	return s.changes.Allow()
}

// maxShares bounds the members tracked by name.
const maxShares = 1024
