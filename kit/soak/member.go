//go:build linux

package soak

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/stickylb/stickylb/kit/loop"
)

// member is one process of the rig, a stickylb member or a simulated
// CAS (`stickylb sim cas`), restarted as the schedule says; its
// addresses and state file stay the same across restarts, as a host's
// do.
type member struct {
	name, host string
	binary     string   // the stickylb binary, for ctl
	exe        string   // what start runs: binary, or a member's own link to it, which an upgrade fault replaces
	args       []string // after exe: run -c FILE, or sim cas ...
	dir        string   // a member's state: config, pins snapshot and journal, pid file
	admin      string   // host:port of a member's admin API
	cfgPath    string
	pidfile    string
	uid        int // a member's own user in namespaces of the soak's own (the partition's rules go by user), else 0: the test's

	mu      sync.Mutex
	cmd     *exec.Cmd
	cur     int           // the serving process: cmd's, or the one that took over from it in an upgrade
	done    chan struct{} // closed when cmd and every process that took over from it have exited
	log     strings.Builder
	starts  int
	stopped bool // SIGSTOPped now
}

// config is the member's lb.toml; variant changes a harmless setting,
// so that a good reload has something to load.
func (r *rig) config(m *member, variant int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[global]\ndrain_timeout = \"1s\"\nsnapshot_file = %q\nsnapshot_interval = \"5s\"\njournal_interval = \"200ms\"\n",
		filepath.Join(m.dir, "pins.json"))
	fmt.Fprintf(&b, "[admin]\nlisten = %q\n", m.admin)
	for i, name := range []string{"epmap", "rpc", "addressbook"} {
		fmt.Fprintf(&b, "[listener.%s]\nlisten = \"%s:%d\"\npool = \"cas\"\n", name, m.host, r.ports[i])
	}
	if r.cfg.Isolated {
		// Per-port: a member of its own user may not load sk-lookup's
		// BPF program.
		fmt.Fprintf(&b, "[listener.dynamic]\nlisten = \"%s:%s\"\nrange_mode = \"per-port\"\npool = \"cas\"\n", m.host, dynamicPorts)
	}
	fmt.Fprintf(&b, "[pool.cas]\nconnect_timeout = \"1s\"\n[pool.cas.health]\ninterval = \"%dms\"\ntimeout = \"300ms\"\nrise = 2\nfall = 2\n", 200+50*(variant%2))
	// A TCP check of the endpoint mapper alone: the default, a connect
	// to every fixed port the listeners forward to, would find a CAS on
	// dynamic ports down (and the simulated CAS speaks no DCE/RPC for
	// production's rpc checks).
	fmt.Fprintf(&b, "[pool.cas.check.epm]\ntype = \"tcp\"\nport = %d\n", r.ports[0])
	for i, h := range casHosts {
		fmt.Fprintf(&b, "[pool.cas.backend.cas%d]\naddress = %q\n", i+1, h)
	}
	fmt.Fprintf(&b, "[cluster]\nbind = %q\npeers = [\"%s\"]\nnode_name = %q\nsync_timeout = \"3s\"\nsync_interval = \"1s\"\n",
		r.binds[m.name], strings.Join(r.bindList(), `", "`), m.name)
	return b.String()
}

// writeConfig writes text as the member's config file.
func (m *member) writeConfig(text string) error {
	if err := os.WriteFile(m.cfgPath, []byte(text), 0o644); err != nil {
		return fmt.Errorf("write %s's config: %w", m.name, err)
	}
	return nil
}

// start runs the binary; its log (stderr) is kept. A process that takes
// over in an upgrade inherits stderr, so the log goes on, and done
// closes only when the last of them has exited.
func (m *member) start() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	cmd := exec.Command(m.exe, m.args...)
	if m.uid != 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(m.uid), Gid: uint32(m.uid)}}
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return fmt.Errorf("start %s: %w", m.name, err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", m.name, err)
	}
	done := make(chan struct{})
	m.cmd, m.cur, m.done, m.stopped = cmd, cmd.Process.Pid, done, false
	m.starts++
	fmt.Fprintf(&m.log, "--- start %d pid %d\n", m.starts, cmd.Process.Pid)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			m.mu.Lock()
			m.log.WriteString(sc.Text() + "\n")
			m.mu.Unlock()
		}
		cmd.Wait()
		close(done)
	}()
	return nil
}

// signal sends sig to the serving process.
func (m *member) signal(sig syscall.Signal) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cur == 0 {
		return fmt.Errorf("signal %s: not running", m.name)
	}
	m.stopped = sig == syscall.SIGSTOP
	if err := syscall.Kill(m.cur, sig); err != nil {
		return fmt.Errorf("signal %v to %s (pid %d): %w", sig, m.name, m.cur, err)
	}
	return nil
}

// tookOver records the process that took over in an upgrade.
func (m *member) tookOver(pid int) {
	m.mu.Lock()
	m.cur = pid
	m.mu.Unlock()
}

// kill ends the serving process with SIGKILL, and the one it took over
// from if that still finishes its connections, and waits for them.
func (m *member) kill() error {
	m.mu.Lock()
	cmd, cur, done := m.cmd, m.cur, m.done
	m.cmd, m.cur = nil, 0
	m.mu.Unlock()
	if cmd == nil {
		return nil
	}
	syscall.Kill(cur, syscall.SIGKILL)
	cmd.Process.Kill()
	select {
	case <-done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s did not exit 10s after SIGKILL", m.name)
	}
}

func (m *member) pid() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cur
}

// logSince is the log from offset on, and the offset of its end.
func (m *member) logSince(off int) (string, int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.log.String()
	return s[min(off, len(s)):], len(s)
}

func (m *member) logs() string { m.mu.Lock(); defer m.mu.Unlock(); return m.log.String() }

// client speaks to admin APIs: no keep-alive, so a killed member leaves
// nothing behind, and a short timeout, so a stopped one is seen at once.
var client = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// ready asks /readyz; nil means 200.
func (m *member) ready() error {
	resp, err := client.Get("http://" + m.admin + "/readyz")
	if err != nil {
		return fmt.Errorf("%s /readyz: %w", m.name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var body struct{ Error string }
		json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&body)
		return fmt.Errorf("%s /readyz: %s: %s", m.name, resp.Status, body.Error)
	}
	return nil
}

// ctl runs `stickylb ctl` against the member.
func (m *member) ctl(args ...string) (string, error) {
	cmd := exec.Command(m.binary, append([]string{"ctl", "--admin", "http://" + m.admin}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ctl %s on %s: %w: %s", strings.Join(args, " "), m.name, err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// freePort returns a port free on host for TCP and UDP now, the same
// for the same seq when free: the seed fixes the rig.
func freePort(host string, seq int) (int, error) {
	i := 0
	return loop.FreePort(host, 500, func() int { i++; return seq*997 + (i-1)*7919 })
}
