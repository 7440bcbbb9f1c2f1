//go:build linux

package main

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/stickylb/stickylb/proxy"
)

// A binary upgrade (SIGUSR2): the running process starts the binary at
// its own path, which the package has replaced, with the same arguments
// and its listening sockets; the new process restores the pins and
// operator decisions the old one wrote a moment before, serves, and says
// so; the old one then finishes its open connections (up to
// drain_timeout) and exits. No connection is refused or cut, no client
// moves. Descriptor passing keeps the very sockets, so connections that
// arrive during the hand-over wait in their accept queues.

// envHandover tells a process it takes over: the number of listening
// sockets passed from descriptor 3 on. The descriptor after them is the
// pipe it writes "ready" to.
const envHandover = "STICKYLB_HANDOVER"

// handoverWait bounds how long the old process waits for the new one.
const handoverWait = time.Minute

// upgrade hands over to a new process and reports whether it took over;
// when not, this process serves on.
func (d *service) upgrade(exe string, args []string) bool {
	files, err := d.srv.Handover()
	if err != nil {
		d.log.Error("upgrade refused: serving on", "error", err)
		return false
	}
	defer closeAll(files)
	if d.adminSrv != nil {
		d.adminSrv.Close() // the new process binds admin.listen
	}
	if err := d.startNew(exe, args, files); err != nil {
		d.log.Error("upgrade failed: the new process did not start; serving on", "binary", exe, "error", err)
		if err := d.srv.Resume(files); err != nil {
			d.log.Error("cannot serve again after the failed upgrade", "error", err)
		}
		if err := d.listenAdmin(); err != nil {
			d.log.Error("cannot serve the admin API again after the failed upgrade", "error", err)
		}
		return false
	}
	return true
}

// startNew starts exe with args and files, and waits until it serves.
func (d *service) startNew(exe string, args []string, files []*os.File) error {
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	cmd := exec.Command(exe, args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.ExtraFiles = append(append([]*os.File{}, files...), w)
	cmd.Env = append(os.Environ(), envHandover+"="+strconv.Itoa(len(files)))
	err = cmd.Start()
	w.Close()
	if err != nil {
		return err
	}
	d.log.Info("upgrade: new process started", "pid", cmd.Process.Pid, "binary", exe, "sockets", len(files))
	ready := make(chan error, 1)
	go func() {
		buf := make([]byte, 8)
		n, err := r.Read(buf)
		if string(buf[:n]) != "ready\n" {
			err = fmt.Errorf("it exited or closed its pipe before serving: %v", err)
		}
		ready <- err
	}()
	r.SetReadDeadline(time.Now().Add(handoverWait))
	if err := <-ready; err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return err
	}
	cmd.Process.Release()
	return nil
}

// afterHandover finishes this process's open connections once the new
// one serves, up to drain_timeout, without telling systemd: the new
// process is its main process now.
func (d *service) afterHandover(sigs <-chan os.Signal) {
	d.log.Info("upgrade: the new process serves; finishing this one's open connections", "open", d.srv.Active())
	d.drain(syscall.SIGUSR2, sigs)
}

// inherited takes the sockets and the readiness pipe a process that
// hands over passed to this one; nil when it is not taking over.
func inherited() (*proxy.Sockets, *os.File, error) {
	n, _ := strconv.Atoi(os.Getenv(envHandover))
	if n <= 0 {
		return nil, nil, nil
	}
	os.Unsetenv(envHandover) // not for the processes this one starts
	files := make([]*os.File, n)
	for i := range files {
		files[i] = os.NewFile(uintptr(3+i), "inherited socket "+strconv.Itoa(i))
	}
	ready := os.NewFile(uintptr(3+n), "handover pipe")
	socks, err := proxy.NewSockets(files)
	if err != nil {
		return nil, nil, fmt.Errorf("taking over: %w", err)
	}
	return socks, ready, nil
}

// tookOver tells the old process and systemd that this one serves now.
func tookOver(d *service, ready *os.File) {
	ready.Write([]byte("ready\n"))
	ready.Close()
	notify(d.log, fmt.Sprintf("MAINPID=%d\n%s", os.Getpid(), daemon.SdNotifyReady))
	d.log.Info("upgrade: took over the listening sockets, pins and operator decisions")
}

func closeAll(fs []*os.File) {
	for _, f := range fs {
		f.Close()
	}
}
