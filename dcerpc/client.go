package dcerpc

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"
)

// ErrNotRegistered says the endpoint mapper knows no endpoint of the
// interface: the service behind it is not running.
var ErrNotRegistered = errors.New("interface not registered with the endpoint mapper")

// ErrBindRejected says the server refused a bind to the interface.
var ErrBindRejected = errors.New("bind rejected")

// session is one ncacn_ip_tcp connection with a deadline on every
// exchange: the check's, or 10 s when it has none. Reads are buffered, so
// a fragment costs one read, not two.
type session struct {
	ctx  context.Context
	c    net.Conn
	r    *bufio.Reader
	buf  []byte
	stop func() bool
}

func dial(ctx context.Context, d *net.Dialer, addr string) (*session, error) {
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Now().Add(10 * time.Second)
	}
	c.SetDeadline(dl)
	// A check that is cancelled (a reload, a shutdown) ends its reads
	// now rather than at the deadline.
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	return &session{ctx: ctx, c: c, r: bufio.NewReaderSize(c, maxFrag), buf: make([]byte, 0, maxFrag), stop: stop}, nil
}

func (s *session) close() {
	s.stop()
	s.c.Close()
}

// cause names a cancelled check as the reason an exchange failed, which
// the connection reports only as a timeout.
func (s *session) cause(err error) error {
	if errors.Is(s.ctx.Err(), context.Canceled) {
		return fmt.Errorf("%w: %w", context.Cause(s.ctx), err)
	}
	return err
}

// bind binds iface as call 1.
func (s *session) bind(iface Syntax) error {
	if _, err := s.c.Write(Bind(1, iface)); err != nil {
		return fmt.Errorf("send bind: %w", s.cause(err))
	}
	p, err := ReadPDU(s.r, s.buf)
	if err != nil {
		return fmt.Errorf("read bind answer: %w", s.cause(err))
	}
	res, err := ParseBindReply(p)
	if err != nil {
		return err
	}
	if !res.Accepted {
		return fmt.Errorf("%w: %s", ErrBindRejected, res)
	}
	return nil
}

// call sends a request for opnum as callID and reads its response.
func (s *session) call(callID uint32, opnum uint16, stub []byte) ([]byte, binary.ByteOrder, error) {
	if _, err := s.c.Write(Request(callID, opnum, stub)); err != nil {
		return nil, nil, fmt.Errorf("send: %w", s.cause(err))
	}
	resp, order, err := ReadResponse(s.r, callID)
	if err != nil {
		return nil, nil, s.cause(err)
	}
	return resp, order, nil
}

// Lookup asks the endpoint mapper at epm (host:135) for the TCP port of
// iface, with ept_map, and returns the first port it names. d may be nil.
func Lookup(ctx context.Context, d *net.Dialer, epm string, iface Syntax) (uint16, error) {
	if d == nil {
		d = &net.Dialer{}
	}
	s, err := dial(ctx, d, epm)
	if err != nil {
		return 0, fmt.Errorf("endpoint mapper %s: %w", epm, err)
	}
	defer s.close()
	if err := s.bind(EPM); err != nil {
		return 0, fmt.Errorf("endpoint mapper %s: %w", epm, err)
	}
	stub, order, err := s.call(2, OpMap, MapRequest(iface))
	if err != nil {
		return 0, fmt.Errorf("endpoint mapper %s: ept_map: %w", epm, err)
	}
	res, err := ParseMapResponse(stub, order)
	switch {
	case err != nil:
		return 0, fmt.Errorf("endpoint mapper %s: %w", epm, err)
	case res.Status == EptNotRegistered || (res.Status == 0 && len(res.Ports) == 0):
		return 0, fmt.Errorf("endpoint mapper %s: %s: %w", epm, iface, ErrNotRegistered)
	case res.Status != 0:
		return 0, fmt.Errorf("endpoint mapper %s: ept_map status 0x%08x for %s", epm, res.Status, iface)
	}
	return res.Ports[0], nil
}

// Check looks iface up at host's endpoint mapper (epmPort, normally
// 135), then binds to it on the port returned, and returns that port. It
// fails when either step fails or times out, or when allowed is given and
// says no to the port.
func Check(ctx context.Context, d *net.Dialer, host string, epmPort int, iface Syntax, allowed func(port int) bool) (int, error) {
	port, err := Lookup(ctx, d, net.JoinHostPort(host, strconv.Itoa(epmPort)), iface)
	if err != nil {
		return 0, err
	}
	if allowed != nil && !allowed(int(port)) {
		return int(port), fmt.Errorf("the endpoint mapper hands out port %d for %s, which this pool does not forward: "+
			"set the static port again on this server, or forward its dynamic range (docs/deploy.md, \"Exchange\")", port, iface)
	}
	if d == nil {
		d = &net.Dialer{}
	}
	s, err := dial(ctx, d, net.JoinHostPort(host, strconv.Itoa(int(port))))
	if err != nil {
		return int(port), fmt.Errorf("%s on port %d (from the endpoint mapper): %w", iface, port, err)
	}
	defer s.close()
	if err := s.bind(iface); err != nil {
		return int(port), fmt.Errorf("%s on port %d: %w", iface, port, err)
	}
	return int(port), nil
}
