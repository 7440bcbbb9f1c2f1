//go:build linux

package proxy

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stickylb/stickylb/affinity"
	"github.com/stickylb/stickylb/config"
	"github.com/stickylb/stickylb/dcerpc"
	"github.com/stickylb/stickylb/kit/lbtest"
	"github.com/stickylb/stickylb/pool"
)

// freePort returns a port of 10000-19999 free on every host now.
func freePort(t *testing.T, hosts ...string) int {
	t.Helper()
	for range 100 {
		p, ok := 10000+rand.IntN(10000), true
		for _, h := range hosts {
			ln, err := net.Listen("tcp", net.JoinHostPort(h, strconv.Itoa(p)))
			if err != nil {
				ok = false
				break
			}
			ln.Close()
		}
		if ok {
			return p
		}
	}
	t.Fatalf("no port free on all of %v", hosts)
	return 0
}

// cas is a simulated CAS on host: an endpoint mapper on epm handing out
// EMSMDB at svc, and EMSMDB there answering with the CAS's name.
func cas(t *testing.T, name, host string, epm, svc int) {
	ep := dcerpc.Endpoint{Interface: dcerpc.EMSMDB, Protocol: 0x07, Port: uint16(svc), Addr: netip.MustParseAddr(host)}
	lbtest.StartRPC(t, host, epm, lbtest.RPCServer{Name: name + "-epm", Answer: func(op uint16) []byte {
		if op != dcerpc.OpMap {
			return nil
		}
		return dcerpc.MapResponse(4, []dcerpc.Endpoint{ep})
	}})
	lbtest.StartRPC(t, host, svc, lbtest.RPCServer{Name: name})
}

// rpcCall binds iface at dst from src and calls opnum with stub; it
// returns the answer's stub.
func rpcCall(src string, dst netip.AddrPort, iface dcerpc.Syntax, opnum uint16, stub []byte) ([]byte, error) {
	c, err := lbtest.Dial(src, dst)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	if _, err := c.Write(dcerpc.Bind(1, iface)); err != nil {
		return nil, err
	}
	p, err := dcerpc.ReadPDU(r, nil)
	if err != nil {
		return nil, fmt.Errorf("bind at %s from %s: %w", dst, src, err)
	}
	if res, err := dcerpc.ParseBindReply(p); err != nil || !res.Accepted {
		return nil, fmt.Errorf("bind at %s: %v %w", dst, res, err)
	}
	if _, err := c.Write(dcerpc.Request(2, opnum, stub)); err != nil {
		return nil, err
	}
	out, _, err := dcerpc.ReadResponse(r, 2)
	return out, err
}

// lookup asks the endpoint mapper at dst from src for EMSMDB's port.
func lookup(src string, dst netip.AddrPort) (uint16, error) {
	stub, err := rpcCall(src, dst, dcerpc.EPM, dcerpc.OpMap, dcerpc.MapRequest(dcerpc.EMSMDB))
	if err != nil {
		return 0, err
	}
	res, err := dcerpc.ParseMapResponse(stub, binary.LittleEndian)
	if err != nil || len(res.Ports) == 0 {
		return 0, fmt.Errorf("ept_map answered %+v, %w", res, err)
	}
	return res.Ports[0], nil
}

// epmRig is two simulated CASes (127.0.0.71 and .72, each handing out
// its own EMSMDB port) behind a listener of their endpoint mapper on
// 127.0.0.70 that inspects it.
type epmRig struct {
	l       *Listener
	r       *Route
	vip     string
	svc     map[string]int // CAS name -> the port it hands out
	refused sync.Map       // Refusal -> *atomic.Int64
}

func newEPMRig(t *testing.T, timeout time.Duration) *epmRig {
	g := &epmRig{vip: "127.0.0.70", svc: map[string]int{}}
	hosts := map[string]string{"cas1": "127.0.0.71", "cas2": "127.0.0.72"}
	epm := freePort(t, hosts["cas1"], hosts["cas2"])
	var specs []pool.Spec
	for _, name := range []string{"cas1", "cas2"} {
		g.svc[name] = freePort(t, hosts[name], g.vip)
		cas(t, name, hosts[name], epm, g.svc[name])
		specs = append(specs, pool.Spec{Name: name, Host: hosts[name], Weight: 1})
	}
	g.r = &Route{Name: "epm", Pool: pool.New("cas", config.Hash, specs), Table: affinity.NewTable(affinity.Config{}),
		Port: epm, ConnectTimeout: time.Second, HalfCloseTimeout: time.Second,
		InspectDCERPC: true, PinholeTimeout: timeout}
	g.r.Observer.Ended = func(_ string, e Ending) {
		if e.Refusal != "" {
			v, _ := g.refused.LoadOrStore(e.Refusal, new(atomic.Int64))
			v.(*atomic.Int64).Add(1)
		}
	}
	l, err := Listen(context.Background(), &config.Listener{Name: "epm", Listen: g.vip + ":0", RangeMode: config.RangeAuto}, 30*time.Second, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	l.SetRoute(g.r)
	done := make(chan struct{})
	go func() { l.Serve(); close(done) }()
	t.Cleanup(func() {
		l.Close()
		<-done
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		l.Wait(ctx)
	})
	g.l = l
	return g
}

func (g *epmRig) refusals(why Refusal) int64 {
	if v, ok := g.refused.Load(why); ok {
		return v.(*atomic.Int64).Load()
	}
	return 0
}

func (g *epmRig) at(port uint16) netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr(g.vip), port)
}
