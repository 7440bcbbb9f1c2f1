package dcerpc

// framer cuts one direction of a connection's byte stream into
// fragments by their headers, in whatever pieces the reads return, for a
// Watch and a Tracker alike. It holds at most a fragment's first hold
// bytes (frameOpts): a reader of whole fragments (a Watch) passes over a
// longer one unread, a reader of heads (a Tracker) is handed its first
// hold bytes and the rest is passed over by its length. A stream whose
// header is not DCE/RPC is passed over to its end. Bytes passed over
// unread count as unparsed.
type framer struct {
	small    [peekMax]byte // what a Tracker holds
	big      []byte        // what a Watch holds, made at its first fragment
	n        int           // bytes of the current fragment held
	frag     int           // the current fragment's length, once its header is in
	rest     int           // bytes of the current fragment still to pass over
	unread   bool          // and those bytes count as unparsed
	seen     int           // fragments read
	dead     bool
	unparsed int64
}

// frameOpts is how a framer's reader reads: hold bytes of a fragment at
// most, whole fragments only, and once: the first fragment only (the
// rest of the stream is then passed over, not counted).
type frameOpts struct {
	hold        int
	whole, once bool
}

// buf is where the current fragment's held bytes go.
func (s *framer) buf(hold int) []byte {
	if hold <= len(s.small) {
		return s.small[:hold]
	}
	if s.big == nil {
		s.big = make([]byte, hold)
	}
	return s.big
}

// feed reads p and calls pdu for every fragment it reads (whole, or its
// head); a fragment pdu cannot read counts as unparsed.
func (s *framer) feed(p []byte, o frameOpts, pdu func(PDU) bool) {
	buf := s.buf(o.hold)
	for len(p) > 0 {
		switch {
		case s.dead:
			s.unparsed += int64(len(p))
			return
		case o.once && s.seen > 0:
			return
		case s.rest > 0:
			n := min(s.rest, len(p))
			s.rest -= n
			if s.unread {
				s.unparsed += int64(n)
			}
			p = p[n:]
			continue
		}
		want := headerLen
		if s.frag > 0 {
			want = min(s.frag, o.hold)
		}
		take := copy(buf[s.n:want], p)
		s.n += take
		p = p[take:]
		if s.n < want {
			return
		}
		if s.frag == 0 && !s.header(buf, o) {
			continue
		}
		if s.n == s.frag || s.n == o.hold {
			s.deliver(buf[:s.n], pdu)
		}
	}
}

// header reads the header held in buf: false when the fragment is not
// to be read (the stream is dead, or the fragment is passed over
// unread).
func (s *framer) header(buf []byte, o frameOpts) bool {
	n, err := fragLen(buf[:headerLen], 1<<16)
	switch {
	case err != nil:
		s.dead = true
		s.unparsed += int64(s.n)
		return false
	case o.whole && n > o.hold:
		s.unparsed += int64(s.n)
		s.rest, s.unread, s.n, s.seen = n-s.n, true, 0, s.seen+1
		return false
	}
	s.frag = n
	return true
}

// deliver hands the fragment held in b to pdu and makes ready for the
// next: the whole fragment, or for one too long to hold, its head.
func (s *framer) deliver(b []byte, pdu func(PDU) bool) {
	var p PDU
	var err error
	if len(b) == s.frag {
		p, err = decodePDU(b)
	} else {
		p = decodeHead(b)
	}
	if err != nil || !pdu(p) {
		s.unparsed += int64(s.frag)
	}
	s.rest, s.unread, s.n, s.frag = s.frag-len(b), false, 0, 0
	s.seen++
}

// decodeHead reads the header and the first bytes of the body of a
// fragment too long to hold: the authentication trailer, at its end, is
// not among them.
func decodeHead(b []byte) PDU {
	order := byteOrder(b)
	return PDU{Type: b[2], Flags: b[3], CallID: order.Uint32(b[12:]), Order: order, Body: b[headerLen:]}
}
