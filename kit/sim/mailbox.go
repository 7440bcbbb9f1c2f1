package sim

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/stickylb/stickylb/dcerpc"
)

// mailbox is one Unity mailbox session of the fleet, as the client sees it
// (cas.go's session is the CAS's side).
type mailbox struct {
	f    *Fleet
	rng  *rand.Rand
	hist *hdrhistogram.Histogram
	rep  SessionReport

	mu        sync.Mutex // guards what parallel operations share
	handle    uint64
	cas       string
	rca, ab   int
	long      [2]*clientConn // long-lived RCA and AB connections
	needLogon bool
	other     int64
	errs      map[string]int
}

// count adds one error of kind label; s.mu is held.
func (s *mailbox) count(label string) {
	if s.errs == nil {
		s.errs = map[string]int{}
	}
	s.errs[label]++
}

// errorLabel names a network failure by its cause.
func errorLabel(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "connection reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed by peer"
	case errors.Is(err, dcerpc.ErrBindRejected):
		return "bind rejected"
	case errors.Is(err, ErrProtocol), errors.Is(err, dcerpc.ErrMalformed):
		return "protocol error"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	return "other: " + err.Error()
}

type clientConn struct {
	net.Conn
	r      *bufio.Reader
	svc    Service // the interface it bound
	callID uint32  // the last call's id
	buf    []byte
	via    string // the balancer host it went to
	used   bool   // it has answered a request: a long-lived connection cut later was in use
}

const (
	onRCA = 0
	onAB  = 1
)

func (s *mailbox) run(ctx context.Context) {
	defer s.closeLong()
	for ctx.Err() == nil {
		if s.handle == 0 || s.needLogon {
			if err := s.logon(ctx); err != nil {
				s.pause(ctx, 4)
				continue
			}
		}
		s.pause(ctx, 1)
		if ctx.Err() != nil {
			break
		}
		switch x := s.rng.IntN(100); {
		case x < 40:
			s.op(ctx, onRCA, true)
		case x < 60:
			s.op(ctx, onAB, true)
		case x < 80:
			s.op(ctx, onRCA, false)
		case x < 95:
			s.op(ctx, onAB, false)
		default:
			// Parallel requests on fresh connections, as Unity makes
			// when several calls need the same mailbox at once.
			var wg sync.WaitGroup
			for _, svc := range []int{onRCA, onRCA, onAB} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					s.op(ctx, svc, false)
				}()
			}
			wg.Wait()
		}
	}
	s.logoff()
}

// pause sleeps about n mean intervals, less when ctx ends. The parallel
// operations of one mailbox pause at once, so the shared generator is
// read under the mailbox's lock.
func (s *mailbox) pause(ctx context.Context, n int) {
	s.mu.Lock()
	jitter := s.rng.Float64()
	s.mu.Unlock()
	d := time.Duration(float64(s.f.cfg.OpInterval) * float64(n) * (0.5 + jitter))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func (s *mailbox) dial(ctx context.Context, port int) (*clientConn, error) {
	d := net.Dialer{Timeout: s.f.cfg.Timeout}
	if s.rep.Source != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(s.rep.Source)}
	}
	via := s.f.target()
	c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(via, strconv.Itoa(port)))
	if err != nil {
		return nil, &dialError{via: via, err: err}
	}
	return &clientConn{Conn: c, buf: make([]byte, 0, 64), via: via}, nil
}

// request sends f and reads the reply. An error reply is returned as a
// *StatusError.
func (s *mailbox) request(c *clientConn, f Frame) (Frame, error) {
	c.SetDeadline(time.Now().Add(s.f.cfg.Timeout))
	r, err := c.send(f)
	if err != nil {
		return Frame{}, err
	}
	c.used = true
	if r.Type == TypeError {
		se, perr := ParseError(r.Payload)
		if perr != nil {
			return Frame{}, perr
		}
		return r, se
	}
	return r, nil
}

// logon asks the endpoint mapper for the service ports and opens a
// session, keeping the RCA connection for later work.
func (s *mailbox) logon(ctx context.Context) error {
	s.closeLong()
	epm, err := s.open(ctx, EndpointMapper, s.f.cfg.EPMPort)
	if err != nil {
		s.connErr(ctx, err)
		return err
	}
	epm.SetDeadline(time.Now().Add(s.f.cfg.Timeout))
	ports, err := epm.lookup(dcerpc.EMSMDB, dcerpc.NSPI)
	epm.Close()
	if err != nil {
		s.classify(ctx, err, "")
		return fmt.Errorf("endpoint lookup: %w", err)
	}
	s.rca, s.ab = ports[0], ports[1]
	c, err := s.open(ctx, ClientAccess, s.rca)
	if err != nil {
		s.connErr(ctx, err)
		return err
	}
	r, err := s.request(c, Frame{Type: TypeLogon, Payload: appendStr(nil, s.rep.Mailbox)})
	if err != nil || r.Type != TypeLogonOK || len(r.Payload) < 8 {
		c.Close()
		s.classify(ctx, err, "")
		return fmt.Errorf("logon: %v", err)
	}
	server, _, _ := readStr(r.Payload[8:])
	s.mu.Lock()
	s.handle, s.cas, s.needLogon = binary.BigEndian.Uint64(r.Payload), server, false
	s.long[onRCA] = c
	s.rep.CAS = append(s.rep.CAS, server)
	s.mu.Unlock()
	return nil
}

// op does one operation on the RCA or AB service, on the long-lived
// connection or a fresh one. A broken connection is retried on a new one,
// as the RPC runtime does; MAPI_E_NETWORK_ERROR ends the session.
func (s *mailbox) op(ctx context.Context, svc int, long bool) {
	s.mu.Lock()
	handle, port := s.handle, s.rca
	if svc == onAB {
		port = s.ab
	}
	s.mu.Unlock()
	// An operation counts once it has an outcome; one cut off by the end
	// of the run does not count at all.
	counted := func() {
		s.mu.Lock()
		s.rep.Ops++
		s.mu.Unlock()
		s.f.ops.Add(1)
	}
	payload := binary.BigEndian.AppendUint64(nil, handle)
	payload = append(payload, byte(svc))
	for try := 0; try < 3 && ctx.Err() == nil; try++ {
		start := time.Now()
		c, err := s.conn(ctx, svc, port, long)
		if err == nil {
			var r Frame
			r, err = s.request(c, Frame{Type: TypeOp, Payload: payload})
			if !long || err != nil {
				s.drop(c, svc, long)
			}
			if err == nil && r.Type == TypeOpOK {
				counted()
				server, _, _ := readStr(r.Payload)
				s.served(server)
				s.f.ok.Add(1)
				s.mu.Lock()
				s.hist.RecordValue(time.Since(start).Microseconds())
				s.mu.Unlock()
				return
			}
		}
		var se *StatusError
		if errors.As(err, &se) {
			counted()
			s.classify(ctx, err, se.Server)
			return
		}
		s.connErr(ctx, err)
		s.pause(ctx, 1<<try)
	}
	if ctx.Err() != nil {
		return
	}
	counted()
	// The connection could not be restored: Unity starts the session over.
	s.mu.Lock()
	s.needLogon = true
	s.mu.Unlock()
}

func (s *mailbox) conn(ctx context.Context, svc, port int, long bool) (*clientConn, error) {
	if !long {
		return s.open(ctx, service(svc), port)
	}
	s.mu.Lock()
	c := s.long[svc]
	s.mu.Unlock()
	if c != nil {
		return c, nil
	}
	c, err := s.open(ctx, service(svc), port)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.long[svc] = c
	s.mu.Unlock()
	return c, nil
}

func (s *mailbox) drop(c *clientConn, svc int, long bool) {
	c.Close()
	if long {
		s.mu.Lock()
		if s.long[svc] == c {
			s.long[svc] = nil
		}
		s.mu.Unlock()
	}
}

// served records which CAS answered a request within this logon.
func (s *mailbox) served(server string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if server != "" && server != s.cas {
		s.rep.Split = true
	}
}

// classify counts a failed request: a status error from a server, or a
// network failure.
func (s *mailbox) classify(ctx context.Context, err error, server string) {
	var se *StatusError
	switch {
	case errors.As(err, &se) && se.Status == MAPINetworkError:
		s.served(server)
		s.mu.Lock()
		if se.Fault != 0 {
			// No CAS name comes with a fault, but a server that does
			// not know this connection's bind is not the one it bound.
			s.rep.Split = true
		}
		s.rep.MAPINetworkErrors++
		s.count("MAPI_E_NETWORK_ERROR")
		s.needLogon = true
		cas := s.cas
		s.mu.Unlock()
		s.f.netErrs.Add(1)
		s.tell(Failure{CAS: cas, Server: server, Kind: "MAPI_E_NETWORK_ERROR"})
	case errors.As(err, &se):
		s.mu.Lock()
		s.other++
		s.count(fmt.Sprintf("status %#08x", se.Status))
		s.mu.Unlock()
	case err != nil:
		s.connErr(ctx, err)
	}
}

// connErr counts a network failure, unless it is the run ending: a dial
// cut short by the end of the run is not the balancer's fault.
func (s *mailbox) connErr(ctx context.Context, err error) {
	if ctx.Err() != nil {
		return
	}
	s.mu.Lock()
	s.rep.ConnErrors++
	s.count(errorLabel(err))
	cas := s.cas
	s.mu.Unlock()
	s.f.connErrs.Add(1)
	fl := Failure{CAS: cas, Kind: errorLabel(err)}
	var de *dialError
	var ce *connError
	switch {
	case errors.As(err, &de):
		fl.Via = de.via
	case errors.As(err, &ce):
		fl.Via, fl.Long = ce.c.via, ce.c.used
	}
	s.tell(fl)
}

// tell passes a failure to the fleet's OnError, if it has one.
func (s *mailbox) tell(fl Failure) {
	if s.f.cfg.OnError == nil {
		return
	}
	fl.Time, fl.Session, fl.Mailbox = time.Now(), s.rep.ID, s.rep.Mailbox
	s.f.cfg.OnError(fl)
}

// dialError and connError carry, with a network failure, where the
// connection went, for Failure.
type dialError struct {
	via string
	err error
}

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

type connError struct {
	c   *clientConn
	err error
}

func (e *connError) Error() string { return e.err.Error() }
func (e *connError) Unwrap() error { return e.err }

func (s *mailbox) closeLong() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, c := range s.long {
		if c != nil {
			c.Close()
			s.long[i] = nil
		}
	}
}

// logoff ends the session politely, if its connection is still there.
func (s *mailbox) logoff() {
	s.mu.Lock()
	c, h := s.long[onRCA], s.handle
	s.mu.Unlock()
	if c == nil || h == 0 {
		return
	}
	c.SetDeadline(time.Now().Add(200 * time.Millisecond))
	c.send(Frame{Type: TypeLogoff, Payload: binary.BigEndian.AppendUint64(nil, h)})
}
