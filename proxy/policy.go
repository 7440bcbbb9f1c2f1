//go:build linux

package proxy

import (
	"errors"
	"fmt"

	"github.com/stickylb/stickylb/affinity"
	"github.com/stickylb/stickylb/pool"
)

// Policy is the pin rule, stickylb's core: a client stays on its backend
// while that backend keeps pinned clients (up, not in maintenance, still
// configured; draining keeps them), goes home when failback allows, and
// otherwise is re-pinned with the reason or, with Reject, refused.
type Policy struct {
	// Reject refuses a pinned client whose backend is down or failed
	// the connect, instead of re-pinning it (on_down = "reject"). The pin
	// stays, so the client returns to its backend once it is back.
	Reject bool
	// Failback sends a client that was moved off its backend back there
	// at its next connection with nothing open, once the backend takes
	// new clients again.
	Failback bool
}

var (
	// ErrNoBackend means no backend of the pool could take the client.
	ErrNoBackend = errors.New("no backend can take the client: every backend is down, draining, in maintenance or refused")
	// ErrRejected means the client's backend cannot take it and the
	// policy refuses rather than moves it.
	ErrRejected = errors.New("on_down is reject")
)

// Failure is a backend that failed to connect for this connection, and
// how.
type Failure struct {
	Backend *pool.Backend
	Why     DialFailure
}

// Place returns the backend for a connection of a client whose pin is
// cur (cur.Backend is "" with no pin) and why the pin moves ("" when it
// stays or is new). keyHash is the client key's hash, for balancing;
// failed are the backends this connection failed to reach already. A pin
// moved off a backend that failed to connect gives the failure as its
// reason (refused, timeout, unreachable, ...).
func (p Policy) Place(pl *pool.Pool, cur affinity.Current, keyHash uint64, failed []Failure) (*pool.Backend, affinity.RepinReason, error) {
	skip := func(b *pool.Backend) bool { return failedWith(failed, b) != "" }
	var why affinity.RepinReason
	if cur.Backend != "" {
		b := pl.Backend(cur.Backend)
		switch {
		case b == nil:
			why = affinity.RepinRemoved
		case skip(b):
			why = affinity.RepinReason(failedWith(failed, b))
		default:
			var keeps bool
			if keeps, why = b.KeepsPinned(); keeps {
				if home := p.home(pl, cur, skip); home != nil {
					return home, affinity.RepinFailback, nil
				}
				return b, "", nil
			}
		}
		if p.Reject && why != affinity.RepinRemoved && why != affinity.RepinMaint {
			return nil, "", fmt.Errorf("pinned backend %s is %s: %w", cur.Backend, why, ErrRejected)
		}
	}
	chosen := pl.Choose(keyHash, skip)
	if chosen == nil {
		return nil, "", fmt.Errorf("pool %s: %w", pl.Name, ErrNoBackend)
	}
	return chosen, why, nil
}

// failedWith returns how b failed for this connection, or "" if it did
// not.
func failedWith(failed []Failure, b *pool.Backend) DialFailure {
	for _, f := range failed {
		if f.Backend == b {
			return f.Why
		}
	}
	return ""
}

// home returns the backend a client was moved off, when failback may send
// it there now: it has nothing open and home takes new clients.
func (p Policy) home(pl *pool.Pool, cur affinity.Current, skip func(*pool.Backend) bool) *pool.Backend {
	if !p.Failback || cur.Home == "" || cur.Active != 0 {
		return nil
	}
	if h := pl.Backend(cur.Home); h != nil && h.TakesNew() && !skip(h) {
		return h
	}
	return nil
}
