//go:build linux

package proxy

import (
	"encoding/binary"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// ClientLimits bound what one client may take of a pool, so one client
// cannot hurt the others. Zero values are off.
type ClientLimits struct {
	// MaxConnsPerClient is how many connections one client may have open at once.
	MaxConnsPerClient int
	// Rate and Burst bound how fast one client may open connections.
	Rate  rate.Limit
	Burst int
	// V4Prefix and V6Prefix say what one client is: the addresses of one
	// IPv4 or IPv6 network of that length (0: one address). An IPv6
	// host gets a /64, whose addresses cost it nothing.
	V4Prefix, V6Prefix int
}

// Limiter applies ClientLimits to the clients of one pool, across all of
// its listeners. It keeps state only for clients with a connection open
// or a rate bucket not yet full again; Sweep forgets the rest. With the
// connection limit on by default, every connection passes here twice:
// the clients are spread over shards, each with its own lock, and kept
// by value, so a client's connection allocates nothing unless a rate
// limit gives it a bucket.
type Limiter struct {
	limits ClientLimits
	shards [limiterShards]limiterShard
}

const limiterShards = 16

type limiterShard struct {
	mu   sync.Mutex
	uses map[netip.Prefix]clientUse
}

type clientUse struct {
	open   int
	bucket *rate.Limiter
}

// NewLimiter returns a Limiter, or nil when every limit is off.
func NewLimiter(l ClientLimits) *Limiter {
	if l.MaxConnsPerClient <= 0 && l.Rate <= 0 {
		return nil
	}
	if l.Rate > 0 && l.Burst <= 0 {
		l.Burst = max(1, int(l.Rate))
	}
	lim := &Limiter{limits: l}
	for i := range lim.shards {
		lim.shards[i].uses = map[netip.Prefix]clientUse{}
	}
	return lim
}

// shard is the shard of a client.
func (l *Limiter) shard(p netip.Prefix) *limiterShard {
	b := p.Addr().As16()
	h := binary.LittleEndian.Uint64(b[:8]) ^ binary.LittleEndian.Uint64(b[8:])
	h ^= h >> 29
	return &l.shards[(h*0x9e3779b97f4a7c15)>>60]
}

// client is the network one client address counts for.
func (l *Limiter) client(addr netip.Addr) netip.Prefix {
	addr = addr.Unmap()
	bits := l.limits.V4Prefix
	if addr.Is6() {
		bits = l.limits.V6Prefix
	}
	if bits <= 0 || bits > addr.BitLen() {
		bits = addr.BitLen()
	}
	p, _ := addr.Prefix(bits)
	return p
}

// admit takes a connection of client addr, or says which limit refuses
// it. A taken connection must be given back with done.
func (l *Limiter) admit(addr netip.Addr) Refusal {
	key := l.client(addr)
	sh := l.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	u, ok := sh.uses[key]
	if !ok && l.limits.Rate > 0 {
		u.bucket = rate.NewLimiter(l.limits.Rate, l.limits.Burst)
	}
	switch {
	case l.limits.MaxConnsPerClient > 0 && u.open >= l.limits.MaxConnsPerClient:
		return RefusedClientConns
	case u.bucket != nil && !u.bucket.Allow():
		sh.uses[key] = u // keep the emptied bucket
		return RefusedClientRate
	}
	u.open++
	sh.uses[key] = u
	return ""
}

// done gives back a connection admit took.
func (l *Limiter) done(addr netip.Addr) {
	key := l.client(addr)
	sh := l.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	u, ok := sh.uses[key]
	if !ok {
		return
	}
	u.open--
	if u.open <= 0 && (u.bucket == nil || u.bucket.Tokens() >= float64(l.limits.Burst)) {
		delete(sh.uses, key)
		return
	}
	sh.uses[key] = u
}

// Sweep forgets clients with nothing open whose rate bucket has filled up
// again, and returns how many clients it still tracks.
func (l *Limiter) Sweep(now time.Time) int {
	n := 0
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		for key, u := range sh.uses {
			if u.open <= 0 && (u.bucket == nil || u.bucket.TokensAt(now) >= float64(l.limits.Burst)) {
				delete(sh.uses, key)
			}
		}
		n += len(sh.uses)
		sh.mu.Unlock()
	}
	return n
}
