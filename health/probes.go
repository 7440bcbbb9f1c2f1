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
// failures joined.
func each(ctx context.Context, host string, ports []int, probe func(ctx context.Context, addr string) error) error {
	errs := make([]error, len(ports))
	done := make(chan struct{}, len(ports))
	for i, p := range ports {
		go func() {
			defer func() { done <- struct{}{} }()
			errs[i] = probe(ctx, net.JoinHostPort(host, strconv.Itoa(p)))
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
		resp, err := http.ReadResponse(bufio.NewReader(c), req)
		if err != nil {
			return fmt.Errorf("http %s: %w", addr, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode < h.StatusMin || resp.StatusCode > h.StatusMax {
			return fmt.Errorf("http %s %s%s: status %d, want %d-%d", h.Method, addr, h.Path, resp.StatusCode, h.StatusMin, h.StatusMax)
		}
		if h.Body != nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
			if !h.Body.Match(body) {
				return fmt.Errorf("http %s %s%s: body does not match %v", h.Method, addr, h.Path, h.Body)
			}
		}
		return nil
	})
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
		return fmt.Errorf("rpc: %w", err)
	}
	return nil
}
