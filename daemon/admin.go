//go:build linux

package daemon

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"

	"github.com/stickylb/stickylb/admin"
)

// The admin API is served on admin.listen (TCP) and admin.socket (a
// Unix socket). A binary upgrade hands both sockets to the new process
// as it hands the listeners (upgrade.go): the admin port and the socket
// path are never free for another process to take, answer ctl and
// collect the token it sends.

// adminFiles are the admin sockets handed from one process to the next:
// duplicates of the TCP listener and of the Unix socket, and the
// socket's path. Either may be nil.
type adminFiles struct {
	tcp, socket *os.File
	path        string
}

func (a adminFiles) close() {
	for _, f := range []*os.File{a.tcp, a.socket} {
		if f != nil {
			f.Close()
		}
	}
}

// adminFiles duplicates the admin sockets for a new process; this
// process's own stay open until closeAdmin.
func (d *Daemon) adminFiles() (adminFiles, error) {
	var a adminFiles
	var err error
	if d.adminTCP != nil {
		if a.tcp, err = d.adminTCP.File(); err != nil {
			return a, fmt.Errorf("admin listener %s: %w", d.adminTCP.Addr(), err)
		}
	}
	if d.adminSock != nil {
		if a.socket, err = d.adminSock.File(); err != nil {
			a.close()
			return a, fmt.Errorf("admin socket %s: %w", d.adminSock.Path, err)
		}
		a.path = d.adminSock.Path
	}
	return a, nil
}

// listenAdmin serves the admin API on admin.listen, unless it is off,
// and on admin.socket, if set: on the sockets in inh, handed over by the
// process this one replaces (or taken back from a failed upgrade), where
// they are the ones the config names. The files in inh stay the
// caller's to close.
func (d *Daemon) listenAdmin(inh adminFiles) error {
	if err := d.listenAdminTCP(inh.tcp); err != nil {
		return err
	}
	if err := d.listenAdminSocket(inh.socket, inh.path); err != nil {
		d.closeAdmin()
		return err
	}
	return nil
}

func (d *Daemon) listenAdminTCP(f *os.File) error {
	a, log := d.cfg.Admin, d.log
	if a.Listen == "off" {
		return nil
	}
	ln := inheritedTCP(f, a.Listen)
	if ln == nil {
		l, err := net.Listen("tcp", a.Listen)
		if err != nil {
			return fmt.Errorf("admin listener %s: another process may hold the port; change admin.listen or set it to \"off\": %w", a.Listen, err)
		}
		ln = l.(*net.TCPListener)
	}
	var tlsConf *tls.Config
	if c := a.Certificate; c != nil {
		tlsConf = &tls.Config{Certificates: []tls.Certificate{*c}, MinVersion: tls.VersionTLS12}
	}
	d.adminTCP = ln
	d.adminEPs = append(d.adminEPs, d.api.Serve(ln, tlsConf))
	log.Info("admin listening", "addr", ln.Addr().String(), "tls", tlsConf != nil, "token_for_reads", a.TokenForReads, "inherited", f != nil)
	return nil
}

// inheritedTCP is the listener of f when it is bound to listen (a port
// of 0 takes any), or nil: a new config may name another address.
func inheritedTCP(f *os.File, listen string) *net.TCPListener {
	if f == nil {
		return nil
	}
	l, err := net.FileListener(f)
	if err != nil {
		return nil
	}
	ln, ok := l.(*net.TCPListener)
	want, err := net.ResolveTCPAddr("tcp", listen)
	if !ok || err != nil || !sameTCPAddr(ln.Addr().(*net.TCPAddr), want) {
		l.Close()
		return nil
	}
	return ln
}

// sameTCPAddr says whether a socket bound to got serves want, the
// config's address: a wildcard binds dual-stack.
func sameTCPAddr(got, want *net.TCPAddr) bool {
	if want.Port != 0 && want.Port != got.Port {
		return false
	}
	if want.IP == nil || want.IP.IsUnspecified() {
		return got.IP.IsUnspecified()
	}
	return want.IP.Equal(got.IP)
}

func (d *Daemon) listenAdminSocket(f *os.File, inhPath string) error {
	path := d.cfg.Admin.Socket
	if path == "" {
		return nil
	}
	var s *admin.Socket
	var err error
	if f != nil && inhPath == path {
		s, err = admin.SocketFrom(f, path)
	} else {
		s, err = admin.ListenSocket(path)
	}
	if err != nil {
		return err
	}
	d.adminSock = s
	d.adminEPs = append(d.adminEPs, d.api.Serve(s, nil))
	d.log.Info("admin socket listening", "path", path, "mode", fmt.Sprintf("%04o", admin.SocketMode), "inherited", f != nil && inhPath == path)
	return nil
}

// closeAdmin stops serving the admin API. The socket's path stays: a
// process that took over serves it; removeAdminSocket removes it.
func (d *Daemon) closeAdmin() {
	for _, ep := range d.adminEPs {
		ep.Close()
	}
	d.adminEPs, d.adminTCP, d.adminSock = nil, nil, nil
}

// removeAdminSocket removes the admin socket's path at exit, unless the
// socket was handed to a new process.
func (d *Daemon) removeAdminSocket() {
	if d.adminSock == nil || d.handedOver {
		return
	}
	if err := d.adminSock.Remove(); err != nil {
		d.log.Warn("cannot remove the admin socket", "error", err)
	}
}
