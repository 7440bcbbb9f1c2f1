package cluster

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"

	"github.com/stickylb/stickylb/throttle"
)

// logBridge passes memberlist's log lines ("[WARN] memberlist: ...") to
// slog at their level.
type logBridge struct {
	log *slog.Logger
	// memberlist logs every junk packet and every failed probe: its
	// errors and warnings come in floods, so each kind is logged at most
	// every few seconds with the count it stands for.
	errLog, warnLog throttle.Log
	// stopping is set before memberlist shuts down: its gossip and probe
	// loops may still write to the sockets the shutdown closes, and
	// those errors ("use of closed network connection") are this
	// member's own stop, not a fault.
	stopping atomic.Bool
}

func (b *logBridge) Write(p []byte) (int, error) {
	line := string(bytes.TrimSpace(p))
	level, limit := slog.LevelDebug, (*throttle.Log)(nil) // [DEBUG] and [INFO]: memberlist's info is chatter
	if rest, ok := strings.CutPrefix(line, "[ERR] "); ok {
		level, line, limit = slog.LevelError, rest, &b.errLog
	} else if rest, ok := strings.CutPrefix(line, "[WARN] "); ok {
		level, line, limit = slog.LevelWarn, rest, &b.warnLog
	}
	if b.stopping.Load() && strings.Contains(line, net.ErrClosed.Error()) {
		level, limit = slog.LevelDebug, nil
	}
	if limit == nil {
		b.log.Log(context.Background(), level, line, "component", "memberlist")
		return len(p), nil
	}
	limit.Do(func(n int) {
		b.log.Log(context.Background(), level, line, "component", "memberlist", "count", n, "note", limit.Note())
	})
	return len(p), nil
}
