package sim

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Service is what a CAS port serves.
type Service uint8

const (
	EndpointMapper Service = iota
	ClientAccess
	AddressBook
)

func (s Service) String() string {
	return [...]string{"endpoint-mapper", "rpc-client-access", "address-book"}[s]
}

// CASConfig describes one simulated Client Access Server.
type CASConfig struct {
	Name string
	Host string // address to listen on, such as 127.0.0.11
	// Ports to listen on. The endpoint mapper advertises RCAPort and
	// ABPort, as a CAS with static RPC ports does.
	EPMPort, RCAPort, ABPort int
	// DynamicFirst and DynamicLast, when set, replace RCAPort and ABPort
	// with two free ports picked at random from that range, as a CAS
	// without static ports takes them from Windows' dynamic RPC range
	// (each host its own); the endpoint mapper hands those out.
	DynamicFirst, DynamicLast int
	// SessionIdle ends a session after this long unused (default 30m).
	SessionIdle time.Duration
	// ConnIdle closes a connection that sends nothing for this long
	// (default 15m), so a vanished client costs nothing for ever.
	ConnIdle time.Duration
	Log      *slog.Logger
}

// CASStats are a CAS's running totals.
type CASStats struct {
	Logons, Ops, NetworkErrors, ProtocolErrors, Sessions int64
	// Lookups are the ept_map calls the endpoint mapper answered;
	// RejectedBinds the binds of an interface the port does not serve.
	Lookups, RejectedBinds int64
}

// CAS is a running simulated Client Access Server. Its sessions live in
// its memory only: another CAS does not know them.
type CAS struct {
	cfg CASConfig

	mu       sync.Mutex
	sessions map[uint64]*session
	lns      []net.Listener
	conns    map[net.Conn]struct{}
	closed   bool
	wg       sync.WaitGroup

	logons, ops, netErrs, protoErrs, lookups, rejected atomic.Int64
}

type session struct {
	mailbox  string
	lastUsed time.Time
}

// StartCAS listens on the three ports of cfg and serves until Close.
func StartCAS(cfg CASConfig) (*CAS, error) {
	if cfg.SessionIdle <= 0 {
		cfg.SessionIdle = 30 * time.Minute
	}
	if cfg.ConnIdle <= 0 {
		cfg.ConnIdle = 15 * time.Minute
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	c := &CAS{cfg: cfg, sessions: map[uint64]*session{}, conns: map[net.Conn]struct{}{}}
	if err := c.listen(cfg.EPMPort, EndpointMapper); err != nil {
		return nil, err
	}
	if cfg.DynamicLast > 0 {
		if err := c.listenDynamic(); err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	}
	for _, p := range []struct {
		port int
		svc  Service
	}{{cfg.RCAPort, ClientAccess}, {cfg.ABPort, AddressBook}} {
		if err := c.listen(p.port, p.svc); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// listen serves svc on port.
func (c *CAS) listen(port int, svc Service) error {
	addr := net.JoinHostPort(c.cfg.Host, strconv.Itoa(port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("simulated CAS %s: listen %s for %s: %w", c.cfg.Name, addr, svc, err)
	}
	c.lns = append(c.lns, ln)
	c.wg.Add(1)
	go c.accept(ln, svc)
	return nil
}

// listenDynamic serves RPC Client Access and the Address Book on two
// free ports picked at random from the dynamic range, and records them
// for the endpoint mapper to hand out.
func (c *CAS) listenDynamic() error {
	lo, hi := c.cfg.DynamicFirst, c.cfg.DynamicLast
	var got []int
	for attempt := 0; len(got) < 2 && attempt < 200; attempt++ {
		p := lo + rand.IntN(hi-lo+1)
		if slices.Contains(got, p) {
			continue
		}
		svc := []Service{ClientAccess, AddressBook}[len(got)]
		if c.listen(p, svc) == nil {
			got = append(got, p)
		}
	}
	if len(got) < 2 {
		return fmt.Errorf("simulated CAS %s: no two free ports in its dynamic range %d-%d on %s", c.cfg.Name, lo, hi, c.cfg.Host)
	}
	c.mu.Lock() // serve reads them, from connections that may come before StartCAS returns
	c.cfg.RCAPort, c.cfg.ABPort = got[0], got[1]
	c.mu.Unlock()
	return nil
}

// Ports returns the RPC Client Access and Address Book ports the
// endpoint mapper hands out.
func (c *CAS) Ports() (rca, ab int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cfg.RCAPort, c.cfg.ABPort
}

// Name returns the CAS's name.
func (c *CAS) Name() string { return c.cfg.Name }

// Stats returns the running totals.
func (c *CAS) Stats() CASStats {
	c.mu.Lock()
	n := len(c.sessions)
	c.mu.Unlock()
	return CASStats{Logons: c.logons.Load(), Ops: c.ops.Load(), NetworkErrors: c.netErrs.Load(),
		ProtocolErrors: c.protoErrs.Load(), Sessions: int64(n), Lookups: c.lookups.Load(), RejectedBinds: c.rejected.Load()}
}

// Kill simulates a crash: listeners close, every connection is reset and
// every session is lost. Close still has to be called.
func (c *CAS) Kill() {
	c.mu.Lock()
	for _, ln := range c.lns {
		ln.Close()
	}
	for conn := range c.conns {
		if tc, ok := conn.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
		conn.Close()
	}
	c.sessions = map[uint64]*session{}
	c.mu.Unlock()
}

// Close stops the CAS and waits for its goroutines.
func (c *CAS) Close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.Kill()
	c.wg.Wait()
}

func (c *CAS) accept(ln net.Listener, svc Service) {
	defer c.wg.Done()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(5 * time.Millisecond)
			continue
		}
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			conn.Close()
			return
		}
		c.conns[conn] = struct{}{}
		c.wg.Add(1)
		c.mu.Unlock()
		go c.serve(conn, svc)
	}
}

// handle answers one request of a service port (rpc.go has taken it
// from its DCE/RPC request). fatal says the connection closes after the
// reply (the request was malformed).
func (c *CAS) handle(svc Service, f Frame) (reply Frame, fatal bool) {
	name := c.cfg.Name
	bad := func(format string, args ...any) (Frame, bool) {
		c.protoErrs.Add(1)
		return ErrorFrame(MAPICallFailed, name, fmt.Sprintf(format, args...)), true
	}
	switch {
	case f.Type == TypeLogon && svc == ClientAccess:
		mailbox, _, err := readStr(f.Payload)
		if err != nil || mailbox == "" {
			return ErrorFrame(MAPILogonFailed, name, "logon needs a mailbox name"), false
		}
		h := rand.Uint64() | 1 // never 0
		c.mu.Lock()
		c.sessions[h] = &session{mailbox: mailbox, lastUsed: time.Now()}
		c.mu.Unlock()
		c.logons.Add(1)
		p := binary.BigEndian.AppendUint64(nil, h)
		return Frame{Type: TypeLogonOK, Payload: appendStr(p, name)}, false
	case (f.Type == TypeOp && svc != EndpointMapper) || (f.Type == TypeLogoff && svc == ClientAccess):
		if len(f.Payload) < 8 {
			return bad("request of type %#02x needs an 8-byte session handle", f.Type)
		}
		h := binary.BigEndian.Uint64(f.Payload)
		if !c.use(h, f.Type == TypeLogoff) {
			c.netErrs.Add(1)
			return ErrorFrame(MAPINetworkError, name, fmt.Sprintf("session %016x is not known on %s", h, name)), false
		}
		c.ops.Add(1)
		if f.Type == TypeLogoff {
			return Frame{Type: TypeLogoffOK, Payload: appendStr(nil, name)}, false
		}
		return Frame{Type: TypeOpOK, Payload: appendStr(nil, name)}, false
	}
	return bad("request type %#02x is not served on the %s port", f.Type, svc)
}

// use marks session h used (or ends it) and reports whether it existed
// and had not idled out.
func (c *CAS) use(h uint64, end bool) bool {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.sessions[h]
	if !ok {
		return false
	}
	switch {
	case now.Sub(s.lastUsed) > c.cfg.SessionIdle:
		delete(c.sessions, h)
		return false
	case end:
		delete(c.sessions, h)
		return true
	}
	s.lastUsed = now
	return true
}

// StartArray starts one simulated CAS per host, named cas1, cas2, ...,
// all on the same ports. On error it stops those it started.
func StartArray(hosts []string, epm, rca, ab int, log *slog.Logger) ([]*CAS, error) {
	var out []*CAS
	for i, h := range hosts {
		c, err := StartCAS(CASConfig{Name: "cas" + strconv.Itoa(i+1), Host: h, EPMPort: epm, RCAPort: rca, ABPort: ab, Log: log})
		if err != nil {
			for _, o := range out {
				o.Close()
			}
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}
