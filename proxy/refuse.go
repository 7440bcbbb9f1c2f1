//go:build linux

package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/stickylb/stickylb/localerr"
	"github.com/stickylb/stickylb/pool"
)

// refusalRule is how a refusal of one kind is told: the termination it
// ends the connection with and its log line.
type refusalRule struct {
	end   Termination
	level slog.Level
	msg   string
	// peer is the key of the connection's address in the line: the
	// client, or for a connection not identified, the source the
	// socket names (a PROXY listener's front balancer).
	peer string
}

// refusalRules are every Refusal's; a refusal of any kind is counted
// and logged by refuse alone.
var refusalRules = map[Refusal]refusalRule{
	RefusedIdentify:       {EndRefused, slog.LevelWarn, "connection refused", "client"},
	RefusedNoBackend:      {EndRefused, slog.LevelWarn, "connection refused", "client"},
	RefusedRejected:       {EndRefused, slog.LevelWarn, "connection refused", "client"},
	RefusedConnect:        {EndConnectFailed, slog.LevelWarn, "connection refused", "client"},
	RefusedClientPort:     {EndRefused, slog.LevelWarn, "connection refused", "client"},
	RefusedLocal:          {EndRefused, slog.LevelError, "connection refused: this host's fault, not the backend's", "client"},
	RefusedClientConns:    {EndRefused, slog.LevelWarn, "connection refused: client over its limit", "client"},
	RefusedClientRate:     {EndRefused, slog.LevelWarn, "connection refused: client over its limit", "client"},
	RefusedProxyUntrusted: {EndRefused, slog.LevelWarn, "connection refused: PROXY protocol", "source"},
	RefusedProxyHeader:    {EndRefused, slog.LevelWarn, "connection refused: PROXY protocol", "source"},
	RefusedNoPinhole:      {EndRefused, slog.LevelWarn, "connection refused: port not handed to this client", "client"},
	RefusedPinholeDown:    {EndRefused, slog.LevelWarn, "connection refused: the CAS that handed out the port is down", "client"},
}

// refusalEnd is the termination of a connection refused for why.
func refusalEnd(why Refusal) Termination { return refusalRules[why].end }

// refuse records that the connection is closed without a backend, for
// why, after c.attempts connects; finish then counts it. It is logged at
// most every few seconds per reason, with the count of refusals the line
// stands for, since refusals come in floods: when no backend can take a
// client none can take the next (200 refusals gave 200 lines before), a
// client over its limit keeps trying, and a host out of descriptors
// fails every client alike. b and errno, when set, name the backend a
// connect to it failed for a fault of this host, and the fault.
func (c *conn) refuse(why Refusal, err error, b *pool.Backend, errno string) {
	c.refusal = why
	r, rule := c.r, refusalRules[why]
	if errno != "" {
		if f := r.Observer.LocalError; f != nil {
			f(r.Name, "dial", errno)
		}
	}
	rl := c.l.refuseLog(why)
	rl.Do(func(n int) {
		attrs := []slog.Attr{slog.String("listener", r.Name), slog.String(rule.peer, c.from.String()),
			slog.String("pool", r.Pool.Name), slog.String("termination", string(rule.end)),
			slog.String("reason", string(why)), slog.Int("attempts", c.attempts)}
		if b != nil {
			attrs = append(attrs, slog.String("backend", b.Name))
		}
		if errno != "" {
			attrs = append(attrs, slog.String("errno", errno))
		}
		if err != nil {
			attrs = append(attrs, slog.String("error", err.Error()))
		}
		attrs = append(attrs, slog.Int("count", n), slog.String("note", rl.Note()))
		c.l.log.LogAttrs(context.Background(), rule.level, rule.msg, attrs...)
	})
}

// connectFailed counts and logs a failed backend connect, says how it
// failed, and runs the passive check: enough failed connects in a row
// take the backend down before the next active check would. The log line
// comes at most every few seconds per backend: in an outage every client
// fails alike.
func (c *conn) connectFailed(b *pool.Backend, addr string, err error) DialFailure {
	r, why := c.r, DialFailureOf(err)
	if f := r.Observer.ConnectFailed; f != nil {
		f(r.Name, b, why)
	}
	inRow := b.ConnectFailed()
	if r.PassiveFall > 0 && inRow >= r.PassiveFall && b.MarkDown(fmt.Sprintf("passive check: %d connects failed in a row: %v", inRow, err)) {
		c.l.log.Warn("backend down: passive check", "pool", r.Pool.Name, "backend", b.Name, "failed_connects", r.PassiveFall, "error", err)
		if r.OnPassiveDown != nil {
			r.OnPassiveDown(b, err)
		}
	}
	fl := c.l.failLog(b)
	fl.Do(func(n int) {
		c.l.log.Warn("backend connect failed", "listener", r.Name, "pool", r.Pool.Name, "client", c.from,
			"backend", b.Name, "addr", addr, "reason", why, "attempt", c.attempts, "error", err, "count", n, "note", fl.Note()+" (per backend)")
	})
	return why
}

// clientPortError is the refusal of a client whose connect to a port of
// a range failed. The port is the client's choice: three connections to
// a port no CAS listens on took every CAS down through the passive check
// before, so the backend is not blamed, no other backend is tried (the
// port means something else or nothing there) and the pin stays.
func clientPortError(b *pool.Backend, addr string, err error) error {
	return fmt.Errorf("backend %s %s: the port the client dialled, in a range, took no connection (%s): "+
		"a port of a range is the client's choice, so the backend is not blamed and no other is tried: %w", b.Name, addr, DialFailureOf(err), err)
}

// localFault says whether a failed dial is this host's fault rather
// than the backend's, and if so names it (an errno, or
// ErrnoNoReturnRoute) and says what to fix: the one place that decides
// whom a failed dial is blamed on. Such a client is refused as
// RefusedLocal: no passive check counts it, the pin stays, and no other
// backend is tried (it would fail alike).
func localFault(r *Route, b *pool.Backend, err error) (errno, fix string) {
	switch errno = localerr.Name(err); {
	case errors.Is(err, ErrFamily):
		return errno, "this host's config, not the backend's fault: a transparent pool got a client of an address family its backend lacks"
	case errno != "":
		return errno, "this host is out of a resource, not the backend's fault; raise the file limit (LimitNOFILE), " +
			"widen net.ipv4.ip_local_port_range or lower the load"
	case noReturnRoute(r, b, err):
		return ErrnoNoReturnRoute, "this host's routing, not the backend's fault: transparent connects time out while the backend answers " +
			"checks from this host's own address, so its replies to clients do not come back here (the policy route; docs/deploy.md)"
	}
	return "", ""
}

// ErrnoNoReturnRoute names, among local errors, a transparent connect
// that timed out to a backend that passes its checks.
const ErrnoNoReturnRoute = "no-return-route"

// noReturnRoute says whether a failed connect is this host's routing
// rather than the backend: in transparent mode, a connect from the
// client's address that timed out to a backend whose last check, from
// this host's own address, passed moments ago. The backend's replies to
// clients go elsewhere (no policy route back to stickylb): marking it
// down and moving its clients would split sessions on a healthy CAS.
func noReturnRoute(r *Route, b *pool.Backend, err error) bool {
	if _, transparent := r.dialer().(TransparentDialer); !transparent || DialFailureOf(err) != DialTimeout {
		return false
	}
	chk, ok := b.LastCheck()
	return ok && chk.Err == "" && time.Since(chk.At) < returnRouteWindow
}

// returnRouteWindow is how recent a passed check must be to vouch for a
// backend whose transparent connects time out.
const returnRouteWindow = 30 * time.Second
