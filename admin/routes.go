//go:build linux

package admin

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/stickylb/stickylb/uplot"
)

// route is one endpoint: docs/operations.md's API table lists each
// pattern (TestOperationsDocListsEveryRoute).
type route struct {
	pattern string
	handler http.Handler
}

func (a *API) routes() []route {
	f := func(pattern string, h http.HandlerFunc) route { return route{pattern, h} }
	rs := []route{
		f("GET /healthz", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, map[string]string{"status": "ok"}) }),
		f("GET /readyz", a.ready),
		f("GET /api/backends", a.backends),
		f("POST /api/backends/{pool}/{backend}/state", a.auth(a.setState)),
		f("GET /api/pins", a.pins),
		f("GET /api/pins/{client}", a.lookup),
		f("DELETE /api/pins", a.auth(a.unpin)),
		f("POST /api/reload", a.auth(a.reload)),
		f("GET /api/events", a.listEvents),
		f("GET /api/info", a.info),
		f("GET /api/cluster", a.clusterStatus),
		f("GET /api/history", a.history),
		f("GET /api/connections", a.connections),
		f("DELETE /api/connections", a.auth(a.closeConnections)),
		f("GET /api/sessions", a.sessions),
		f("POST /api/backends/{pool}/{backend}/weight", a.auth(a.setWeight)),
		f("GET /api/listeners", a.listeners),
		f("GET /static/uplot.iife.min.js", asset("text/javascript; charset=utf-8", uplot.JS)),
		f("GET /static/uplot.min.css", asset("text/css; charset=utf-8", uplot.CSS)),
		f("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Header().Set("Cache-Control", "no-store")
			w.Write(dashboard)
		}),
	}
	if a.opts.Gatherer != nil {
		rs = append(rs, route{"GET /metrics", promhttp.HandlerFor(a.opts.Gatherer, promhttp.HandlerOpts{})})
	}
	return rs
}
