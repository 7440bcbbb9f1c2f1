//go:build linux

package metrics

import "github.com/stickylb/stickylb/event"

// Event counts what the server's stream tells (server.Server.Events):
// re-pins, check results and their durations, backends going up and
// down. Subscribe it before the server is built, so that nothing from
// its first moment is missed.
func (m *Metrics) Event(e event.Event) {
	switch e.Kind {
	case event.Pin:
		m.PinEvent(e.Pool, e.Pin)
	case event.Check:
		m.Health(e.Pool, e.Backend, e.Err, e.Took)
	case event.Health:
		m.StateChange(e.Pool, e.Backend, e.Up)
	}
}
