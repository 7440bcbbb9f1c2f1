package dcerpc

import (
	"sync"
)

// Bounds of what a Watch holds per connection: one fragment being
// gathered per direction (scanMax), the ept_map answer being joined
// (joinMax), and the ept_map calls awaiting their answer (maxPending).
// A watched connection so holds at most about 26 KiB, whatever it is
// sent. An ept_map answer of four towers is about 400 bytes.
const (
	scanMax    = maxFrag
	joinMax    = 16 << 10
	maxPending = 8
)

// Watch reads both directions of one connection to an endpoint mapper
// as a proxy forwards them, in whatever pieces the reads return, and
// tells what it learns: the interface the client bound and the bind's
// result, and the endpoints every ept_map answer hands out. It never
// changes or holds up the stream; bytes it cannot read (not DCE/RPC, a
// fragment over scanMax, an answer it cannot parse) are counted in
// Unparsed and passed over. The two directions may be fed from two
// goroutines.
type Watch struct {
	mu             sync.Mutex
	client, server framer
	pending        []uint32 // call ids of ept_map requests not yet answered, oldest first
	join           []byte   // the ept_map answer being joined from fragments
	joining        bool     // join is live for call joinID
	joinID         uint32
	bound          Syntax
	bind           BindResult
	bindSeen       bool
	learned        []Endpoint // FromServer's answer, reused
}

// FromClient reads bytes the client sent.
func (w *Watch) FromClient(p []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.client.feed(p, frameOpts{hold: scanMax, whole: true}, w.clientPDU)
}

func (w *Watch) clientPDU(p PDU) bool {
	switch p.Type {
	case TypeBind, TypeAlterContext:
		s, err := ParseBind(p)
		if err != nil {
			return false
		}
		w.bound = s
	case TypeRequest:
		op, err := Opnum(p)
		if err != nil {
			return false
		}
		if op == OpMap && p.Flags&flagFirstFrag != 0 {
			if len(w.pending) == maxPending {
				w.pending = append(w.pending[:0], w.pending[1:]...)
			}
			w.pending = append(w.pending, p.CallID)
		}
	}
	return true
}

// FromServer reads bytes the server sent and returns the TCP endpoints
// of the ept_map answers they completed, valid until the next call.
func (w *Watch) FromServer(p []byte) []Endpoint {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.learned = w.learned[:0]
	w.server.feed(p, frameOpts{hold: scanMax, whole: true}, w.serverPDU)
	return w.learned
}

func (w *Watch) serverPDU(p PDU) bool {
	switch p.Type {
	case TypeBindAck, TypeBindNak, TypeAlterContextResp:
		if p.Type == TypeAlterContextResp {
			p.Type = TypeBindAck // the same layout (C706 12.6.4.2)
		}
		res, err := ParseBindReply(p)
		if err != nil {
			return false
		}
		w.bind, w.bindSeen = res, true
	case TypeFault:
		w.answered(p.CallID)
	case TypeResponse:
		if w.isPending(p.CallID) {
			return w.mapFragment(p)
		}
	}
	return true
}

// mapFragment joins a fragment of an ept_map answer and reads the
// answer at its last fragment.
func (w *Watch) mapFragment(p PDU) bool {
	if len(p.Body) < 8 {
		w.answered(p.CallID)
		return false
	}
	if p.Flags&flagFirstFrag != 0 {
		w.join, w.joining, w.joinID = w.join[:0], true, p.CallID
	}
	if !w.joining || w.joinID != p.CallID || len(w.join)+len(p.Body)-8 > joinMax {
		w.joining = false
		if p.Flags&flagLastFrag != 0 {
			w.answered(p.CallID)
		}
		return false
	}
	w.join = append(w.join, p.Body[8:]...)
	if p.Flags&flagLastFrag == 0 {
		return true
	}
	w.joining = false
	w.answered(p.CallID)
	res, err := ParseMapResponse(w.join, p.Order)
	if err != nil {
		return false
	}
	for _, e := range res.Endpoints {
		if e.TCP() && res.Status == 0 {
			w.learned = append(w.learned, e)
		}
	}
	return true
}

func (w *Watch) isPending(id uint32) bool {
	for _, p := range w.pending {
		if p == id {
			return true
		}
	}
	return false
}

func (w *Watch) answered(id uint32) {
	for i, p := range w.pending {
		if p == id {
			w.pending = append(w.pending[:i], w.pending[i+1:]...)
			return
		}
	}
}

// Bound returns the interface the client's last bind offered and the
// server's answer to it; ok is false until the server has answered.
func (w *Watch) Bound() (iface Syntax, res BindResult, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.bound, w.bind, w.bindSeen
}

// Unparsed returns the bytes, both ways, that were passed over unread.
func (w *Watch) Unparsed() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.client.unparsed + w.server.unparsed
}

// Lost reports whether both directions stopped being DCE/RPC: nothing
// more will be learned, and the caller may stop feeding.
func (w *Watch) Lost() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.client.dead && w.server.dead
}
