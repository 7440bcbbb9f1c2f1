//go:build linux

package bench

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"time"

	"github.com/stickylb/stickylb/dcerpc"
)

// opEcDoRpcExt2 is EMSMDB's call that carries Outlook's ROPs
// (MS-OXCRPC 3.1.4.2): what most of a MAPI session's requests are.
const opEcDoRpcExt2 = 11

// maxRPCStub is the largest request stub that fits one fragment of
// dcerpc's size (5840 bytes, less the request's 24 bytes of header).
const maxRPCStub = 5840 - 24

// rpcConn is one DCE/RPC connection's client side, every exchange with
// its own deadline.
type rpcConn struct {
	c       net.Conn
	br      *bufio.Reader
	timeout time.Duration
	next    uint32
	sent    int64
}

// hello binds EMSMDB and makes the first call: its answer names the
// backend.
func (s *rpcConn) hello(stub []byte) (string, error) {
	s.next = 1
	if err := s.send(dcerpc.Bind(s.next, dcerpc.EMSMDB)); err != nil {
		return "", fmt.Errorf("send bind: %w", err)
	}
	p, err := dcerpc.ReadPDU(s.br, nil)
	if err != nil {
		return "", fmt.Errorf("read bind answer: %w", err)
	}
	res, err := dcerpc.ParseBindReply(p)
	if err != nil {
		return "", fmt.Errorf("bind answer: %w", err)
	}
	if !res.Accepted {
		return "", fmt.Errorf("bind of EMSMDB: %w: %s", dcerpc.ErrBindRejected, res)
	}
	name, err := s.call(stub)
	return string(name), err
}

// call sends a request and reads its response.
func (s *rpcConn) call(stub []byte) ([]byte, error) {
	s.next++
	if err := s.send(dcerpc.Request(s.next, opEcDoRpcExt2, stub)); err != nil {
		return nil, fmt.Errorf("send request %d: %w", s.next, err)
	}
	resp, _, err := dcerpc.ReadResponse(s.br, s.next)
	if err != nil {
		return nil, fmt.Errorf("read response %d: %w", s.next, err)
	}
	return resp, nil
}

func (s *rpcConn) send(pdu []byte) error {
	s.c.SetDeadline(time.Now().Add(s.timeout))
	n, err := s.c.Write(pdu)
	s.sent += int64(n)
	return err
}

// rpc is one RPC connection's exchange on c: bind, Calls requests each
// waiting for its answer, the first of which names the backend. The
// bytes counted are the PDUs sent.
func (r *runner) rpc(ctx context.Context, c net.Conn, br *bufio.Reader, client int, start time.Time, buf []byte) {
	s := &rpcConn{c: c, br: br, timeout: r.cfg.Timeout}
	stub := buf[:r.cfg.Size]
	name, err := s.hello(stub)
	if err != nil {
		r.fail(ctx, err)
		return
	}
	r.observe(client, name)
	for range r.cfg.Calls - 1 {
		if _, err := s.call(stub); err != nil {
			r.fail(ctx, err)
			return
		}
	}
	r.done(start, s.sent)
}
