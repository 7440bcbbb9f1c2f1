//go:build linux

package admin

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"

	"github.com/stickylb/stickylb/affinity"
	"github.com/stickylb/stickylb/event"
	"github.com/stickylb/stickylb/server"
)

func (a *API) pins(w http.ResponseWriter, r *http.Request) {
	p, err := a.poolView(r.URL.Query().Get("pool"))
	if err != nil {
		writeErr(w, 404, err)
		return
	}
	limit, err := intParam(r, "limit", 100, 10000)
	if err != nil {
		writeErr(w, 400, err)
		return
	}
	backend := r.URL.Query().Get("backend")
	cur, err := pageStart(r, p, backend)
	if err != nil {
		writeErr(w, 400, err)
		return
	}
	out := PinPage{Pins: []PinInfo{}}
	if p.Table != nil {
		var match func(affinity.Record) bool
		out.Total = p.Table.Len()
		if backend != "" {
			match = func(in affinity.Record) bool { return in.Backend == backend }
			out.Total = p.Table.Counts()[backend]
		}
		infos, next, done := p.Table.Page(cur, limit, match)
		for _, in := range infos {
			out.Pins = append(out.Pins, pinInfo(p.Name, in))
		}
		if !done {
			out.Next = next.String()
		}
	}
	writeJSON(w, 200, out)
}

// pageStart is where a page of /api/pins starts: the cursor a previous
// page returned, or an offset, which without a backend filter is found
// by counting shard lengths. With a filter an offset would mean walking
// every pin before it, so it is refused in favour of the cursor.
func pageStart(r *http.Request, p server.PoolView, backend string) (affinity.Cursor, error) {
	if c := r.URL.Query().Get("cursor"); c != "" {
		return affinity.ParseCursor(c)
	}
	offset, err := intParam(r, "offset", 0, 1<<30)
	switch {
	case err != nil:
		return affinity.Cursor{}, err
	case offset == 0 || p.Table == nil:
		return affinity.Cursor{}, nil
	case backend != "":
		return affinity.Cursor{}, errors.New("offset cannot be combined with backend: page with the cursor each page returns in next")
	}
	return p.Table.CursorAt(offset), nil
}

// clientKey turns an address from a request into the pool's key for it.
func clientKey(p server.PoolView, s string) (affinity.Key, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return p.Keyer.Key(ap), nil
	}
	ad, err := netip.ParseAddr(s)
	if err != nil {
		return affinity.Key{}, fmt.Errorf("client %q is not an IP address (or address:port for key connection)", s)
	}
	return p.Keyer.Key(netip.AddrPortFrom(ad, 0)), nil
}

func (a *API) lookup(w http.ResponseWriter, r *http.Request) {
	p, err := a.poolView(r.URL.Query().Get("pool"))
	if err != nil {
		writeErr(w, 404, err)
		return
	}
	if p.Table == nil {
		writeErr(w, 404, fmt.Errorf("pool %s keeps no pins (affinity key none)", p.Name))
		return
	}
	k, err := clientKey(p, r.PathValue("client"))
	if err != nil {
		writeErr(w, 400, err)
		return
	}
	in, err := p.Table.Lookup(k)
	if err != nil {
		writeErr(w, 404, fmt.Errorf("%s has no pin in pool %s: its next connection is balanced afresh", k, p.Name))
		return
	}
	writeJSON(w, 200, pinInfo(p.Name, in))
}

func (a *API) unpin(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	p, err := a.poolView(q.Get("pool"))
	if err != nil {
		writeErr(w, 404, err)
		return
	}
	if p.Table == nil {
		writeErr(w, 404, fmt.Errorf("pool %s keeps no pins", p.Name))
		return
	}
	client, backend := q.Get("client"), q.Get("backend")
	var match func(affinity.Record) bool
	switch {
	case client != "" && backend == "":
		k, err := clientKey(p, client)
		if err != nil {
			writeErr(w, 400, err)
			return
		}
		match = func(in affinity.Record) bool { return in.Key == k }
	case backend != "" && client == "":
		if p.Pool.Backend(backend) == nil && p.Table.Counts()[backend] == 0 {
			writeErr(w, 404, fmt.Errorf("pool %s has no backend %q and no pins to one", p.Name, backend))
			return
		}
		match = func(in affinity.Record) bool { return in.Backend == backend }
	default:
		writeErr(w, 400, errors.New("give exactly one of ?client=ADDRESS or ?backend=NAME"))
		return
	}
	n := p.Table.Delete(match)
	a.opts.Log.Info("pins deleted", "pool", p.Name, "client", client, "backend", backend, "deleted", n)
	if n > 0 {
		what := fmt.Sprintf("%d pins deleted", n)
		if client != "" {
			what = "pin of " + client + " deleted"
		}
		a.publish(event.Decision, p.Name, backend, what)
	}
	writeJSON(w, 200, Deleted{Deleted: n})
}

// PinPage is one page of GET /api/pins.
type PinPage struct {
	Total int       `json:"total"` // the pins that match, on every page
	Pins  []PinInfo `json:"pins"`
	Next  string    `json:"next,omitempty"` // cursor of the next page; none after the last
}

// Deleted answers DELETE /api/pins.
type Deleted struct {
	Deleted int `json:"deleted"`
}
