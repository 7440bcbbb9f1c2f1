//go:build linux

package proxy

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stickylb/stickylb/config"
	"github.com/stickylb/stickylb/dcerpc"
)

// Pinholes are the ports a listener of the endpoint mapper learned by
// reading the CAS's ept_map answers (Route.InspectDCERPC), as Cisco
// ASA's `inspect dcerpc` opens a pinhole: for each port a CAS handed to
// a client, a socket on the listener's address at that port, opened on
// demand, that accepts that client's connections only and forwards them
// to that CAS, at that port. A port lives while its connections do and
// for Route.PinholeTimeout after the last one closed (or after it was
// handed out, if no connection came). A CAS hands out two ports
// (RPC Client Access and the Address Book), so this is a handful of
// sockets, with no BPF.
//
// The listener of the endpoint mapper owns its Pinholes: it closes them
// when it closes, and its SetRoute reaches their sockets.
type Pinholes struct {
	owner *Listener
	host  netip.Addr

	mu      sync.Mutex
	opening sync.Mutex // held across a port's bind: see open
	ports   map[uint16]*pinPort
	closed  bool
	started bool
	stop    chan struct{}
	wg      sync.WaitGroup

	learned, unparsed, openFailed atomic.Uint64
}

// pinPort is one learned port: its socket and the clients it was handed
// to.
type pinPort struct {
	ln      *Listener
	clients map[netip.Addr]*pinhole
}

// pinhole is one client's use of one learned port.
type pinhole struct {
	backend string        // the CAS that handed it out
	iface   dcerpc.Syntax // the interface it was handed out for
	conns   int           // its connections open now
	until   time.Time     // when it lapses, once conns is 0
}

// PinholeStats are a listener's pinholes as metrics read them.
type PinholeStats struct {
	// Ports and Clients are the learned ports open now, and the
	// (client, port) pairs they admit.
	Ports, Clients int
	// Learned counts (client, port) pairs learned from ept_map answers;
	// OpenFailed the learned ports whose socket could not be opened;
	// Unparsed the bytes on the endpoint mapper's connections the
	// reader passed over (forwarded unread).
	Learned, OpenFailed, Unparsed uint64
}

func newPinholes(owner *Listener, host netip.Addr) *Pinholes {
	return &Pinholes{owner: owner, host: host, ports: map[uint16]*pinPort{}, stop: make(chan struct{})}
}

// Stats returns the pinholes' counts now.
func (p *Pinholes) Stats() PinholeStats {
	p.mu.Lock()
	s := PinholeStats{Ports: len(p.ports)}
	for _, pp := range p.ports {
		s.Clients += len(pp.clients)
	}
	p.mu.Unlock()
	s.Learned, s.OpenFailed, s.Unparsed = p.learned.Load(), p.openFailed.Load(), p.unparsed.Load()
	return s
}

// timeout is the route's PinholeTimeout, or the default.
func (p *Pinholes) timeout() time.Duration {
	if r := p.owner.route.Load(); r != nil && r.PinholeTimeout > 0 {
		return r.PinholeTimeout
	}
	return config.DefaultPinholeTimeout
}

// route is what a learned port's socket follows: the endpoint mapper's
// route, to the port learned, with the pinholes deciding the backend.
func (p *Pinholes) route(r *Route, port uint16) *Route {
	d := *r
	d.Name = r.Name + "-pinhole"
	d.Port, d.ClientPorts = int(port), config.Ports{}
	d.InspectDCERPC, d.pinholes = false, p
	return &d
}

// learn admits client at the TCP endpoints a CAS (backend) handed it,
// opening the ports not open yet. It runs before the answer is passed
// on to the client, so the port is open before the client can dial it.
func (p *Pinholes) learn(client netip.Addr, backend string, eps []dcerpc.Endpoint) {
	client = client.Unmap()
	for _, e := range eps {
		admit := func(pp *pinPort) {
			ph := pp.clients[client]
			if ph == nil {
				ph = &pinhole{}
				pp.clients[client] = ph
			}
			ph.backend, ph.iface, ph.until = backend, e.Interface, time.Now().Add(p.timeout())
			p.learned.Add(1)
		}
		if err := p.open(e.Port, admit); err != nil {
			p.openFailed.Add(1)
			p.owner.log.Warn("pinhole not opened: the client cannot reach the port its CAS handed out",
				"listener", p.owner.Name, "client", client, "backend", backend, "port", e.Port, "interface", e.Interface.String(), "error", err)
		}
	}
}

// open opens the socket of a learned port, unless it is open, and
// calls admit with it under the lock, so that expire cannot close a
// port between its opening and its first client. Opens are one at a
// time (p.opening): two answers handing out the same port at once would
// otherwise both bind it, and the second would fail with "address
// already in use", leaving its client without the port. Binding takes
// microseconds and a CAS hands out two ports, so the wait is short.
func (p *Pinholes) open(port uint16, admit func(*pinPort)) error {
	if open, err := p.admitOpen(port, admit); open || err != nil {
		return err
	}
	p.opening.Lock()
	defer p.opening.Unlock()
	if open, err := p.admitOpen(port, admit); open || err != nil { // opened while this one waited
		return err
	}
	host := ""
	if p.host.IsValid() {
		host = p.host.String()
	}
	addr := net.JoinHostPort(host, strconv.Itoa(int(port)))
	ln, err := listen(context.Background(), &config.Listener{Name: p.owner.Name + "-pinhole", Listen: addr, RangeMode: config.RangeAuto}, p.owner.keepalive, p.owner.log, nil, nil)
	if err != nil {
		return err
	}
	ln.SetRoute(p.route(p.owner.route.Load(), port))
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		ln.Close()
		return fmt.Errorf("listener %s is closed", p.owner.Name)
	}
	pp := &pinPort{ln: ln, clients: map[netip.Addr]*pinhole{}}
	admit(pp)
	p.ports[port] = pp
	if !p.started {
		p.started = true
		p.wg.Go(p.expire)
	}
	p.wg.Go(func() { ln.Serve() })
	p.owner.log.Info("pinhole opened", "listener", p.owner.Name, "addr", addr)
	return nil
}

// admitOpen admits a client on port if its socket is open, and says
// whether it was; once the listener is closed, nothing opens.
func (p *Pinholes) admitOpen(port uint16, admit func(*pinPort)) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false, fmt.Errorf("listener %s is closed", p.owner.Name)
	}
	pp := p.ports[port]
	if pp != nil {
		admit(pp)
	}
	return pp != nil, nil
}

// hold takes a connection of client to port on its pinhole, and returns
// the CAS that handed the port out and the release to call when the
// connection ends; ok is false if the port was not handed to client.
func (p *Pinholes) hold(client netip.Addr, port uint16) (backend string, iface dcerpc.Syntax, release func(), ok bool) {
	client = client.Unmap()
	p.mu.Lock()
	defer p.mu.Unlock()
	pp := p.ports[port]
	if pp == nil {
		return "", dcerpc.Syntax{}, nil, false
	}
	ph := pp.clients[client]
	if ph == nil || (ph.conns == 0 && time.Now().After(ph.until)) {
		return "", dcerpc.Syntax{}, nil, false
	}
	ph.conns++
	var once sync.Once
	return ph.backend, ph.iface, func() {
		once.Do(func() {
			p.mu.Lock()
			ph.conns--
			if ph.conns == 0 {
				ph.until = time.Now().Add(p.timeout())
			}
			p.mu.Unlock()
		})
	}, true
}

// expire closes pinholes that lapsed, and the sockets of ports left
// with none, a few times per timeout.
func (p *Pinholes) expire() {
	for {
		tick := time.NewTimer(max(p.timeout()/4, 50*time.Millisecond))
		select {
		case <-p.stop:
			tick.Stop()
			return
		case <-tick.C:
		}
		now := time.Now()
		p.mu.Lock()
		for port, pp := range p.ports {
			for c, ph := range pp.clients {
				if ph.conns == 0 && now.After(ph.until) {
					delete(pp.clients, c)
				}
			}
			if len(pp.clients) == 0 && pp.ln.Active() == 0 {
				pp.ln.Close()
				delete(p.ports, port)
				p.owner.log.Info("pinhole closed", "listener", p.owner.Name, "port", port)
			}
		}
		p.mu.Unlock()
	}
}

// setRoute gives the learned ports' sockets the endpoint mapper's new
// route.
func (p *Pinholes) setRoute(r *Route) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for port, pp := range p.ports {
		pp.ln.SetRoute(p.route(r, port))
	}
}

// listeners returns the learned ports' sockets.
func (p *Pinholes) listeners() []*Listener {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []*Listener
	for _, port := range slices.Sorted(maps.Keys(p.ports)) {
		out = append(out, p.ports[port].ln)
	}
	return out
}

// Listeners returns the sockets of the ports learned so far, each a
// listener of its own (named after its owner, "-pinhole"), whose
// connections are the owner's clients on the ports their CAS handed out;
// none when p is nil (a listener that does not follow).
func (p *Pinholes) Listeners() []*Listener {
	if p == nil {
		return nil
	}
	return p.listeners()
}

// close stops accepting on every learned port; their connections go on
// (the owner's Wait waits for them).
func (p *Pinholes) close() {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		close(p.stop)
		for _, pp := range p.ports {
			pp.ln.Close()
		}
	}
	p.mu.Unlock()
}
