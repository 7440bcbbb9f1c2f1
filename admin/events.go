//go:build linux

package admin

import (
	"slices"
	"strings"
	"time"

	"github.com/stickylb/stickylb/event"
)

// publish tells the server's stream of something done through this API;
// the API's own list hears of it from there, as every subscriber does.
func (a *API) publish(kind event.Kind, poolName, backend, what string) {
	e := event.Event{Kind: kind, Pool: poolName, Backend: backend, What: what}
	if a.opts.Server == nil {
		a.remember(e)
		return
	}
	a.opts.Server.Events().Publish(e)
}

// remember keeps a notable event in the recent-changes list, the last
// maxEvents of them; pin changes and check results are not listed.
func (a *API) remember(e event.Event) {
	if e.What == "" {
		return
	}
	// An event is one line: a check of several ports joins its errors
	// with newlines.
	what := strings.Join(strings.Fields(strings.ReplaceAll(e.What, "\n", "; ")), " ")
	at := e.Time
	if at.IsZero() {
		at = time.Now()
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.events = append(a.events, Event{Time: at.UTC(), Pool: e.Pool, Backend: e.Backend, What: what})
	if len(a.events) > maxEvents {
		a.events = slices.Delete(a.events, 0, len(a.events)-maxEvents)
	}
}
