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

// Client is the client side of one ncacn_ip_tcp connection: a bind,
// then calls that each wait for their answer, with call ids counted from
// 1. It sets no deadline: whoever owns the connection does. Reads are
// buffered, so a fragment costs one read, not two.
type Client struct {
	c    net.Conn
	r    *bufio.Reader
	buf  []byte
	next uint32
}

// NewClient starts the client side of c.
func NewClient(c net.Conn) *Client {
	return &Client{c: c, r: bufio.NewReaderSize(c, maxFrag), buf: make([]byte, 0, maxFrag)}
}

// Bind binds iface; a bind_nak or a rejecting bind_ack is ErrBindRejected.
func (cl *Client) Bind(iface Syntax) error {
	cl.next++
	if _, err := cl.c.Write(Bind(cl.next, iface)); err != nil {
		return fmt.Errorf("send bind: %w", err)
	}
	p, err := ReadPDU(cl.r, cl.buf)
	if err != nil {
		return fmt.Errorf("read bind answer: %w", err)
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

// Call sends a request for opnum with stub (at most MaxRequestStub
// bytes: one fragment) and reads its response: the stub and its byte
// order, or a Fault.
func (cl *Client) Call(opnum uint16, stub []byte) ([]byte, binary.ByteOrder, error) {
	cl.next++
	if _, err := cl.c.Write(Request(cl.next, opnum, stub)); err != nil {
		return nil, nil, fmt.Errorf("send request %d: %w", cl.next, err)
	}
	return ReadResponse(cl.r, cl.next)
}

// session is a Client on a connection it dials, with a deadline on
// every exchange: the check's, or 10 s when it has none.
type session struct {
	*Client
	ctx  context.Context
	c    net.Conn
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
	return &session{Client: NewClient(c), ctx: ctx, c: c, stop: stop}, nil
}

func (s *session) close() {
	s.stop()
	s.c.Close()
}

// cause names a cancelled check as the reason an exchange failed, which
// the connection reports only as a timeout.
func (s *session) cause(err error) error {
	if err != nil && errors.Is(s.ctx.Err(), context.Canceled) {
		return fmt.Errorf("%w: %w", context.Cause(s.ctx), err)
	}
	return err
}

func (s *session) bind(iface Syntax) error { return s.cause(s.Bind(iface)) }

func (s *session) call(opnum uint16, stub []byte) ([]byte, binary.ByteOrder, error) {
	resp, order, err := s.Call(opnum, stub)
	return resp, order, s.cause(err)
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
	stub, order, err := s.call(OpMap, MapRequest(iface))
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
