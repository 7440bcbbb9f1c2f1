//go:build linux

package lbtest

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stickylb/stickylb/dcerpc"
)

// RPCServer says how an RPC backend answers, with package dcerpc's
// framing: as a CAS's RPC Client Access or Address Book service would,
// closely enough for a balancer that reads PDU headers.
type RPCServer struct {
	// Name is what every request is answered with, so a client knows
	// which backend it reached.
	Name string
	// Accept says which interfaces a bind or alter_context is accepted
	// for; nil accepts every one. Others are rejected in a bind_ack
	// (abstract syntax not supported), or with a bind_nak when Nak.
	Accept func(dcerpc.Syntax) bool
	Nak    bool
	// Fault, if set, gives the fault status a request of opnum is
	// answered with; 0 answers with a response.
	Fault func(opnum uint16) uint32
	// Answer, if set, gives the stub a request of opnum is answered
	// with (an endpoint mapper's map, say); nil answers with Name.
	Answer func(opnum uint16) []byte
	// Delay is how long each request waits for its answer.
	Delay time.Duration
}

// StartRPC serves s on host:port until the test ends; port 0 picks one.
// It returns the address.
func StartRPC(t testing.TB, host string, port int, s RPCServer) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		t.Fatalf("RPC server %s: %v", s.Name, err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	open := map[net.Conn]struct{}{}
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			open[c] = struct{}{}
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				s.serve(c)
			})
		}
	})
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

// serve answers one connection's PDUs until it closes.
func (s RPCServer) serve(c net.Conn) {
	r := bufio.NewReader(c)
	for {
		p, err := dcerpc.ReadPDU(r, nil)
		if err != nil {
			return
		}
		var out []byte
		switch p.Type {
		case dcerpc.TypeBind, dcerpc.TypeAlterContext:
			iface, _ := dcerpc.ParseBind(p)
			ok := s.Accept == nil || s.Accept(iface)
			switch {
			case p.Type == dcerpc.TypeAlterContext:
				out = dcerpc.AlterContextResp(p.CallID, ok)
			case !ok && s.Nak:
				out = dcerpc.BindNak(p.CallID, 4)
			default:
				out = dcerpc.BindAck(p.CallID, ok, "60001")
			}
		case dcerpc.TypeRequest:
			time.Sleep(s.Delay)
			op, _ := dcerpc.Opnum(p)
			switch {
			case s.Fault != nil && s.Fault(op) != 0:
				out = dcerpc.FaultResponse(p.CallID, s.Fault(op))
			case s.Answer != nil:
				out = dcerpc.Response(p.CallID, s.Answer(op))
			default:
				out = dcerpc.Response(p.CallID, []byte(s.Name))
			}
		default:
			continue
		}
		if _, err := c.Write(out); err != nil {
			return
		}
	}
}

// RPCClient is one DCE/RPC connection from a chosen source address.
type RPCClient struct {
	C    *net.TCPConn
	r    *bufio.Reader
	next uint32
}

// DialRPC connects from src to dst; every exchange has 5 s.
func DialRPC(src string, dst netip.AddrPort) (*RPCClient, error) {
	c, err := Dial(src, dst)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	return &RPCClient{C: c, r: bufio.NewReader(c), next: 1}, nil
}

// Close closes the connection.
func (c *RPCClient) Close() error { return c.C.Close() }

// Bind binds iface (an alter_context when alter) and returns the answer.
func (c *RPCClient) Bind(iface dcerpc.Syntax, alter bool) (dcerpc.BindResult, error) {
	pdu := dcerpc.Bind(c.next, iface)
	if alter {
		pdu = dcerpc.AlterContext(c.next, iface)
	}
	c.next++
	c.C.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.C.Write(pdu); err != nil {
		return dcerpc.BindResult{}, fmt.Errorf("send bind: %w", err)
	}
	p, err := dcerpc.ReadPDU(c.r, nil)
	if err != nil {
		return dcerpc.BindResult{}, fmt.Errorf("read bind answer: %w", err)
	}
	if p.Type == dcerpc.TypeAlterContextResp {
		p.Type = dcerpc.TypeBindAck
	}
	return dcerpc.ParseBindReply(p)
}

// Call calls opnum and returns the server's answer: its stub, or a
// dcerpc.Fault error.
func (c *RPCClient) Call(opnum uint16) ([]byte, error) {
	id := c.next
	c.next++
	c.C.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.C.Write(dcerpc.Request(id, opnum, []byte("stub"))); err != nil {
		return nil, fmt.Errorf("send request: %w", err)
	}
	stub, _, err := dcerpc.ReadResponse(c.r, id)
	return stub, err
}

// IsFault says err is a fault with status.
func IsFault(err error, status uint32) bool {
	var f dcerpc.Fault
	return errors.As(err, &f) && uint32(f) == status
}

// StartRPCs starts an RPC backend on each host, all on one port, which
// it returns; server names each host's.
func StartRPCs(t testing.TB, hosts []string, server func(i int) RPCServer) int {
	t.Helper()
	for range 100 {
		port := 10000 + rand.IntN(20000)
		free := true
		for _, h := range hosts {
			ln, err := net.Listen("tcp", net.JoinHostPort(h, strconv.Itoa(port)))
			if err != nil {
				free = false
				break
			}
			ln.Close()
		}
		if !free {
			continue
		}
		for i, h := range hosts {
			StartRPC(t, h, port, server(i))
		}
		return port
	}
	t.Fatalf("no port free on all of %v", hosts)
	return 0
}
