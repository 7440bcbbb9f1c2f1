package cluster

import (
	"bytes"
	"maps"
	"slices"
	"sync"

	"github.com/hashicorp/memberlist"
)

// roster is the other members as memberlist's events report them, each
// kept as a copy. memberlist's own Members returns pointers to the nodes
// it goes on updating under its lock, which no caller can read without a
// data race; its events run under that lock, so copying there is safe.
type roster struct {
	mu    sync.Mutex
	nodes map[string]rosterEntry
}

type rosterEntry struct {
	node  memberlist.Node // a copy
	state string          // alive, failed or left
}

// set records n (a node memberlist passes to an event) in state.
func (r *roster) set(n *memberlist.Node, state string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.nodes == nil {
		r.nodes = map[string]rosterEntry{}
	}
	node := *n
	node.Meta = bytes.Clone(n.Meta) // memberlist may reuse it
	r.nodes[n.Name] = rosterEntry{node: node, state: state}
}

// alive returns copies of the members known alive, in name order.
func (r *roster) alive() []*memberlist.Node {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*memberlist.Node
	for _, name := range slices.Sorted(maps.Keys(r.nodes)) {
		if e := r.nodes[name]; e.state == "alive" {
			out = append(out, &e.node)
		}
	}
	return out
}

// infos returns every member known, alive or not, in name order.
func (r *roster) infos() []MemberInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []MemberInfo
	for _, name := range slices.Sorted(maps.Keys(r.nodes)) {
		e := r.nodes[name]
		out = append(out, MemberInfo{Name: name, Addr: e.node.Address(), State: e.state, meta: e.node.Meta})
	}
	return out
}
