//go:build linux

package proxy

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/stickylb/stickylb/affinity"
	"github.com/stickylb/stickylb/config"
	"github.com/stickylb/stickylb/kit/lbtest"
	"github.com/stickylb/stickylb/pool"
)

func TestMain(m *testing.M) {
	if role := os.Getenv(helperRole); role != "" {
		if err := idleHelper(role, strings.Fields(os.Getenv(helperArgs))); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

// recordingDialer is a Dialer that remembers which client each backend
// leg was opened for, and keeps the backend sockets for inspection.
type recordingDialer struct {
	NetDialer
	mu      sync.Mutex
	clients []netip.AddrPort
	conns   []net.Conn
}

func (d *recordingDialer) Dial(ctx context.Context, client netip.AddrPort, addr string) (net.Conn, error) {
	c, err := d.NetDialer.Dial(ctx, client, addr)
	d.mu.Lock()
	d.clients = append(d.clients, client)
	if c != nil {
		d.conns = append(d.conns, c)
	}
	d.mu.Unlock()
	return c, err
}

func serve(t *testing.T, r *Route) *Listener {
	t.Helper()
	return serveLogged(t, r, io.Discard)
}

// serveLogged serves r on a loopback listener logging to w, until the
// test ends.
func serveLogged(t *testing.T, r *Route, w io.Writer) *Listener {
	t.Helper()
	l, err := Listen(context.Background(), &config.Listener{Name: "test", Listen: "127.0.0.1:0", RangeMode: config.RangeAuto}, 30*time.Second, slog.New(slog.NewTextHandler(w, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if r.Name == "" {
		r.Name = "test"
	}
	l.SetRoute(r)
	done := make(chan struct{})
	go func() { l.Serve(); close(done) }()
	t.Cleanup(func() {
		l.Close()
		<-done
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		l.Wait(ctx)
	})
	return l
}

func route(bs []*lbtest.Backend, port int, d Dialer) *Route {
	var specs []pool.Spec
	for _, b := range bs {
		specs = append(specs, pool.Spec{Name: b.Name, Host: b.Host, Weight: 1})
	}
	return &Route{
		Pool: pool.New("cas", config.Hash, specs), Table: affinity.NewTable(affinity.Config{}),
		Port: port, ConnectTimeout: time.Second, Retries: 2, HalfCloseTimeout: time.Second, Dialer: d,
	}
}

// The dial step is replaceable and is told the client, which is what a
// transparent mode needs.
func TestDialerSeesClient(t *testing.T) {
	bs, ports := lbtest.StartBackends(t, []string{"127.0.0.11"}, 1)
	d := &recordingDialer{NetDialer: NetDialer{Keepalive: 30 * time.Second}}
	l := serve(t, route(bs, ports[0], d))
	c, err := lbtest.Connect("127.4.0.9", l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.clients) != 1 || d.clients[0].Addr() != netip.MustParseAddr("127.4.0.9") {
		t.Fatalf("dialer saw clients %v, want 127.4.0.9", d.clients)
	}
	// TCP keepalive is on for the backend leg, with the configured idle.
	if on, idle := keepaliveOf(t, d.conns[0]); !on || idle != 30 {
		t.Fatalf("backend leg keepalive on=%v idle=%ds, want on and 30s", on, idle)
	}
}

func keepaliveOf(t *testing.T, c net.Conn) (bool, int) {
	t.Helper()
	raw, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var on, idle int
	raw.Control(func(fd uintptr) {
		on, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_KEEPALIVE)
		idle, _ = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_KEEPIDLE)
	})
	return on == 1, idle
}

// Accepted client sockets get keepalive too.
func TestClientLegKeepalive(t *testing.T) {
	l, err := Listen(context.Background(), &config.Listener{Name: "ka", Listen: "127.0.0.1:0", RangeMode: config.RangeAuto}, 45*time.Second, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	checked := make(chan struct{})
	defer close(checked)
	go func() {
		c, err := net.Dial("tcp", l.Addr().String())
		if err == nil {
			defer c.Close()
			<-checked // the client stays until its leg has been looked at
		}
	}()
	c, err := l.lns[0].AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Go applies the listener's keepalive config on accept.
	if on, idle := keepaliveOf(t, c); !on || idle != 45 {
		t.Fatalf("client leg keepalive on=%v idle=%ds, want on and 45s", on, idle)
	}
}

// Client identity is separate from the socket's address: with an
// Identify that says every connection comes from one client, different
// source addresses share one pin.
func TestIdentityIsNotTheSocketAddress(t *testing.T) {
	bs, ports := lbtest.StartBackends(t, []string{"127.0.0.11", "127.0.0.12", "127.0.0.13"}, 1)
	r := route(bs, ports[0], NetDialer{})
	r.Pool = pool.New("cas", config.RoundRobin, []pool.Spec{{Name: "cas1", Host: "127.0.0.11", Weight: 1},
		{Name: "cas2", Host: "127.0.0.12", Weight: 1}, {Name: "cas3", Host: "127.0.0.13", Weight: 1}})
	r.Identify = func(c *net.TCPConn) (Origin, error) {
		o := socketOrigin(c)
		o.Client = netip.MustParseAddrPort("10.20.30.40:1")
		return o, nil
	}
	l := serve(t, r)
	first := ""
	for i := range 6 {
		b, err := lbtest.Who(lbtest.ClientIP(100+i), l.Addr())
		if err != nil {
			t.Fatal(err)
		}
		if first == "" {
			first = b
		}
		if b != first {
			t.Fatalf("source %s reached %s; identity 10.20.30.40 was pinned to %s", lbtest.ClientIP(100+i), b, first)
		}
	}
	if _, err := r.Table.Lookup(affinity.Keyer{}.Key(netip.MustParseAddrPort("10.20.30.40:1"))); err != nil {
		t.Fatalf("no pin under the identified address: %v", err)
	}
}

// Retries are bounded: with every backend refusing, a client is tried on
// at most Retries+1 backends and then closed.
func TestRetriesAreBounded(t *testing.T) {
	bs, ports := lbtest.StartBackends(t, []string{"127.0.0.11", "127.0.0.12", "127.0.0.13"}, 1)
	for _, b := range bs {
		b.StopListening()
	}
	d := &recordingDialer{}
	r := route(bs, ports[0], d)
	r.Retries = 1
	l := serve(t, r)
	c, err := lbtest.Dial("127.4.1.1", l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("read %d, %v: want the client closed", n, err)
	}
	c.Close()
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.clients) != 2 {
		t.Fatalf("%d dials with retries=1, want 2", len(d.clients))
	}
}

// fullBacklog listens on host with an accept queue of one that it never
// accepts from, and fills that slot: further SYNs to it are dropped, so a
// connect to it hangs until its timeout.
func fullBacklog(t *testing.T, host string) netip.AddrPort {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	sa := &unix.SockaddrInet4{Addr: netip.MustParseAddr(host).As4()}
	if err := unix.Bind(fd, sa); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	bound, _ := unix.Getsockname(fd)
	addr := netip.AddrPortFrom(netip.MustParseAddr(host), uint16(bound.(*unix.SockaddrInet4).Port))
	filler, err := net.DialTimeout("tcp", addr.String(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { filler.Close() })
	return addr
}

// recorder keeps what an Observer hears: failed connects, local errors,
// refusals and how connections ended.
type recorder struct {
	mu       sync.Mutex
	accepted int
	reasons  []DialFailure
	errnos   []string
	why      []Refusal
	got      []Termination
}

func (o *recorder) observer() Observer {
	return Observer{
		Accepted: func(string) {
			o.mu.Lock()
			o.accepted++
			o.mu.Unlock()
		},
		ConnectFailed: func(_ string, _ *pool.Backend, reason DialFailure) {
			o.mu.Lock()
			o.reasons = append(o.reasons, reason)
			o.mu.Unlock()
		},
		LocalError: func(_, _, errno string) {
			o.mu.Lock()
			o.errnos = append(o.errnos, errno)
			o.mu.Unlock()
		},
		Ended: func(_ string, e Ending) {
			o.mu.Lock()
			if e.Refusal != "" {
				o.why = append(o.why, e.Refusal)
			}
			o.got = append(o.got, e.Termination)
			o.mu.Unlock()
		},
	}
}

// list is the refusals heard.
func (o *recorder) list() []Refusal {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]Refusal(nil), o.why...)
}

// last waits until the last connection to end ended as want.
func (o *recorder) last(t *testing.T, want Termination) {
	t.Helper()
	lbtest.Eventually(t, 10*time.Second, "ended "+string(want), func() bool {
		o.mu.Lock()
		defer o.mu.Unlock()
		return len(o.got) > 0 && o.got[len(o.got)-1] == want
	})
}

// A backend that does not answer the SYN is given up after the connect
// timeout, counted as a timeout, and the client is closed.
func TestConnectTimeout(t *testing.T) {
	addr := fullBacklog(t, "127.0.0.14")
	r := &Route{
		Pool:  pool.New("cas", config.Hash, []pool.Spec{{Name: "cas1", Host: "127.0.0.14", Weight: 1}}),
		Table: affinity.NewTable(affinity.Config{}), Port: int(addr.Port()),
		ConnectTimeout: 300 * time.Millisecond, HalfCloseTimeout: time.Second, Dialer: NetDialer{},
	}
	obs := &recorder{}
	r.Observer = obs.observer()
	l := serve(t, r)
	c, err := lbtest.Dial("127.4.3.1", l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("read %d, %v: want the client closed", n, err)
	}
	if d := time.Since(start); d < 250*time.Millisecond || d > 3*time.Second {
		t.Fatalf("client closed after %s, want about the 300ms connect timeout", d)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if len(obs.reasons) != 1 || obs.reasons[0] != "timeout" {
		t.Fatalf("connect failures %v, want [timeout]", obs.reasons)
	}
}

// stallingDialer holds the dial of one client until released.
type stallingDialer struct {
	NetDialer
	stall   netip.Addr
	stalled chan struct{}
	release chan struct{}
}

func (d *stallingDialer) Dial(ctx context.Context, client netip.AddrPort, addr string) (net.Conn, error) {
	if client.Addr() == d.stall {
		close(d.stalled)
		<-d.release
	}
	return d.NetDialer.Dial(ctx, client, addr)
}

// Connections are set up in parallel: a client whose backend is slow to
// answer does not hold up the next client's connection.
func TestSlowDialHoldsNoOneElse(t *testing.T) {
	bs, ports := lbtest.StartBackends(t, []string{"127.0.0.11"}, 1)
	d := &stallingDialer{stall: netip.MustParseAddr("127.4.4.1"), stalled: make(chan struct{}), release: make(chan struct{})}
	l := serve(t, route(bs, ports[0], d))
	release := sync.OnceFunc(func() { close(d.release) })
	t.Cleanup(release) // before the listener's cleanup, which waits for the dial
	slow, err := lbtest.Dial("127.4.4.1", l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	<-d.stalled
	// Several in a row, so a set-up worker that finished one is reused
	// while the first is still stalled.
	for i := range 5 {
		who, err := lbtest.Who("127.4.4.2", l.Addr())
		if err != nil || who != "cas1" {
			t.Fatalf("connection %d while another dial stalls: %q, %v", i, who, err)
		}
	}
	release()
	slow.SetReadDeadline(time.Now().Add(5 * time.Second))
	line := make([]byte, 5)
	if _, err := io.ReadFull(slow, line); err != nil || string(line) != "cas1\n" {
		t.Fatalf("stalled client got %q, %v after release", line, err)
	}
}

// A Route with only its pool and port set works: every other zero value
// means a default (connect timeout, plain dialer, no pins, one attempt).
func TestZeroRouteWorks(t *testing.T) {
	bs, ports := lbtest.StartBackends(t, casHosts[:1], 1)
	r := &Route{Pool: pool.New("cas", config.Hash, []pool.Spec{{Name: bs[0].Name, Host: bs[0].Host, Weight: 1}}), Port: ports[0]}
	l := serve(t, r)
	if b, err := lbtest.Who(lbtest.ClientIP(9100), l.Addr()); err != nil || b != bs[0].Name {
		t.Fatalf("through a zero-valued route: %q, %v", b, err)
	}
}
