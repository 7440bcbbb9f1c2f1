//go:build linux

package bench

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/stickylb/stickylb/dcerpc"
)

// opEcDoRpcExt2 is EMSMDB's call that carries Outlook's ROPs
// (MS-OXCRPC 3.1.4.2): what most of a MAPI session's requests are.
const opEcDoRpcExt2 = 11

// rpcHello binds EMSMDB on c and makes the first call, whose answer
// names the backend (loop's RPC port); each exchange has timeout.
func rpcHello(cl *dcerpc.Client, c net.Conn, stub []byte, timeout time.Duration) (string, error) {
	c.SetDeadline(time.Now().Add(timeout))
	if err := cl.Bind(dcerpc.EMSMDB); err != nil {
		return "", fmt.Errorf("bind of EMSMDB: %w", err)
	}
	name, err := rpcCall(cl, c, stub, timeout)
	return string(name), err
}

func rpcCall(cl *dcerpc.Client, c net.Conn, stub []byte, timeout time.Duration) ([]byte, error) {
	c.SetDeadline(time.Now().Add(timeout))
	resp, _, err := cl.Call(opEcDoRpcExt2, stub)
	if err != nil {
		return nil, fmt.Errorf("call: %w", err)
	}
	return resp, nil
}

// rpc is one RPC connection's exchange on c: bind, Calls requests each
// waiting for its answer, the first of which names the backend. The
// bytes counted are the stubs sent.
func (r *runner) rpc(ctx context.Context, c net.Conn, client int, start time.Time, buf []byte) {
	cl := dcerpc.NewClient(c)
	stub := buf[:r.cfg.Size]
	name, err := rpcHello(cl, c, stub, r.cfg.Timeout)
	if err != nil {
		r.fail(ctx, err)
		return
	}
	r.observe(client, name)
	for range r.cfg.Calls - 1 {
		if _, err := rpcCall(cl, c, stub, r.cfg.Timeout); err != nil {
			r.fail(ctx, err)
			return
		}
	}
	r.done(start, int64(r.cfg.Calls*len(stub)))
}
