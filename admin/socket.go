//go:build linux

package admin

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// The admin socket (admin.socket) is the API for ctl on this host, as
// HAProxy's `stats socket ... mode 660 level admin` is: whoever the
// socket file's permissions let connect may make every call, with no
// token. Authorization is the file's mode (0660: the service's user and
// group, and root) and nothing else; SO_PEERCRED is not consulted, so
// adding an operator to the service's group gives them the API.

// SocketMode is the admin socket's permissions.
const SocketMode os.FileMode = 0o660

// viaSocket says whether r came over a Unix socket, whose file's
// permissions decided who could connect: such a call needs no token.
func viaSocket(r *http.Request) bool {
	_, ok := r.Context().Value(http.LocalAddrContextKey).(*net.UnixAddr)
	return ok
}

// Socket is the admin socket's listener and the path it is bound to.
type Socket struct {
	*net.UnixListener
	Path string
	file os.FileInfo // the path's file once it was this socket's
}

// ListenSocket binds the admin socket at path. The socket is made in a
// private folder beside path (mode 0700), given SocketMode there and
// only then renamed over path: a client never finds path open to other
// users, nor missing while a process that serves it is replaced. A
// socket at path that answers is another process's, and an error.
func ListenSocket(path string) (*Socket, error) {
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket == 0 {
		return nil, fmt.Errorf("admin socket %s: exists and is not a socket", path)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("admin socket %s: another process serves it (a second stickylb with this admin.socket?)", path)
	}
	dir, err := os.MkdirTemp(filepath.Dir(path), ".sock")
	if err != nil {
		return nil, fmt.Errorf("admin socket %s: make its folder (does %s exist, and may this user write it?): %w", path, filepath.Dir(path), err)
	}
	defer os.RemoveAll(dir)
	tmp := filepath.Join(dir, "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("admin socket %s: %w", path, err)
	}
	ln.SetUnlinkOnClose(false) // its name is path now, and a process that takes over keeps it
	err = os.Chmod(tmp, SocketMode)
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin socket %s: %w", path, err)
	}
	return socketAt(ln, path), nil
}

// SocketFrom is the admin socket f, handed over by the process this one
// replaces, bound to path.
func SocketFrom(f *os.File, path string) (*Socket, error) {
	ln, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("inherited admin socket %s: %w", path, err)
	}
	ul, ok := ln.(*net.UnixListener)
	if !ok {
		ln.Close()
		return nil, fmt.Errorf("inherited admin socket %s: a %T, not a Unix socket", path, ln)
	}
	ul.SetUnlinkOnClose(false)
	return socketAt(ul, path), nil
}

func socketAt(ln *net.UnixListener, path string) *Socket {
	s := &Socket{UnixListener: ln, Path: path}
	s.file, _ = os.Lstat(path)
	return s
}

// Remove removes the socket's path, unless another process's socket has
// replaced it since. Close does not: a process that hands the socket
// over must leave it in place.
func (s *Socket) Remove() error {
	fi, err := os.Lstat(s.Path)
	if errors.Is(err, os.ErrNotExist) || err == nil && (s.file == nil || !os.SameFile(fi, s.file)) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("admin socket %s: %w", s.Path, err)
	}
	return os.Remove(s.Path)
}
