package localerr

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"
)

// Local resource errors are recognised however deeply wrapped; a peer's
// refusal or reset is not one.
func TestLocalOrPeer(t *testing.T) {
	wrap := func(e syscall.Errno) error {
		return fmt.Errorf("dial backend cas1: %w", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("socket", e)})
	}
	for _, c := range []struct {
		err  error
		want string
	}{
		{wrap(syscall.EMFILE), "EMFILE"},
		{wrap(syscall.EADDRNOTAVAIL), "EADDRNOTAVAIL"},
		{wrap(syscall.ENOBUFS), "ENOBUFS"},
		{wrap(syscall.ECONNREFUSED), ""},
		{wrap(syscall.ECONNRESET), ""},
		{fmt.Errorf("timeout"), ""},
		{errors.Join(wrap(syscall.ECONNREFUSED), wrap(syscall.EMFILE)), "EMFILE"},
	} {
		if got := Name(c.err); got != c.want {
			t.Errorf("Name(%v) = %q, want %q", c.err, got, c.want)
		}
	}
}
