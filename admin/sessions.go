//go:build linux

package admin

import (
	"cmp"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/stickylb/stickylb/affinity"
	"github.com/stickylb/stickylb/proxy"
	"github.com/stickylb/stickylb/server"
)

// A client's RPC sessions, as the Cisco note asks an engineer to find
// them with a packet capture: each of its connections, the port, the
// CAS, the interface bound, and whether any reached a CAS other than its
// pinned one (the split that ends in MAPI_E_NETWORK_ERROR).

// SessionsPage answers GET /api/sessions: one entry per client (per
// affinity key) with open connections, split clients first.
type SessionsPage struct {
	Clients []ClientSessions `json:"clients"`
	// Split counts the clients shown that are split.
	Split int `json:"split"`
}

// ClientSessions is one client's open connections in one pool.
type ClientSessions struct {
	Client string `json:"client"` // its affinity key: an address, or a network for src-net
	Pool   string `json:"pool"`
	// Pinned is the backend its pin names; "" when it has none (or the
	// pool keeps none).
	Pinned string `json:"pinned"`
	// Split says its connections reached more than one CAS, or a CAS
	// other than its pinned one; SplitWhy says how.
	Split       bool          `json:"split"`
	SplitWhy    string        `json:"split_why,omitempty"`
	Connections []SessionConn `json:"connections"`
}

// SessionConn is one open connection of a client.
type SessionConn struct {
	ID       string    `json:"id"`
	Listener string    `json:"listener"`
	Source   string    `json:"source"` // the client's address and port
	Port     int       `json:"port"`   // the port it dialled
	Backend  string    `json:"backend"`
	Since    time.Time `json:"since"`
	// OffPin says it reached a CAS other than the client's pinned one.
	OffPin bool `json:"off_pin"`
	// Read says the connection's DCE/RPC is read ([pool.NAME] dcerpc);
	// the rest is empty when not.
	Read bool `json:"read"`
	// Interface is what it bound ("EMSMDB a4f1db00-... v0.81", or a
	// UUID and version), "" before the answer; InterfaceName is
	// "EMSMDB", "NSPI", "EPM" or "".
	Interface     string `json:"interface,omitempty"`
	InterfaceName string `json:"interface_name,omitempty"`
	// Bind is "accepted", "rejected", "nak" or "pending"; BoundAt when
	// the answer came.
	Bind    string     `json:"bind,omitempty"`
	BoundAt *time.Time `json:"bound_at,omitempty"`
	// Calls and Faults are the calls that ended and those that faulted
	// (dcerpc = "calls").
	Calls  uint64 `json:"calls"`
	Faults uint64 `json:"faults"`
}

func sessionConn(v server.ConnView) SessionConn {
	sc := SessionConn{ID: v.ID, Listener: v.Listener, Source: v.Client.String(), Port: v.Port, Backend: v.Backend, Since: v.Since.UTC()}
	if s := v.RPC; s != nil {
		sc.Read, sc.Bind, sc.Calls, sc.Faults = true, s.BindWord(), s.Calls, s.Faults
		if s.Bound {
			at := s.Since.UTC()
			sc.Interface, sc.InterfaceName, sc.BoundAt = proxy.InterfaceName(s.Interface), s.Interface.Name(), &at
		}
	}
	return sc
}

// sessions reads ?client= (an IP address) and ?pool=.
func (a *API) sessions(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var client netip.Addr
	if c := q.Get("client"); c != "" {
		var err error
		if client, err = netip.ParseAddr(c); err != nil {
			writeErr(w, 400, fmt.Errorf("client %q is not an IP address", c))
			return
		}
	}
	pools := map[string]server.PoolView{}
	for _, p := range a.opts.Server.Pools() {
		pools[p.Name] = p
	}
	poolName := q.Get("pool")
	if _, ok := pools[poolName]; poolName != "" && !ok {
		writeErr(w, 404, fmt.Errorf("no pool %q", poolName))
		return
	}
	conns := a.opts.Server.Connections(func(v server.ConnView) bool {
		return (poolName == "" || v.Pool == poolName) && (!client.IsValid() || v.Client.Addr().Unmap() == client.Unmap())
	})
	writeJSON(w, 200, groupSessions(conns, pools))
}

// groupSessions gathers connections by pool and affinity key, and
// tells each client's pin and split.
func groupSessions(conns []server.ConnView, pools map[string]server.PoolView) SessionsPage {
	type group struct {
		key affinity.Key
		cs  *ClientSessions
	}
	var groups []*group
	byKey := map[string]*group{}
	for _, v := range conns {
		p := pools[v.Pool]
		k := p.Keyer.Key(v.Client)
		id := v.Pool + "\x00" + k.String()
		g := byKey[id]
		if g == nil {
			g = &group{key: k, cs: &ClientSessions{Client: k.String(), Pool: v.Pool, Connections: []SessionConn{}}}
			byKey[id] = g
			groups = append(groups, g)
		}
		g.cs.Connections = append(g.cs.Connections, sessionConn(v))
	}
	page := SessionsPage{Clients: []ClientSessions{}}
	for _, g := range groups {
		if t := pools[g.cs.Pool].Table; t != nil {
			if rec, err := t.Lookup(g.key); err == nil {
				g.cs.Pinned = rec.Backend
			}
		}
		markSplit(g.cs)
		if g.cs.Split {
			page.Split++
		}
		page.Clients = append(page.Clients, *g.cs)
	}
	slices.SortStableFunc(page.Clients, func(a, b ClientSessions) int {
		if a.Split != b.Split {
			if a.Split {
				return -1
			}
			return 1
		}
		return cmp.Or(cmp.Compare(a.Pool, b.Pool), cmp.Compare(a.Client, b.Client))
	})
	return page
}

// markSplit flags the connections on a CAS other than the pinned one,
// and the client if any is, or if its connections reached several CAS.
func markSplit(cs *ClientSessions) {
	var backends []string
	for i := range cs.Connections {
		c := &cs.Connections[i]
		c.OffPin = cs.Pinned != "" && c.Backend != cs.Pinned
		if !slices.Contains(backends, c.Backend) {
			backends = append(backends, c.Backend)
		}
	}
	slices.Sort(backends)
	switch {
	case len(backends) > 1:
		cs.Split, cs.SplitWhy = true, "connections on "+strings.Join(backends, " and ")
		if cs.Pinned != "" {
			cs.SplitWhy += ", pinned to " + cs.Pinned
		}
	case cs.Pinned != "" && backends[0] != cs.Pinned:
		cs.Split, cs.SplitWhy = true, fmt.Sprintf("connected to %s, pinned to %s", backends[0], cs.Pinned)
	}
}
