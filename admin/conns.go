//go:build linux

package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/stickylb/stickylb/config"
	"github.com/stickylb/stickylb/event"
	"github.com/stickylb/stickylb/server"
)

// Open connections, listed and closed (HAProxy's `show sess` and
// `shutdown session`), and a backend's weight changed at run time
// (`set weight`).

// ConnInfo is one open connection in GET /api/connections.
type ConnInfo struct {
	ID         string    `json:"id"`
	Listener   string    `json:"listener"`
	Client     string    `json:"client"`
	Pool       string    `json:"pool"`
	Backend    string    `json:"backend"`
	Since      time.Time `json:"since"`
	AgeSeconds float64   `json:"age_seconds"`
}

// connFilter reads ?id=, ?client= (an IP address), ?pool= and ?backend=;
// it says whether any was given.
func connFilter(r *http.Request) (func(server.ConnView) bool, bool, error) {
	q := r.URL.Query()
	id, pool, backend := q.Get("id"), q.Get("pool"), q.Get("backend")
	var client netip.Addr
	if c := q.Get("client"); c != "" {
		var err error
		if client, err = netip.ParseAddr(c); err != nil {
			return nil, false, fmt.Errorf("client %q is not an IP address", c)
		}
	}
	match := func(v server.ConnView) bool {
		return (id == "" || v.ID == id) && (pool == "" || v.Pool == pool) && (backend == "" || v.Backend == backend) &&
			(!client.IsValid() || v.Client.Addr().Unmap() == client.Unmap())
	}
	return match, id != "" || client.IsValid() || pool != "" || backend != "", nil
}

// knownNames checks that the pool and backend a query names exist, so a
// typo is an error rather than "0 closed".
func (a *API) knownNames(r *http.Request) error {
	q := r.URL.Query()
	pool, backend := q.Get("pool"), q.Get("backend")
	if pool != "" {
		if _, err := a.poolView(pool); err != nil {
			return err
		}
	}
	if backend == "" {
		return nil
	}
	for _, p := range a.opts.Server.Pools() {
		if (pool == "" || p.Name == pool) && p.Pool.Backend(backend) != nil {
			return nil
		}
	}
	if pool != "" {
		return fmt.Errorf("no backend %q in pool %s", backend, pool)
	}
	return fmt.Errorf("no backend %q", backend)
}

func (a *API) connections(w http.ResponseWriter, r *http.Request) {
	match, _, err := connFilter(r)
	if err != nil {
		writeErr(w, 400, err)
		return
	}
	limit := 1000
	if s := r.URL.Query().Get("limit"); s != "" {
		if limit, err = strconv.Atoi(s); err != nil || limit < 1 || limit > 100000 {
			writeErr(w, 400, fmt.Errorf("limit %q: give a number from 1 to 100000", s))
			return
		}
	}
	all := a.opts.Server.Connections(match)
	out := ConnPage{Total: len(all), Connections: []ConnInfo{}}
	now := time.Now()
	for _, v := range all[:min(limit, len(all))] {
		out.Connections = append(out.Connections, ConnInfo{ID: v.ID, Listener: v.Listener, Client: v.Client.String(),
			Pool: v.Pool, Backend: v.Backend, Since: v.Since.UTC(), AgeSeconds: now.Sub(v.Since).Seconds()})
	}
	writeJSON(w, 200, out)
}

func (a *API) closeConnections(w http.ResponseWriter, r *http.Request) {
	match, some, err := connFilter(r)
	if err != nil {
		writeErr(w, 400, err)
		return
	}
	if !some {
		writeErr(w, 400, errors.New("say which connections to close: ?id=LISTENER/N, ?client=IP or ?backend=NAME (with ?pool=)"))
		return
	}
	if err := a.knownNames(r); err != nil {
		writeErr(w, 404, err)
		return
	}
	q := r.URL.Query()
	if id := q.Get("id"); id != "" {
		// Ids are this member's own: closed here only.
		n := a.opts.Server.CloseConnections(match)
		if n == 0 {
			writeErr(w, 404, fmt.Errorf("no connection %s is open (stickylb ctl conns lists them)", id))
			return
		}
		writeJSON(w, 200, Closed{Closed: n})
		return
	}
	n, asked := a.opts.Server.CloseEverywhere(q.Get("pool"), q.Get("client"), q.Get("backend"))
	a.opts.Log.Info("connections closed by the admin API", "query", r.URL.RawQuery, "closed", n, "members_asked", asked)
	a.publish(event.Closed, q.Get("pool"), q.Get("backend"), closedWhat(n, q.Get("client"), asked))
	writeJSON(w, 200, Closed{Closed: n, MembersAsked: asked})
}

func (a *API) setWeight(w http.ResponseWriter, r *http.Request) {
	p, b, ok := a.backendOf(w, r)
	if !ok {
		return
	}
	var body struct {
		Weight *int `json:"weight"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&body); err != nil || body.Weight == nil {
		writeErr(w, 400, fmt.Errorf("body must be JSON like {\"weight\": 2}"))
		return
	}
	if *body.Weight < 0 || *body.Weight > config.MaxWeight {
		writeErr(w, 400, fmt.Errorf("weight must be from 0 to %d, not %d", config.MaxWeight, *body.Weight))
		return
	}
	old := b.Weight()
	if _, err := a.opts.Server.SetWeight(p.Name, b.Name, *body.Weight); err != nil {
		writeErr(w, 404, err)
		return
	}
	a.opts.Log.Info("backend weight set", "pool", p.Name, "backend", b.Name, "from", old, "to", *body.Weight)
	a.publish(event.Decision, p.Name, b.Name, fmt.Sprintf("weight %d (was %d) until lb.toml's weight for it changes", *body.Weight, old))
	writeJSON(w, 200, backendInfo(p.Name, b, pinsOf(p, b.Name)))
}

// closedWhat is the event of an operator's close.
func closedWhat(n int, client string, asked int) string {
	what := fmt.Sprintf("%d connections closed", n)
	if client != "" {
		what += " of " + client
	}
	if asked > 0 {
		what += fmt.Sprintf(", asked of %d other members", asked)
	}
	return what
}

// ConnPage answers GET /api/connections: the first ?limit= of the
// connections that match, and how many match.
type ConnPage struct {
	Total       int        `json:"total"`
	Connections []ConnInfo `json:"connections"`
}

// Closed answers DELETE /api/connections: the connections closed here,
// and how many other cluster members were asked to close theirs.
type Closed struct {
	Closed       int `json:"closed"`
	MembersAsked int `json:"members_asked"`
}
