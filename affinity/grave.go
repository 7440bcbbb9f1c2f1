package affinity

import "sync"

// graves remember operator unpins for a TTL. Without them, a member that
// was away when an operator unpinned a client would bring the client's
// older pin back when it returns: the table that forgot the pin could not
// tell an old decision from a new one. A grave carries the unpin's stamp,
// so a decision older than the unpin is declined, and it is sent with
// the table, so the returning member drops its pin too.
//
// Only operator unpins leave a grave: expiry and eviction are each
// member's own and are not decisions. Graves are few (unpins are rare)
// and sit behind their own lock, taken under a shard's lock and never the
// other way round.
type graves struct {
	mu sync.Mutex
	m  map[Key]grave
}

type grave struct {
	ver   uint64 // the unpin's stamp
	until int64  // unix second after which the grave is forgotten
}

// dig records the unpin of k stamped ver, kept until the unix second
// until; a newer unpin already recorded stays.
func (g *graves) dig(k Key, ver uint64, until int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.m == nil {
		g.m = map[Key]grave{}
	}
	if old, ok := g.m[k]; !ok || old.ver < ver {
		g.m[k] = grave{ver: ver, until: until}
	}
}

// buries says whether an unpin of k recorded before the unix second now
// beats a decision for backend stamped ver, by the rule of Wins.
func (g *graves) buries(k Key, ver uint64, backend string, now int64) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	gr, ok := g.m[k]
	return ok && now <= gr.until && Wins(gr.ver, "", ver, backend)
}

// live returns the graves not yet forgotten at the unix second now, and
// forgets the others.
func (g *graves) live(now int64) map[Key]uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make(map[Key]uint64, len(g.m))
	for k, gr := range g.m {
		if now > gr.until {
			delete(g.m, k)
			continue
		}
		out[k] = gr.ver
	}
	return out
}
