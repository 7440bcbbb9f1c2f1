package health

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"

	"github.com/stickylb/stickylb/dcerpc"
)

// each runs probe against every port of host at once and fails with all
// failures joined, each clipped to maxErrText so that one port's long
// failure leaves room for the others'.
func each(ctx context.Context, host string, ports []int, probe func(ctx context.Context, addr string) error) error {
	errs := make([]error, len(ports))
	done := make(chan struct{}, len(ports))
	for i, p := range ports {
		go func() {
			defer func() { done <- struct{}{} }()
			errs[i] = clipError(probe(ctx, net.JoinHostPort(host, strconv.Itoa(p))), maxErrText)
		}()
	}
	for range ports {
		<-done
	}
	return errors.Join(errs...)
}

func dial(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	return c, nil
}

// SendExpect connects, sends Send, and expects the reply to start with
// Expect or to match Regexp (one of them, or neither to accept any reply
// of at least one byte).
type SendExpect struct {
	Ports  []int
	Send   []byte
	Expect []byte
	Regexp *regexp.Regexp
}

// maxReply bounds what a send-expect check reads.
const maxReply = 4096

func (s SendExpect) Probe(ctx context.Context, host string) error {
	return each(ctx, host, s.Ports, func(ctx context.Context, addr string) error {
		c, err := dial(ctx, addr)
		if err != nil {
			return fmt.Errorf("send-expect %s: %w", addr, err)
		}
		defer c.Close()
		if len(s.Send) > 0 {
			if _, err := c.Write(s.Send); err != nil {
				return fmt.Errorf("send-expect %s: send: %w", addr, err)
			}
		}
		want := max(len(s.Expect), 1)
		buf := make([]byte, 0, maxReply)
		tmp := make([]byte, maxReply)
		for len(buf) < maxReply {
			n, err := c.Read(tmp[:maxReply-len(buf)])
			buf = append(buf, tmp[:n]...)
			if s.Regexp != nil && s.Regexp.Match(buf) {
				return nil
			}
			if s.Regexp == nil && len(buf) >= want {
				if !bytes.HasPrefix(buf, s.Expect) {
					return fmt.Errorf("send-expect %s: reply %q does not start with %q", addr, clip(buf), s.Expect)
				}
				return nil
			}
			if err != nil {
				return fmt.Errorf("send-expect %s: reply %q then %w", addr, clip(buf), err)
			}
		}
		return fmt.Errorf("send-expect %s: no match for %v in the first %d bytes", addr, s.Regexp, maxReply)
	})
}

func clip(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}

// TLS completes a TLS handshake on every port.
type TLS struct {
	Ports  []int
	SNI    string
	Verify bool // check the certificate chain and name
}

func (t TLS) Probe(ctx context.Context, host string) error {
	return each(ctx, host, t.Ports, func(ctx context.Context, addr string) error {
		c, err := dial(ctx, addr)
		if err != nil {
			return fmt.Errorf("tls %s: %w", addr, err)
		}
		defer c.Close()
		tc := tls.Client(c, t.config(host))
		if err := tc.HandshakeContext(ctx); err != nil {
			return fmt.Errorf("tls %s: handshake: %w", addr, err)
		}
		return nil
	})
}

func (t TLS) config(host string) *tls.Config {
	sni := t.SNI
	if sni == "" {
		sni = host
	}
	return &tls.Config{ServerName: sni, InsecureSkipVerify: !t.Verify}
}

// HTTP sends one request on every port and checks the status and,
// optionally, the body.
type HTTP struct {
	Ports        []int
	TLS          bool
	SNI          string
	Verify       bool
	Method, Path string
	Host         string // Host header; default: the backend address
	StatusMin    int    // accepted status range, inclusive
	StatusMax    int
	Body         *regexp.Regexp
}

// Bounds on what an HTTP check reads from the wire. A health page needs a
// status line and a few headers, and Body is matched against the start
// of the body. Without bounds a backend decided the cost of a check:
// endless headers took 226 MiB per check, a 150 MiB status line 1.2-1.5
// GB and 17.7 CPU seconds in 20 s (issue 33). Past the bound on the head
// the check fails, saying so; Body is matched against what came within
// its bound.
const (
	maxHTTPHead = 64 << 10 // the status line and headers
	maxHTTPBody = 64 << 10 // the body as sent, chunk framing included
)

var (
	errHTTPHead = fmt.Errorf("status line and headers over %d bytes", maxHTTPHead)
	errHTTPBody = fmt.Errorf("body over %d bytes", maxHTTPBody)
)

func (h HTTP) Probe(ctx context.Context, host string) error {
	return each(ctx, host, h.Ports, func(ctx context.Context, addr string) error {
		c, err := dial(ctx, addr)
		if err != nil {
			return fmt.Errorf("http %s: %w", addr, err)
		}
		defer c.Close()
		if h.TLS {
			tc := tls.Client(c, TLS{SNI: h.SNI, Verify: h.Verify}.config(host))
			if err := tc.HandshakeContext(ctx); err != nil {
				return fmt.Errorf("https %s: handshake: %w", addr, err)
			}
			c = tc
		}
		return h.exchange(ctx, c, addr)
	})
}

// exchange sends the request on c and judges the response.
func (h HTTP) exchange(ctx context.Context, c net.Conn, addr string) error {
	req, err := http.NewRequestWithContext(ctx, h.Method, "http://"+addr+h.Path, nil)
	if err != nil {
		return fmt.Errorf("http %s: %w", addr, err)
	}
	if h.Host != "" {
		req.Host = h.Host
	}
	req.Header.Set("User-Agent", "stickylb-health")
	req.Close = true
	if err := req.Write(c); err != nil {
		return fmt.Errorf("http %s: send: %w", addr, err)
	}
	wire := &capReader{r: c, n: maxHTTPHead, err: errHTTPHead}
	resp, err := http.ReadResponse(bufio.NewReader(wire), req)
	if err != nil {
		if wire.n <= 0 {
			// bufio hands textproto a line cut at the bound
			// without an error, so the parse error names a
			// symptom; the bound is the cause.
			err = errHTTPHead
		}
		return fmt.Errorf("http %s: read response: %w", addr, err)
	}
	// The body is never closed: Close reads it to its end, which for an
	// endless body is the deadline. Closing c ends it instead.
	if resp.StatusCode < h.StatusMin || resp.StatusCode > h.StatusMax {
		return fmt.Errorf("http %s %s%s: status %d, want %d-%d", h.Method, addr, h.Path, resp.StatusCode, h.StatusMin, h.StatusMax)
	}
	if h.Body != nil {
		wire.n, wire.err = maxHTTPBody, errHTTPBody
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxHTTPBody))
		if !h.Body.Match(body) {
			return fmt.Errorf("http %s %s%s: body does not match %v", h.Method, addr, h.Path, h.Body)
		}
	}
	return nil
}

// capReader reads from r until n more bytes have been read, then fails
// with err.
type capReader struct {
	r   io.Reader
	n   int64
	err error
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.n <= 0 {
		return 0, c.err
	}
	if int64(len(p)) > c.n {
		p = p[:c.n]
	}
	n, err := c.r.Read(p)
	c.n -= int64(n)
	return n, err
}

// RPC asks a backend's endpoint mapper for Interface's TCP port with
// ept_map, then binds to the interface on that port: it passes only when
// the service behind the interface is registered and accepts binds, which
// a TCP connect to the endpoint mapper (answered by Windows' own RPC
// service) cannot tell.
type RPC struct {
	EPMPort   int
	Interface dcerpc.Syntax
	// Forwarded, if set, says whether the pool forwards a port: a port
	// it does not is a backend its clients cannot reach, so it fails.
	Forwarded func(port int) bool
}

func (r RPC) Probe(ctx context.Context, host string) error {
	if _, err := dcerpc.Check(ctx, nil, host, r.EPMPort, r.Interface, r.Forwarded); err != nil {
		return clipError(fmt.Errorf("rpc: %w", err), maxErrText)
	}
	return nil
}
