//go:build linux

package proxy

import (
	"errors"
	"net"
	"os"
	"syscall"
)

// Termination says how a connection ended, as HAProxy's termination
// state does: the closing log line's termination field and the label of
// stickylb_connections_ended_total.
type Termination string

const (
	EndClientClosed     Termination = "client-closed"      // the client closed first (FIN)
	EndBackendClosed    Termination = "backend-closed"     // the backend closed first (FIN)
	EndClientReset      Termination = "client-reset"       // the client's leg broke (reset, timeout)
	EndBackendReset     Termination = "backend-reset"      // the backend's leg broke (reset, timeout)
	EndIdleTimeout      Termination = "idle-timeout"       // no data either way for idle_timeout
	EndHalfCloseTimeout Termination = "half-close-timeout" // half-closed longer than half_close_timeout
	EndCutShutdown      Termination = "cut-shutdown"       // still open when a drain ran out or was cut short
	EndCutBackendDown   Termination = "cut-backend-down"   // its backend went down and close_on_down is set
	EndCutDrainDeadline Termination = "cut-drain-deadline" // its backend's drain deadline passed
	EndCutOperator      Termination = "cut-operator"       // an operator closed it (ctl close, DELETE /api/connections)
	EndConnectFailed    Termination = "connect-failed"     // no backend could be connected
	EndRefused          Termination = "refused"            // refused before a backend was tried (see the refusal reason)
)

// Terminations lists every Termination, for metrics that exist from
// start-up.
var Terminations = []Termination{EndClientClosed, EndBackendClosed, EndClientReset, EndBackendReset,
	EndIdleTimeout, EndHalfCloseTimeout, EndCutShutdown, EndCutBackendDown, EndCutDrainDeadline,
	EndCutOperator, EndConnectFailed, EndRefused}

// directionEnd says how the copy reading from one side (the client, or
// the backend) ended, given what halfCopy returned for it. That copy also
// wrote to the other side: a failed write, or a broken pipe, is the other
// side's doing.
func directionEnd(fromClient bool, err error) Termination {
	switch {
	case err == nil && fromClient:
		return EndClientClosed
	case err == nil:
		return EndBackendClosed
	case errors.Is(err, os.ErrDeadlineExceeded):
		return EndHalfCloseTimeout
	case errors.Is(err, syscall.EPIPE), failedWrite(err):
		fromClient = !fromClient
	}
	if fromClient {
		return EndClientReset
	}
	return EndBackendReset
}

// failedWrite says whether err is a failed write. It is apart from
// directionEnd because errors.As moves its target to the heap: here that
// costs only connections that broke, not every one.
func failedWrite(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "write"
}
