//go:build linux

package client

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stickylb/stickylb/config"
)

// Where ctl speaks, in order: --admin (or $STICKYLB_ADMIN); --socket;
// the config's [admin] (-c FILE, or the file run and check read by
// default, when it exists): its admin.socket where this user may use
// it, else its admin.listen. Over the socket no token is sent (the
// server needs none there). Over HTTP the token goes only to a server
// ctl can trust with it: over HTTPS one whose certificate verifies; over
// plain HTTP one on loopback whose socket belongs to root, this user,
// the token file's owner or the stickylb user; never in clear text to
// another host.

// Target is where to speak, as ctl's global flags say it.
type Target struct {
	Admin     string // the address of --admin or $STICKYLB_ADMIN, or the default
	AdminSet  bool   // whether --admin or $STICKYLB_ADMIN chose Admin
	Socket    string // --socket
	TokenFile string // --token-file
	CAFile    string // --cacert
	Config    string // -c FILE
	// DefaultConfig is the file whose [admin] is read when nothing else
	// says where to speak and it exists (config.DefaultPath).
	DefaultConfig string
}

// Timeout bounds each call.
const Timeout = 10 * time.Second

// New makes a client that speaks where t says. An *ArgError is a
// mistake in t (a flag), the rest the files t names.
func New(t Target) (*Client, error) {
	c := &Client{}
	if err := c.setup(t); err != nil {
		return nil, err
	}
	return c, nil
}

// ArgError is a mistake in what the caller gave, such as a CA file that
// holds no certificate: ctl exits 2 for it.
type ArgError string

func (e ArgError) Error() string { return string(e) }

func (c *Client) setup(t Target) error {
	ac, fromFile, err := t.config()
	if err != nil {
		return err
	}
	switch {
	case t.AdminSet:
		c.base = t.Admin
	case t.Socket != "":
		c.socket = t.Socket
	case fromFile && ac.Socket != "" && (ac.URL == "" || unix.Access(ac.Socket, unix.W_OK) == nil):
		c.socket = ac.Socket
	case fromFile:
		c.base = ac.URL
	default:
		c.base = t.Admin
	}
	if c.socket != "" {
		c.base = "http://localhost" // the Host the API accepts; the socket is dialled
		c.http = &http.Client{Timeout: Timeout, Transport: &http.Transport{DialContext: c.dialSocket}}
		return nil
	}
	c.base = strings.TrimRight(c.base, "/")
	if !strings.Contains(c.base, "://") {
		c.base = "http://" + c.base
	}
	if err := c.useTLS(cmp.Or(t.CAFile, ac.CertFile)); err != nil {
		return err
	}
	if c.tokenFile = cmp.Or(t.TokenFile, ac.TokenFile); c.tokenFile == "" {
		return nil
	}
	if c.token, err = config.ReadToken(c.tokenFile); err != nil {
		if t.TokenFile == "" && t.Config == "" && (errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission)) {
			// The default file names a token this user cannot read (or
			// that is not made yet): speak without it, as without the
			// file; a call that needs it is refused by the server (401).
			c.tokenFile, c.token = "", ""
			return nil
		}
		return ArgError(fmt.Sprintf("admin token: %v", err))
	}
	return c.trustWithToken()
}

// config reads the [admin] of -c's file, or of the default file when
// nothing else says where to speak; fromFile says whether one was read.
// A default file that is absent, or that this user may not read (a
// track script's user, for one), leaves the built-in address.
func (t Target) config() (ac config.AdminClient, fromFile bool, err error) {
	if t.Config != "" {
		ac, err = config.ReadAdmin(t.Config)
		return ac, err == nil, err
	}
	if t.AdminSet || t.Socket != "" {
		return ac, false, nil
	}
	switch ac, err = config.ReadAdmin(t.DefaultConfig); {
	case errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission):
		return config.AdminClient{}, false, nil
	case err != nil:
		return ac, false, fmt.Errorf("%w (give --admin or --socket to speak elsewhere)", err)
	}
	return ac, true, nil
}

// useTLS trusts the CA certificates of caFile (PEM), besides the
// system's, for an https address.
func (c *Client) useTLS(caFile string) error {
	tr := &http.Transport{}
	c.http = &http.Client{Timeout: Timeout, Transport: tr}
	if caFile == "" {
		return nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return ArgError(fmt.Sprintf("--cacert: %v", err))
	}
	pool, _ := x509.SystemCertPool()
	if pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return ArgError(fmt.Sprintf("--cacert: %s holds no PEM certificate", caFile))
	}
	tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	return nil
}

// trustWithToken refuses to send the token in clear text to another
// host, and makes the calls that carry it over plain HTTP check who
// serves the loopback address first.
func (c *Client) trustWithToken() error {
	u, err := url.Parse(c.base)
	if err != nil {
		return ArgError(fmt.Sprintf("--admin %s: %v", c.base, err))
	}
	if u.Scheme != "http" {
		return nil // https: the certificate says who serves
	}
	ip, err := netip.ParseAddr(u.Hostname())
	if u.Hostname() == "localhost" {
		ip, err = netip.IPv6Loopback(), nil
	}
	if err != nil || !ip.Unmap().IsLoopback() {
		return fmt.Errorf("refusing to send the admin token in clear text to %s: serve the admin API over HTTPS "+
			"(admin.tls_cert_file) and use an https:// address, or run ctl on that host (its admin socket)", u.Host)
	}
	c.authHTTP = &http.Client{Timeout: Timeout, Transport: &http.Transport{DialContext: c.dialTrusted}}
	return nil
}

// dialTrusted connects to the loopback admin address and checks that a
// user trusted with the token owns the socket that answers: a process
// of another user that took the port would get it.
func (c *Client) dialTrusted(ctx context.Context, network, addr string) (net.Conn, error) {
	conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	local, remote := conn.LocalAddr().(*net.TCPAddr).AddrPort(), conn.RemoteAddr().(*net.TCPAddr).AddrPort()
	uid, err := socketOwner(remote, local)
	if err == nil && !c.trusted(uid) {
		err = fmt.Errorf("the process serving %s runs as %s, not as root, this user, the token file's owner or %s", addr, userName(uid), config.ServiceGroup)
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("refusing to send the admin token: %w", err)
	}
	return conn, nil
}

// trusted says whether a socket of user uid may be given the token.
func (c *Client) trusted(uid uint32) bool {
	if uid == 0 || int(uid) == os.Geteuid() {
		return true
	}
	if fi, err := os.Stat(c.tokenFile); err == nil && fileUID(fi) == uid {
		return true
	}
	return userName(uid) == config.ServiceGroup
}

// dialSocket connects to the admin socket, once its file and folder
// show that root or the folder's owner made it, and the process that
// answers runs as the file's owner or root.
func (c *Client) dialSocket(ctx context.Context, _, _ string) (net.Conn, error) {
	fi, err := os.Lstat(c.socket)
	if err != nil {
		return nil, fmt.Errorf("admin socket %s: %w", c.socket, err)
	}
	owner := fileUID(fi)
	if err := trustedSocketFile(c.socket, fi); err != nil {
		return nil, err
	}
	conn, err := (&net.Dialer{}).DialContext(ctx, "unix", c.socket)
	if err != nil {
		return nil, err
	}
	if uid, err := peerUID(conn); err != nil || uid != 0 && uid != owner {
		conn.Close()
		return nil, fmt.Errorf("admin socket %s: the process answering is not its owner's (%s): %v", c.socket, userName(owner), err)
	}
	return conn, nil
}

// trustedSocketFile refuses a socket that is no socket, or that another
// user than root or its folder's owner could have put there.
func trustedSocketFile(path string, fi fs.FileInfo) error {
	if fi.Mode()&fs.ModeSocket == 0 {
		return fmt.Errorf("admin socket %s: not a socket", path)
	}
	dir, err := os.Stat(path[:strings.LastIndexByte(path, '/')+1])
	if err != nil {
		return fmt.Errorf("admin socket %s: its folder: %w", path, err)
	}
	if dir.Mode().Perm()&0o002 != 0 {
		return fmt.Errorf("admin socket %s: its folder can be written by every user, so anyone could have put it there: "+
			"choose a folder of the service's own, such as /run/stickylb", path)
	}
	if o := fileUID(fi); o != 0 && o != fileUID(dir) {
		return fmt.Errorf("admin socket %s: owned by %s, neither root nor its folder's owner", path, userName(o))
	}
	return nil
}

// peerUID is the user of the process at the other end of a Unix socket.
func peerUID(conn net.Conn) (uint32, error) {
	raw, err := conn.(*net.UnixConn).SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) { cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) }); err != nil {
		return 0, err
	}
	if cerr != nil {
		return 0, fmt.Errorf("SO_PEERCRED: %w", cerr)
	}
	return cred.Uid, nil
}

var errNoSocket = errors.New("no such socket in /proc/net/tcp or tcp6")
