//go:build linux

package client

import (
	"context"
	"encoding/json"
	"net/url"
	"strconv"

	"github.com/stickylb/stickylb/admin"
)

// The API's calls, one method each; docs/operations.md's API table says
// what each answers.

// Backends is GET /api/backends: every pool and backend.
func (c *Client) Backends(ctx context.Context) (admin.Status, error) {
	var v admin.Status
	return v, c.call(ctx, "GET", "/api/backends", nil, &v)
}

// History is GET /api/history: the dashboard's recent figures.
func (c *Client) History(ctx context.Context) (admin.History, error) {
	var v admin.History
	return v, c.call(ctx, "GET", "/api/history", nil, &v)
}

// PinQuery chooses a page of pins: a pool's, a backend's, from a cursor
// or an offset.
type PinQuery struct {
	Pool, Backend, Cursor string
	Limit, Offset         int
}

func (q PinQuery) values() url.Values {
	v := filter{"pool": q.Pool, "backend": q.Backend, "cursor": q.Cursor}.values()
	if q.Limit != 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	if q.Offset != 0 {
		v.Set("offset", strconv.Itoa(q.Offset))
	}
	return v
}

// Pins is GET /api/pins: one page of pins.
func (c *Client) Pins(ctx context.Context, q PinQuery) (admin.PinPage, error) {
	var v admin.PinPage
	return v, c.call(ctx, "GET", "/api/pins?"+q.values().Encode(), nil, &v)
}

// Pin is GET /api/pins/CLIENT: one client's pin, in pool when there
// are several.
func (c *Client) Pin(ctx context.Context, client, pool string) (admin.PinInfo, error) {
	path := "/api/pins/" + url.PathEscape(client)
	if pool != "" {
		path += "?pool=" + url.QueryEscape(pool)
	}
	var v admin.PinInfo
	return v, c.call(ctx, "GET", path, nil, &v)
}

// Unpin is DELETE /api/pins: a client's pin, or every pin to a backend.
func (c *Client) Unpin(ctx context.Context, pool, client, backend string) (admin.Deleted, error) {
	var v admin.Deleted
	q := filter{"pool": pool, "client": client, "backend": backend}.values()
	return v, c.call(ctx, "DELETE", "/api/pins?"+q.Encode(), nil, &v)
}

// SetState is POST /api/backends/POOL/BACKEND/state: drain, maint or
// ready; a drain's deadline ("30m") when not "".
func (c *Client) SetState(ctx context.Context, pool, backend, state, deadline string) (admin.BackendInfo, error) {
	body := map[string]string{"state": state}
	if deadline != "" {
		body["deadline"] = deadline
	}
	var v admin.BackendInfo
	return v, c.call(ctx, "POST", backendPath(pool, backend)+"/state", body, &v)
}

// SetWeight is POST /api/backends/POOL/BACKEND/weight.
func (c *Client) SetWeight(ctx context.Context, pool, backend string, weight int) (admin.BackendInfo, error) {
	var v admin.BackendInfo
	return v, c.call(ctx, "POST", backendPath(pool, backend)+"/weight", map[string]int{"weight": weight}, &v)
}

func backendPath(pool, backend string) string {
	return "/api/backends/" + url.PathEscape(pool) + "/" + url.PathEscape(backend)
}

// Reload is POST /api/reload: the config file read again.
func (c *Client) Reload(ctx context.Context) (admin.Reloaded, error) {
	var v admin.Reloaded
	return v, c.call(ctx, "POST", "/api/reload", nil, &v)
}

// Events is GET /api/events: recent changes.
func (c *Client) Events(ctx context.Context) ([]admin.Event, error) {
	var v []admin.Event
	return v, c.call(ctx, "GET", "/api/events", nil, &v)
}

// Info is GET /api/info: version, pid, uptime, config, limits.
func (c *Client) Info(ctx context.Context) (admin.Info, error) {
	var v admin.Info
	return v, c.call(ctx, "GET", "/api/info", nil, &v)
}

// Listeners is GET /api/listeners.
func (c *Client) Listeners(ctx context.Context) ([]admin.ListenerInfo, error) {
	var v []admin.ListenerInfo
	return v, c.call(ctx, "GET", "/api/listeners", nil, &v)
}

// Cluster is GET /api/cluster: the members as this one sees them.
func (c *Client) Cluster(ctx context.Context) (admin.ClusterStatus, error) {
	var v admin.ClusterStatus
	return v, c.call(ctx, "GET", "/api/cluster", nil, &v)
}

// ConnFilter chooses open connections: by id, or by pool, client and
// backend.
type ConnFilter struct{ ID, Pool, Client, Backend string }

// Empty says the filter chooses nothing yet.
func (f ConnFilter) Empty() bool { return f == ConnFilter{} }

func (f ConnFilter) values() url.Values {
	return filter{"id": f.ID, "pool": f.Pool, "client": f.Client, "backend": f.Backend}.values()
}

// Connections is GET /api/connections: the first limit that match.
func (c *Client) Connections(ctx context.Context, f ConnFilter, limit int) (admin.ConnPage, error) {
	q := f.values()
	q.Set("limit", strconv.Itoa(limit))
	var v admin.ConnPage
	return v, c.call(ctx, "GET", "/api/connections?"+q.Encode(), nil, &v)
}

// SessionFilter chooses the clients whose RPC sessions to show: one
// client (an IP address), one pool, or with neither, all.
type SessionFilter struct{ Client, Pool string }

// Sessions is GET /api/sessions: each client's open connections, the
// interface each bound, and whether the client is split across CAS.
func (c *Client) Sessions(ctx context.Context, f SessionFilter) (admin.SessionsPage, error) {
	var v admin.SessionsPage
	q := filter{"client": f.Client, "pool": f.Pool}.values()
	return v, c.call(ctx, "GET", "/api/sessions?"+q.Encode(), nil, &v)
}

// CloseConnections is DELETE /api/connections: the pins stay.
func (c *Client) CloseConnections(ctx context.Context, f ConnFilter) (admin.Closed, error) {
	var v admin.Closed
	return v, c.call(ctx, "DELETE", "/api/connections?"+f.values().Encode(), nil, &v)
}

// Ready is GET /readyz: nil while the instance should take clients,
// else why not; the answer as it came either way.
func (c *Client) Ready(ctx context.Context) (json.RawMessage, error) {
	return c.Raw(ctx, "GET", "/readyz", nil)
}

// filter is query parameters, the empty ones left out.
type filter map[string]string

func (f filter) values() url.Values {
	v := url.Values{}
	for k, s := range f {
		if s != "" {
			v.Set(k, s)
		}
	}
	return v
}
