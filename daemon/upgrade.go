//go:build linux

package daemon

import (
	"cmp"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/stickylb/stickylb/proxy"
)

// A binary upgrade (SIGUSR2): the running process starts the binary at
// its own path, which the package has replaced, with the same arguments
// and its listening sockets; the new process restores the pins and
// operator decisions the old one wrote a moment before, serves, and says
// so; the old one then finishes its open connections (up to
// drain_timeout) and exits. No connection is refused, no client moves.
// Descriptor passing keeps the very sockets, so connections that arrive
// during the hand-over wait in their accept queues; the admin API's
// sockets go too, so no other process can take its port or path.

// envHandover tells a process it takes over: the number of listening
// sockets passed from descriptor 3 on. The descriptor after them is the
// pipe it writes "ready" to; after the pipe come the admin listener, when
// envHandoverAdmin is "1", then the admin socket, when
// envHandoverSocket names its path. (The admin sockets follow the pipe
// so that a binary of before them finds its own where it looks.)
//
// Last comes the socket the open connections move over, when
// envHandoverConns is "1" (conns.go).
const (
	envHandover       = "STICKYLB_HANDOVER"
	envHandoverAdmin  = "STICKYLB_HANDOVER_ADMIN"
	envHandoverSocket = "STICKYLB_HANDOVER_SOCKET"
	envHandoverConns  = "STICKYLB_HANDOVER_CONNS"
)

// handoverWait bounds how long the old process waits for the new one.
const handoverWait = time.Minute

// upgrade hands over to a new process and reports whether it took over;
// when not, this process serves on, its admin API and cluster included.
func (d *Daemon) upgrade() bool {
	adm, err := d.adminFiles()
	if err != nil {
		d.log.Error("upgrade refused: serving on", "error", err)
		return false
	}
	defer adm.close()
	files, err := d.srv.Handover()
	if err != nil {
		d.log.Error("upgrade refused: serving on", "error", err)
		return false
	}
	defer closeAll(files)
	// Calls wait in the admin sockets' queues for the new process, which
	// answers from the state this one handed over.
	d.closeAdmin()
	exe := cmp.Or(d.opts.Executable, executable())
	if err := d.startNew(exe, files, adm); err != nil {
		d.log.Error("upgrade failed: the new process did not start; serving on", "binary", exe, "error", err)
		if err := d.srv.Resume(files); err != nil {
			d.log.Error("cannot serve again after the failed upgrade", "error", err)
		}
		if err := d.listenAdmin(adm); err != nil {
			d.log.Error("cannot serve the admin API again after the failed upgrade", "error", err)
		}
		return false
	}
	d.handedOver = true
	return true
}

func executable() string {
	exe, _ := os.Executable()
	return exe
}

// startNew starts exe with the daemon's arguments, files and the admin
// sockets, and waits until it serves.
func (d *Daemon) startNew(exe string, files []*os.File, adm adminFiles) error {
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("the hand-over pipe: %w", err)
	}
	defer r.Close()
	cmd := exec.Command(exe, d.opts.Args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.ExtraFiles = append(append([]*os.File{}, files...), w)
	cmd.Env = append(os.Environ(), envHandover+"="+strconv.Itoa(len(files)))
	if adm.tcp != nil {
		cmd.ExtraFiles = append(cmd.ExtraFiles, adm.tcp)
		cmd.Env = append(cmd.Env, envHandoverAdmin+"=1")
	}
	if adm.socket != nil {
		cmd.ExtraFiles = append(cmd.ExtraFiles, adm.socket)
		cmd.Env = append(cmd.Env, envHandoverSocket+"="+adm.path)
	}
	conns, theirs, err := proxy.MoveSockets()
	if err != nil {
		w.Close()
		return err
	}
	cmd.ExtraFiles = append(cmd.ExtraFiles, theirs)
	cmd.Env = append(cmd.Env, envHandoverConns+"=1")
	err = cmd.Start()
	w.Close()
	theirs.Close() // the new process's now: its death reads as the end here
	if err != nil {
		conns.Close()
		return err
	}
	d.log.Info("upgrade: new process started", "pid", cmd.Process.Pid, "binary", exe, "sockets", len(files))
	version, err := waitReady(r)
	if err != nil {
		conns.Close()
		cmd.Process.Kill()
		cmd.Wait()
		return err
	}
	if err := d.moveConns(conns, version); err != nil {
		// Nothing moved, and the listening sockets are still this
		// process's too: it serves on, and the new one goes.
		cmd.Process.Kill()
		cmd.Wait()
		return err
	}
	cmd.Process.Release()
	return nil
}

// waitReady waits, up to handoverWait, for the new process to say it
// serves, and returns the version of the connections' hand-over it
// speaks (0: none, the listeners only).
func waitReady(r *os.File) (int, error) {
	r.SetReadDeadline(time.Now().Add(handoverWait))
	buf := make([]byte, 32)
	n, err := r.Read(buf)
	line, ok := strings.CutPrefix(string(buf[:n]), "ready")
	if !ok || !strings.HasSuffix(line, "\n") {
		return 0, fmt.Errorf("it exited or closed its pipe before serving: %v", err)
	}
	v, _ := strconv.Atoi(strings.TrimPrefix(strings.TrimSpace(line), "conns/"))
	return v, nil
}

// afterHandover finishes this process's open connections once the new
// one serves, up to drain_timeout, without telling systemd: the new
// process is its main process now.
func (d *Daemon) afterHandover(sigs <-chan os.Signal) {
	d.log.Info("upgrade: the new process serves; finishing this one's open connections", "open", d.srv.Active())
	d.drain(syscall.SIGUSR2, sigs)
}

// Takeover is what a process that hands over passed to this one: the
// listening sockets, the pipe to say "ready" on, and the admin sockets.
// Its zero value is a start of a process that takes over from none.
type Takeover struct {
	socks *proxy.Sockets
	ready *os.File
	admin adminFiles
	conns *os.File // the socket the open connections come over, or nil
}

// Inherited takes what a process that hands over passed to this one.
func Inherited() (Takeover, error) {
	var h Takeover
	n, _ := strconv.Atoi(os.Getenv(envHandover))
	if n <= 0 {
		return h, nil
	}
	fd := func(name string) *os.File { f := os.NewFile(uintptr(3+n), name); n++; return f }
	files := make([]*os.File, n)
	for i := range files {
		files[i] = os.NewFile(uintptr(3+i), "inherited socket "+strconv.Itoa(i))
	}
	h.ready = fd("handover pipe")
	if os.Getenv(envHandoverAdmin) == "1" {
		h.admin.tcp = fd("inherited admin listener")
	}
	if h.admin.path = os.Getenv(envHandoverSocket); h.admin.path != "" {
		h.admin.socket = fd("inherited admin socket")
	}
	if os.Getenv(envHandoverConns) == "1" {
		h.conns = fd("connections' hand-over socket")
	}
	for _, e := range []string{envHandover, envHandoverAdmin, envHandoverSocket, envHandoverConns} {
		os.Unsetenv(e) // not for the processes this one starts
	}
	var err error
	if h.socks, err = proxy.NewSockets(files); err != nil {
		return h, fmt.Errorf("taking over: %w", err)
	}
	return h, nil
}

// TakingOver says whether a process handed over to this one.
func (h Takeover) TakingOver() bool { return h.ready != nil }

// closeReady tells the process that handed over that this one will not
// serve.
func (h Takeover) closeReady() {
	if h.ready != nil {
		h.ready.Close()
	}
	if h.conns != nil {
		h.conns.Close()
	}
}

func closeAll(fs []*os.File) {
	for _, f := range fs {
		f.Close()
	}
}
