package dcerpc

import (
	"context"
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
// exchange.
type session struct {
	c   net.Conn
	buf []byte
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
	return &session{c: c, buf: make([]byte, 0, maxFrag)}, nil
}

// bind binds iface as call 1.
func (s *session) bind(iface Syntax) error {
	if _, err := s.c.Write(Bind(1, iface)); err != nil {
		return fmt.Errorf("send bind: %w", err)
	}
	p, err := ReadPDU(s.c, s.buf)
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
	defer s.c.Close()
	if err := s.bind(EPM); err != nil {
		return 0, fmt.Errorf("endpoint mapper %s: %w", epm, err)
	}
	if _, err := s.c.Write(Request(2, OpMap, MapRequest(iface))); err != nil {
		return 0, fmt.Errorf("endpoint mapper %s: send ept_map: %w", epm, err)
	}
	stub, order, err := ReadResponse(s.c, 2)
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
	defer s.c.Close()
	if err := s.bind(iface); err != nil {
		return int(port), fmt.Errorf("%s on port %d: %w", iface, port, err)
	}
	return int(port), nil
}
