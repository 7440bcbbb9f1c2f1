// Package event is the one stream of what happens in a running balancer:
// pin changes, health check results, backends going up and down, backends
// ejected as outliers and back, cluster members coming and going,
// operators' decisions, connections closed on request. The server, the
// operators' decisions and the admin API publish to one Stream; metrics and the admin API's list of recent
// changes subscribe to it. Subscribers are called in order on the
// publisher's goroutine, with no lock of the publisher's held, and must
// return quickly: a pin event is published on the connection path.
//
// A subscriber that comes late (the admin API is built after the server,
// which reports cluster members from its first moment) is first given
// the notable events kept so far (every kind but pins and check results,
// the last Keep of them), so nothing an operator should see is lost.
package event

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stickylb/stickylb/affinity"
)

// Kind says what an Event is about.
type Kind uint8

const (
	Pin      Kind = iota // a change to a pool's pins (Pin)
	Check                // one health check's result (Err, Took)
	Health               // a backend went up or down (Up, Err)
	Member               // a cluster member joined, left or failed (Member, What)
	Decision             // an operator's decision: at this member's API, at another member, or a drain's deadline (What)
	Closed               // connections closed by an operator, here or at another member (What)
	Config               // the config was reloaded (What)
	Outlier              // a backend ejected as an outlier (Up false), or back to taking new clients (Up true) (What)
)

var kindNames = [...]string{Pin: "pin", Check: "check", Health: "health", Member: "member", Decision: "decision", Closed: "closed", Config: "config", Outlier: "outlier"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Event is one thing that happened. Only the fields its Kind names are
// set; What is a sentence for people, for every kind but Pin and Check.
type Event struct {
	Time          time.Time
	Kind          Kind
	Pool, Backend string
	Member        string
	Up            bool
	Err           error
	Took          time.Duration
	Pin           affinity.Event
	What          string
}

// notable says whether e is kept for late subscribers.
func (e Event) notable() bool { return e.Kind != Pin && e.Kind != Check }

// Keep is how many notable events a Stream keeps for late subscribers.
const Keep = 256

// Stream fans events out to its subscribers. The zero Stream is ready;
// a nil *Stream takes every event and tells nobody.
type Stream struct {
	subs atomic.Pointer[[]func(Event)]
	mu   sync.Mutex // orders notable events against Subscribe; guards kept
	kept []Event
}

// Subscribe adds f, which first hears the notable events kept so far,
// then every event published from then on.
func (s *Stream) Subscribe(f func(Event)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.kept {
		f(e)
	}
	var subs []func(Event)
	if p := s.subs.Load(); p != nil {
		subs = append(subs, *p...)
	}
	subs = append(subs, f)
	s.subs.Store(&subs)
}

// Publish tells every subscriber of e, stamping its Time if unset. A pin
// or check event takes no lock: it is published on the connection and
// checker paths.
func (s *Stream) Publish(e Event) {
	if s == nil {
		return
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	if !e.notable() {
		s.tell(e)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.kept = append(s.kept, e)
	if len(s.kept) > Keep {
		s.kept = append(s.kept[:0], s.kept[len(s.kept)-Keep:]...)
	}
	s.tell(e)
}

func (s *Stream) tell(e Event) {
	if p := s.subs.Load(); p != nil {
		for _, f := range *p {
			f(e)
		}
	}
}
