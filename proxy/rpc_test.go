//go:build linux

package proxy

import (
	"bytes"
	"io"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stickylb/stickylb/affinity"
	"github.com/stickylb/stickylb/config"
	"github.com/stickylb/stickylb/dcerpc"
	"github.com/stickylb/stickylb/kit/lbtest"
	"github.com/stickylb/stickylb/pool"
)

// unknownIface is an interface the test CAS does not serve.
var unknownIface = dcerpc.Syntax{UUID: dcerpc.UUID{0x12, 0x34, 0x57, 0x78}, Major: 1}

// rpcRig is a route of depth to RPC backends cas1 (127.0.0.81) and cas2
// (.82), which accept EMSMDB, NSPI and the endpoint mapper, answer
// opnum 9 with nca_s_unk_if and take delay over every answer; it
// records every outcome and every ending.
type rpcRig struct {
	l        *Listener
	r        *Route
	mu       sync.Mutex
	outcomes []RPCOutcome
	endings  []Ending
}

func newRPCRig(t *testing.T, depth config.DCERPC, delay time.Duration) *rpcRig {
	hosts := []string{"127.0.0.81", "127.0.0.82"}
	port := freePort(t, hosts...)
	var specs []pool.Spec
	for i, h := range hosts {
		name := []string{"cas1", "cas2"}[i]
		lbtest.StartRPC(t, h, port, lbtest.RPCServer{Name: name, Delay: delay,
			Accept: func(s dcerpc.Syntax) bool { return s.Name() != "" },
			Fault: func(op uint16) uint32 {
				if op == 9 {
					return 0x1c010003
				}
				return 0
			}})
		specs = append(specs, pool.Spec{Name: name, Host: h, Weight: 1})
	}
	g := &rpcRig{}
	g.r = &Route{Pool: pool.New("cas", config.Hash, specs), Table: affinity.NewTable(affinity.Config{}),
		Port: port, ConnectTimeout: time.Second, HalfCloseTimeout: time.Second, DCERPC: depth}
	g.r.Observer.RPC = func(_ string, _ *pool.Backend, o RPCOutcome) {
		g.mu.Lock()
		g.outcomes = append(g.outcomes, o)
		g.mu.Unlock()
	}
	g.r.Observer.Ended = func(_ string, e Ending) {
		g.mu.Lock()
		g.endings = append(g.endings, e)
		g.mu.Unlock()
	}
	g.l = serve(t, g.r)
	return g
}

func (g *rpcRig) told() []RPCOutcome {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.outcomes)
}

// session is the RPC session of the one open connection from client.
func (g *rpcRig) session(t *testing.T, client string) (ConnInfo, *RPCSession) {
	t.Helper()
	for _, in := range g.l.Conns() {
		if in.Client.Addr() == netip.MustParseAddr(client) {
			return in, in.RPC
		}
	}
	t.Fatalf("no connection from %s open", client)
	return ConnInfo{}, nil
}

func dialRPC(t *testing.T, src string, dst netip.AddrPort) *lbtest.RPCClient {
	t.Helper()
	c, err := lbtest.DialRPC(src, dst)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// With dcerpc = "binds", each connection shows the interface its client
// bound, whether it was accepted, and the port it dialled; the calls
// after the bind go unread (to the splice path), so only the binds are
// told.
func TestBindsShowInTheConnectionTable(t *testing.T) {
	g := newRPCRig(t, config.RPCBinds, 0)
	cases := []struct {
		client string
		iface  dcerpc.Syntax
		word   string
	}{{"127.40.0.1", dcerpc.EMSMDB, "accepted"}, {"127.40.0.2", dcerpc.NSPI, "accepted"}, {"127.40.0.3", unknownIface, "rejected"}}
	for _, tc := range cases {
		c := dialRPC(t, tc.client, g.l.Addr())
		if _, err := c.Bind(tc.iface, false); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Call(1); err != nil {
			t.Fatalf("call after the bind: %v", err)
		}
		in, s := g.session(t, tc.client)
		if s == nil || !s.Bound || s.Interface != tc.iface || s.BindWord() != tc.word || s.Since.IsZero() {
			t.Fatalf("%s: session %+v, want %s %s", tc.client, s, tc.iface, tc.word)
		}
		if in.Port != int(g.l.Addr().Port()) || s.Calls != 0 {
			t.Fatalf("%s: port %d (want %d), %d calls read in binds mode", tc.client, in.Port, g.l.Addr().Port(), s.Calls)
		}
	}
	told := g.told()
	if len(told) != 3 || told[0].Kind != RPCBind || !told[0].OK() || told[2].OK() {
		t.Fatalf("told %+v, want three binds, the last rejected", told)
	}
	if InterfaceName(dcerpc.EMSMDB) != "EMSMDB a4f1db00-ca47-1067-b31f-00dd010662da v0.81" {
		t.Fatalf("EMSMDB is named %q", InterfaceName(dcerpc.EMSMDB))
	}
}

// With dcerpc off, nothing is read: no session, nothing told.
func TestNothingReadWhenOff(t *testing.T) {
	g := newRPCRig(t, config.RPCOff, 0)
	c := dialRPC(t, "127.40.0.4", g.l.Addr())
	if _, err := c.Bind(dcerpc.EMSMDB, false); err != nil {
		t.Fatal(err)
	}
	if _, s := g.session(t, "127.40.0.4"); s != nil || len(g.told()) != 0 {
		t.Fatalf("session %+v, told %v with dcerpc off", s, g.told())
	}
}

// With dcerpc = "calls", every call's end is told with the time from
// its request (the CAS takes 20ms), a fault with its status, and a
// rejection of an alter_context; the session counts calls and faults.
func TestCallsTellFaultsAndLatency(t *testing.T) {
	g := newRPCRig(t, config.RPCCalls, 20*time.Millisecond)
	c := dialRPC(t, "127.40.0.5", g.l.Addr())
	if _, err := c.Bind(dcerpc.EMSMDB, false); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Call(1); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Call(9); !lbtest.IsFault(err, 0x1c010003) {
		t.Fatalf("call 9 answered %v, want the fault", err)
	}
	if res, err := c.Bind(unknownIface, true); err != nil || res.Accepted {
		t.Fatalf("alter_context answered %v %v", res, err)
	}
	lbtest.Eventually(t, 2*time.Second, "four outcomes told", func() bool { return len(g.told()) == 4 })
	told := g.told()
	bind, ok, fault, alter := told[0], told[1], told[2], told[3]
	if bind.Kind != RPCBind || bind.Interface != dcerpc.EMSMDB || !bind.OK() {
		t.Errorf("bind told as %+v", bind)
	}
	if ok.Kind != RPCCall || !ok.OK() || ok.Elapsed < 20*time.Millisecond || ok.Elapsed > time.Second {
		t.Errorf("call told as %+v, want ok after 20ms", ok)
	}
	if fault.Kind != RPCCall || !fault.Fault || fault.Status != 0x1c010003 || fault.Elapsed < 20*time.Millisecond {
		t.Errorf("fault told as %+v", fault)
	}
	if alter.Kind != RPCBind || !alter.Alter || alter.OK() || alter.Interface != unknownIface {
		t.Errorf("alter_context told as %+v", alter)
	}
	if _, s := g.session(t, "127.40.0.5"); s.Calls != 2 || s.Faults != 1 || s.Interface != unknownIface || s.BindWord() != "rejected" {
		t.Errorf("session %+v", s)
	}
}

// Reading never breaks a stream: bytes that are not DCE/RPC, in bulk,
// go through unchanged, both ways, in every mode, and are counted.
func TestReadingNeverBreaksAStream(t *testing.T) {
	for _, depth := range []config.DCERPC{config.RPCBinds, config.RPCCalls} {
		t.Run(depth.String(), func(t *testing.T) {
			bs, ports := lbtest.StartBackends(t, []string{"127.0.0.11"}, 1)
			r := route(bs, ports[0], nil)
			r.DCERPC = depth
			ended := make(chan Ending, 1)
			r.Observer.Ended = func(_ string, e Ending) { ended <- e }
			l := serve(t, r)
			c, err := lbtest.Connect("127.40.0.6", l.Addr())
			if err != nil {
				t.Fatal(err)
			}
			payload := make([]byte, 1<<20)
			for i := range payload {
				payload[i] = byte(rand.Uint32())
			}
			payload[0] = 5 // looks like DCE/RPC version 5 for a byte
			go func() {
				c.Write(payload)
				c.CloseWrite()
			}()
			got, err := io.ReadAll(c.R)
			c.Close()
			if err != nil || !bytes.Equal(got, payload) {
				t.Fatalf("echoed %d of %d bytes, equal %v: %v", len(got), len(payload), bytes.Equal(got, payload), err)
			}
			e := <-ended
			if e.RPCUnparsed == 0 || e.RPCUnparsed > int64(len(payload))*2+5 {
				t.Fatalf("%d bytes unparsed of %d", e.RPCUnparsed, 2*len(payload)+5)
			}
		})
	}
}

// Faults read on real connections eject their CAS ([pool.NAME.outlier]):
// three calls in a row answered with a fault through the proxy, and the
// CAS takes no new clients for the ejection time.
func TestFaultsThroughTheProxyEjectTheCAS(t *testing.T) {
	g := newRPCRig(t, config.RPCCalls, 0)
	g.r.Pool.SetOutlier(&pool.Outlier{ConsecutiveFaults: 3, Interval: time.Minute, EjectionTime: time.Minute,
		MaxEjectionTime: time.Minute, MaxEjectedShare: 50}, nil)
	c := dialRPC(t, "127.40.0.9", g.l.Addr())
	if _, err := c.Bind(dcerpc.EMSMDB, false); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := c.Call(9); !lbtest.IsFault(err, 0x1c010003) {
			t.Fatalf("call 9 answered %v, want the fault", err)
		}
	}
	in, _ := g.session(t, "127.40.0.9")
	lbtest.Eventually(t, 2*time.Second, "the faulting CAS ejected", func() bool {
		_, ejected := in.Backend.Ejected()
		return ejected
	})
	if in.Backend.TakesNew() {
		t.Fatalf("%s is ejected but takes new clients", in.Backend.Name)
	}
}
