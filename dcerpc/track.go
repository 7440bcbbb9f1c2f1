package dcerpc

import (
	"sync"
	"time"
)

// Bounds of what a Tracker holds per connection: the first peekMax bytes
// of the fragment being read in each direction, and the calls awaiting
// their answer (maxCalls, oldest dropped first). A tracked connection so
// holds under 1 KiB, whatever it is sent. 256 bytes hold a PDU header
// and any bind's first presentation context, a bind_ack's result behind
// a secondary address of up to 200 characters, and a fault's status.
const (
	peekMax  = 256
	maxCalls = 16
)

// Tracker reads the PDU headers of one DCE/RPC connection as a proxy
// forwards it, in whatever pieces the reads return, and tells what it
// learns: each bind or alter_context with its answer, and, with Calls,
// each call's outcome (its response or fault) and the time from its
// request. Only the first peekMax bytes of each fragment are looked at;
// the rest (the stub, sealed by Exchange) is passed over by its length,
// so a fragment of any size costs nothing to hold. It never changes the
// stream. Bytes it cannot read (not DCE/RPC, a PDU of a known type it
// cannot parse) are counted in Unparsed. The two directions may be fed
// from two goroutines.
//
// Without Calls, a Tracker reads each direction's first PDU only (the
// bind and its answer), and ClientDone and ServerDone then say the
// caller may stop feeding it.
type Tracker struct {
	// Calls reads every PDU for the connection's life, not only the
	// first each way.
	Calls bool

	mu             sync.Mutex
	client, server framer
	offered        Syntax    // the interface of the last bind or alter_context
	epoch          time.Time // the first request's time: calls hold theirs from it
	calls          [maxCalls]pendingCall
	ncalls         int
	events         []Event // FromServer's answer, reused
}

type pendingCall struct {
	id    uint32
	start time.Duration // since epoch
}

// EventKind says what an Event is.
type EventKind uint8

const (
	// EventBind is the server's answer to a bind or alter_context.
	EventBind EventKind = iota + 1
	// EventCall is the end of a call: its response's last fragment, or
	// a fault.
	EventCall
)

// Event is one thing a Tracker learned from the server's side.
type Event struct {
	Kind EventKind
	// Interface, Bind and Alter describe an EventBind: the interface
	// the client offered, the answer, and whether it answered an
	// alter_context rather than a bind.
	Interface Syntax
	Bind      BindResult
	Alter     bool
	// CallID, Fault, Status and Elapsed describe an EventCall: whether
	// the server answered with a fault, and with what status, and the
	// time from the request's first fragment (0 when the request was not
	// seen: it came before a Tracker with Calls was reading).
	CallID  uint32
	Fault   bool
	Status  uint32
	Elapsed time.Duration
}

// FromClient reads bytes the client sent, at now.
func (t *Tracker) FromClient(p []byte, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.client.feed(p, frameOpts{hold: peekMax, once: !t.Calls}, func(h PDU) bool { return t.clientPDU(h, now) })
}

func (t *Tracker) clientPDU(p PDU, now time.Time) bool {
	switch p.Type {
	case TypeBind, TypeAlterContext:
		s, err := ParseBind(p)
		if err != nil {
			return false
		}
		t.offered = s
	case TypeRequest:
		if p.Flags&flagFirstFrag == 0 {
			return true
		}
		if t.ncalls == maxCalls {
			copy(t.calls[:], t.calls[1:])
			t.ncalls--
		}
		if t.epoch.IsZero() {
			t.epoch = now
		}
		t.calls[t.ncalls] = pendingCall{p.CallID, now.Sub(t.epoch)}
		t.ncalls++
	}
	return true
}

// FromServer reads bytes the server sent, at now, and returns what they
// completed, valid until the next call.
func (t *Tracker) FromServer(p []byte, now time.Time) []Event {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.events = t.events[:0]
	t.server.feed(p, frameOpts{hold: peekMax, once: !t.Calls}, func(h PDU) bool { return t.serverPDU(h, now) })
	return t.events
}

func (t *Tracker) serverPDU(p PDU, now time.Time) bool {
	switch p.Type {
	case TypeBindAck, TypeBindNak, TypeAlterContextResp:
		alter := p.Type == TypeAlterContextResp
		if alter {
			p.Type = TypeBindAck // the same layout (C706 12.6.4.2)
		}
		res, err := ParseBindReply(p)
		if err != nil {
			return false
		}
		t.events = append(t.events, Event{Kind: EventBind, Interface: t.offered, Bind: res, Alter: alter})
	case TypeFault:
		if len(p.Body) < 12 {
			return false
		}
		t.events = append(t.events, Event{Kind: EventCall, CallID: p.CallID, Fault: true,
			Status: p.Order.Uint32(p.Body[8:]), Elapsed: t.answered(p.CallID, now)})
	case TypeResponse:
		if p.Flags&flagLastFrag != 0 {
			t.events = append(t.events, Event{Kind: EventCall, CallID: p.CallID, Elapsed: t.answered(p.CallID, now)})
		}
	}
	return true
}

// answered forgets call id and returns the time since its request, 0 if
// it was not seen.
func (t *Tracker) answered(id uint32, now time.Time) time.Duration {
	for i := range t.ncalls {
		if t.calls[i].id == id {
			d := now.Sub(t.epoch) - t.calls[i].start
			copy(t.calls[i:], t.calls[i+1:t.ncalls])
			t.ncalls--
			return d
		}
	}
	return 0
}

// ClientDone and ServerDone report, for a Tracker without Calls, that
// the direction's first PDU was read, or that the direction is not
// DCE/RPC: nothing more will be learned from it.
func (t *Tracker) ClientDone() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.client.dead || (!t.Calls && t.client.seen > 0)
}

func (t *Tracker) ServerDone() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.server.dead || (!t.Calls && t.server.seen > 0)
}

// Unparsed returns the bytes, both ways, the tracker could not read.
func (t *Tracker) Unparsed() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.client.unparsed + t.server.unparsed
}
