//go:build linux

package lab

import (
	"errors"
	"hash/fnv"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Mode is a balancer behaviour known to break MAPI sessions. These live
// only here: no stickylb config can select them.
type Mode int

const (
	// PerConnection balances every connection afresh, round robin: the
	// "no affinity" misconfiguration.
	PerConnection Mode = iota
	// NLBHash hashes the source address over the current members, as
	// Windows NLB does: every membership change remaps clients.
	NLBHash
	// Reroute is sticky by source address but, when told, moves
	// established flows to another server, as in the field report.
	Reroute
)

// Broken is a lab balancer with one of the broken behaviours. It copies
// in user space; it is a specimen, not a product.
type Broken struct {
	mode    Mode
	members atomic.Pointer[[]string]
	rr      atomic.Uint64
	epoch   atomic.Int64 // bumped by RerouteFlows

	mu     sync.Mutex
	sticky map[string]int // Reroute: source address -> member index
	lns    []net.Listener
	closed bool
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

// StartBroken listens on vip at each of ports and forwards to the same
// port on the chosen member host.
func StartBroken(mode Mode, vip string, ports []int, members []string) (*Broken, error) {
	b := &Broken{mode: mode, sticky: map[string]int{}, conns: map[net.Conn]struct{}{}}
	b.SetMembers(members)
	for _, p := range ports {
		ln, err := net.Listen("tcp", net.JoinHostPort(vip, strconv.Itoa(p)))
		if err != nil {
			b.Close()
			return nil, err
		}
		b.mu.Lock()
		b.lns = append(b.lns, ln)
		b.mu.Unlock()
		b.wg.Add(1)
		go b.accept(ln, p)
	}
	return b, nil
}

// SetMembers changes the member hosts (an NLB convergence).
func (b *Broken) SetMembers(hosts []string) {
	h := append([]string(nil), hosts...)
	b.members.Store(&h)
}

// RerouteFlows makes every established flow move to the next member at
// its next request.
func (b *Broken) RerouteFlows() { b.epoch.Add(1) }

// Close stops listening, closes every flow and waits.
func (b *Broken) Close() {
	b.mu.Lock()
	b.closed = true
	for _, ln := range b.lns {
		ln.Close()
	}
	for c := range b.conns {
		c.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
}

func (b *Broken) pick(src string) int {
	n := len(*b.members.Load())
	switch b.mode {
	case PerConnection:
		return int(b.rr.Add(1) % uint64(n))
	case NLBHash:
		h := fnv.New32a()
		io.WriteString(h, src)
		return int(h.Sum32() % uint32(n))
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	i, ok := b.sticky[src]
	if !ok {
		i = int(b.rr.Add(1) % uint64(n))
		b.sticky[src] = i
	}
	return i
}

func (b *Broken) track(c net.Conn, add bool) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if add {
		if b.closed {
			c.Close()
			return false
		}
		b.conns[c] = struct{}{}
	} else {
		delete(b.conns, c)
	}
	return true
}

func (b *Broken) accept(ln net.Listener, port int) {
	defer b.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if !b.track(c, true) {
			return
		}
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			defer b.track(c, false)
			defer c.Close()
			b.flow(c, port)
		}()
	}
}

// flow forwards one client connection. Requests are copied a read at a
// time; before each, a Reroute balancer checks whether it was told to
// move flows and, if so, switches the backend leg under the client's feet.
func (b *Broken) flow(client net.Conn, port int) {
	src, _, _ := net.SplitHostPort(client.RemoteAddr().String())
	idx := b.pick(src)
	epoch := b.epoch.Load()
	var legs sync.WaitGroup
	defer legs.Wait()
	dial := func(i int) net.Conn {
		members := *b.members.Load()
		c, err := net.DialTimeout("tcp", net.JoinHostPort(members[i%len(members)], strconv.Itoa(port)), 2*time.Second)
		if err != nil {
			return nil
		}
		if !b.track(c, true) {
			return nil
		}
		legs.Add(1)
		go func() {
			defer legs.Done()
			defer b.track(c, false)
			// When this leg ends on its own, the flow ends; when it was
			// replaced, the client stays.
			if _, err := io.Copy(client, c); err == nil || !errors.Is(err, net.ErrClosed) {
				client.Close()
			}
		}()
		return c
	}
	backend := dial(idx)
	if backend == nil {
		return
	}
	defer func() { backend.Close() }()
	buf := make([]byte, 32<<10)
	for {
		n, err := client.Read(buf)
		if n > 0 {
			if e := b.epoch.Load(); e != epoch && b.mode == Reroute {
				epoch, idx = e, idx+1
				old := backend
				if backend = dial(idx); backend == nil {
					old.Close()
					return
				}
				old.Close()
			}
			if _, werr := backend.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
