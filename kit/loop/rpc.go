//go:build linux

package loop

import (
	"bufio"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/stickylb/stickylb/dcerpc"
)

// rpcIdle is how long an RPC connection may wait for its client's next
// PDU: a benchmark's client that is silent this long has gone.
const rpcIdle = 30 * time.Second

// ListenRPC serves DCE/RPC on port (0: any free one) and returns the
// port. Every bind and alter_context is accepted and every request is
// answered with a response whose stub is the backend's name, so that a
// client learns which backend it reached from its first answer, as the
// echo port's greeting tells it. Only the framing is real (package
// dcerpc): enough for a balancer that reads PDU headers to do its work.
func (b *Backend) ListenRPC(port int) (int, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(b.Host, strconv.Itoa(port)))
	if err != nil {
		return 0, fmt.Errorf("backend %s: listen for DCE/RPC: %w", b.Name, err)
	}
	port = ln.Addr().(*net.TCPAddr).Port
	b.serve(port, ln, func(c net.Conn) { b.serveRPC(c, port) })
	return port, nil
}

// serveRPC answers c's PDUs until it closes, sends what is not DCE/RPC,
// or stays silent for rpcIdle. port is named in the bind_acks.
func (b *Backend) serveRPC(c net.Conn, port int) {
	r := bufio.NewReader(c)
	buf := make([]byte, 0, 8<<10) // over dcerpc's fragment size: one buffer for every PDU
	name := []byte(b.Name)
	for {
		c.SetDeadline(time.Now().Add(rpcIdle))
		p, err := dcerpc.ReadPDU(r, buf)
		if err != nil {
			return
		}
		out := rpcAnswer(p, name, strconv.Itoa(port))
		if out == nil {
			continue
		}
		if _, err := c.Write(out); err != nil {
			return
		}
	}
}

// rpcAnswer is the answer to p, or nil for a PDU that has none (auth3,
// orphaned, a stray response).
func rpcAnswer(p dcerpc.PDU, name []byte, port string) []byte {
	switch p.Type {
	case dcerpc.TypeBind:
		return dcerpc.BindAck(p.CallID, true, port)
	case dcerpc.TypeAlterContext:
		return dcerpc.AlterContextResp(p.CallID, true)
	case dcerpc.TypeRequest:
		return dcerpc.Response(p.CallID, name)
	}
	return nil
}
