//go:build linux

package soak

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/stickylb/stickylb/kit/sim"
)

// Addresses of the soak's own on loopback, so that nothing else on
// 127.0.0.1 or the lab's 127.0.0.11-13 is in the way.
var (
	memberHosts = []string{"127.0.40.1", "127.0.40.2", "127.0.40.3"}
	casHosts    = []string{"127.0.40.11", "127.0.40.12", "127.0.40.13"}
)

// Config is one soak run.
type Config struct {
	Binary   string        // the stickylb binary to run
	Dir      string        // where members keep their state; the caller removes it
	Duration time.Duration // how long the fleet works, faults included
	Seed     uint64        // the schedule's and the fleet's
	Sessions int           // Unity mailbox sessions, one client address each (default 24)
	// Isolated says the test runs in namespaces of its own (Isolate),
	// where the partition and the full disk can be made; NotIsolated
	// says why not, for the timeline.
	Isolated    bool
	NotIsolated string
	Log         func(format string, args ...any)
}

// rig is a running soak: processes, fleet and what they did.
type rig struct {
	cfg     Config
	ports   [3]int // endpoint mapper, RPC Client Access, Address Book
	binds   map[string]string
	members []*member
	cas     []*member
	fleet   *sim.Fleet
	start   time.Time

	mu       sync.Mutex
	failures []sim.Failure
	notes    []note // the timeline
	readyErr []note // admin API failures outside the member's own faults
	targets  map[string]bool
}

// note is one line of the timeline.
type note struct {
	At   time.Duration
	Lane string // member or CAS name, or "fleet"
	What string
}

func (r *rig) since() time.Duration { return time.Since(r.start) }

func (r *rig) note(lane, format string, args ...any) {
	n := note{At: r.since(), Lane: lane, What: fmt.Sprintf(format, args...)}
	r.mu.Lock()
	r.notes = append(r.notes, n)
	r.mu.Unlock()
	if r.cfg.Log != nil {
		r.cfg.Log("%7.1fs %-8s %s", n.At.Seconds(), lane, n.What)
	}
}

func (r *rig) bindList() []string {
	var out []string
	for _, m := range r.members {
		out = append(out, r.binds[m.name])
	}
	return out
}

// startRig picks ports and starts the CAS hosts and the members, and
// waits until every member is ready and sees the others.
func startRig(cfg Config) (*rig, error) {
	r := &rig{cfg: cfg, binds: map[string]string{}, targets: map[string]bool{}, start: time.Now()}
	for i := range r.ports {
		p, err := freePort(casHosts[0], int(cfg.Seed)+i*31)
		if err != nil {
			return nil, err
		}
		r.ports[i] = p
	}
	for i, h := range casHosts {
		args := []string{"sim", "cas", "--hosts", h, "--names", fmt.Sprintf("cas%d", i+1), "--epm-port", strconv.Itoa(r.ports[0]),
			"--rca-port", strconv.Itoa(r.ports[1]), "--ab-port", strconv.Itoa(r.ports[2])}
		if i == len(casHosts)-1 && cfg.Isolated {
			args = append(args, "--dynamic-ports", dynamicPorts)
		}
		r.cas = append(r.cas, &member{name: fmt.Sprintf("cas%d", i+1), host: h, binary: cfg.Binary, exe: cfg.Binary, args: args})
	}
	for i, h := range memberHosts {
		m, err := r.newMember(i, h)
		if err != nil {
			r.close()
			return nil, err
		}
		ap, err := freePort(h, int(cfg.Seed)+100+i)
		if err != nil {
			r.close()
			return nil, err
		}
		bp, err := freePort(h, int(cfg.Seed)+200+i)
		if err != nil {
			r.close()
			return nil, err
		}
		m.admin, r.binds[m.name] = fmt.Sprintf("%s:%d", h, ap), fmt.Sprintf("%s:%d", h, bp)
		r.targets[h] = true
	}
	for _, c := range r.cas {
		if err := c.start(); err != nil {
			r.close()
			return nil, err
		}
	}
	for _, m := range r.members {
		if err := m.writeConfig(r.config(m, 0)); err != nil {
			r.close()
			return nil, err
		}
		if err := m.start(); err != nil {
			r.close()
			return nil, err
		}
	}
	for _, m := range r.members {
		if err := waitFor(30*time.Second, m.name+" ready with three members alive", func() bool { return m.ready() == nil && r.alive(m) == 3 }); err != nil {
			log, _ := m.logSince(0)
			r.close()
			return nil, fmt.Errorf("%w; ready: %v; its log:\n%s", err, m.ready(), log[max(0, len(log)-3000):])
		}
	}
	return r, nil
}

// dynamicPorts is the range the last CAS takes its RPC ports from in
// namespaces of the soak's own, as Exchange does without static ports:
// each start picks two anew, which the endpoint mapper hands out. The
// namespace's ports are all the soak's, so the range is free; outside
// it, all three keep static ports.
const dynamicPorts = "20000-20031"

// newMember makes member i's state folder (in namespaces of the soak's
// own, a small tmpfs that the full-disk fault fills, owned by the
// member's own user) and its link to the binary, which the failed
// upgrade replaces.
func (r *rig) newMember(i int, host string) (*member, error) {
	name := fmt.Sprintf("m%d", i+1)
	m := &member{name: name, host: host, binary: r.cfg.Binary, dir: filepath.Join(r.cfg.Dir, name), exe: filepath.Join(r.cfg.Dir, "bin", name)}
	r.members = append(r.members, m)
	if err := os.MkdirAll(m.dir, 0o755); err != nil {
		return nil, fmt.Errorf("state dir of %s: %w", name, err)
	}
	if r.cfg.Isolated {
		m.uid = 40001 + i
		// Traversable by the member's user, as /var/lib is.
		if err := os.Chmod(r.cfg.Dir, 0o711); err != nil {
			return nil, fmt.Errorf("state dir of %s: %w", name, err)
		}
		opts := fmt.Sprintf("size=%d,mode=0755,uid=%d,gid=%d", diskSize, m.uid, m.uid)
		if err := syscall.Mount("tmpfs", m.dir, "tmpfs", 0, opts); err != nil {
			return nil, fmt.Errorf("mount a tmpfs (%s) for %s's state: %w", opts, name, err)
		}
	}
	if err := linkBinary(r.cfg.Binary, m.exe); err != nil {
		return nil, err
	}
	m.cfgPath, m.pidfile = filepath.Join(m.dir, "lb.toml"), filepath.Join(m.dir, "stickylb.pid")
	m.args = []string{"run", "-c", m.cfgPath, "--pidfile", m.pidfile}
	return m, nil
}

// diskSize is the size of a member's state disk: room for a few times
// its pin snapshot and journal, so a filler fills it in a moment.
const diskSize = 2 << 20

// linkBinary puts the binary at path, by a hard link (a copy across
// file systems); an upgrade starts the binary at the path it ran from.
func linkBinary(binary, path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("folder for %s: %w", path, err)
	}
	tmp := path + ".new"
	os.Remove(tmp)
	if err := os.Link(binary, tmp); err != nil {
		b, rerr := os.ReadFile(binary)
		if rerr != nil {
			return fmt.Errorf("link %s to %s: %w", path, binary, rerr)
		}
		if werr := os.WriteFile(tmp, b, 0o755); werr != nil {
			return fmt.Errorf("copy %s to %s: %w", binary, path, werr)
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("put the binary at %s: %w", path, err)
	}
	return nil
}

// alive counts the members m sees alive.
func (r *rig) alive(m *member) int {
	n := 0
	for _, st := range r.view(m) {
		if st == "alive" {
			n++
		}
	}
	return n
}

// view is m's cluster as its admin API gives it, member name to state
// (nil when m does not answer).
func (r *rig) view(m *member) map[string]string {
	resp, err := client.Get("http://" + m.admin + "/api/cluster")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var st struct {
		Members []struct {
			Name  string `json:"name"`
			State string `json:"state"`
		} `json:"members"`
	}
	if json.NewDecoder(resp.Body).Decode(&st) != nil {
		return nil
	}
	out := map[string]string{}
	for _, p := range st.Members {
		out[p.Name] = p.State
	}
	return out
}

// route adds or withdraws a member from the fleet's targets, as a
// router withdraws a dead member's route.
func (r *rig) route(m *member, on bool) {
	r.mu.Lock()
	r.targets[m.host] = on
	var hosts []string
	for _, h := range memberHosts {
		if r.targets[h] {
			hosts = append(hosts, h)
		}
	}
	r.mu.Unlock()
	if len(hosts) > 0 {
		r.fleet.SetTargets(hosts)
	}
}

// runFleet starts the Unity fleet, recording each failure.
func (r *rig) runFleet(ctx context.Context) chan *sim.Report {
	var srcs []string
	for i := range r.cfg.Sessions {
		srcs = append(srcs, fmt.Sprintf("127.2.%d.%d", i/200, i%200+1))
	}
	r.fleet = sim.NewFleet(sim.FleetConfig{Targets: memberHosts, EPMPort: r.ports[0], Sources: srcs, Sessions: r.cfg.Sessions,
		Duration: r.cfg.Duration, OpInterval: 100 * time.Millisecond, Timeout: 2 * time.Second, Seed: r.cfg.Seed,
		OnError: func(f sim.Failure) {
			r.mu.Lock()
			r.failures = append(r.failures, f)
			r.mu.Unlock()
		}})
	out := make(chan *sim.Report, 1)
	go func() { out <- r.fleet.Run(ctx) }()
	return out
}

func (r *rig) close() {
	for _, m := range slices.Concat(r.members, r.cas) {
		m.kill()
	}
	if r.cfg.Isolated {
		for _, m := range r.members {
			syscall.Unmount(m.dir, syscall.MNT_DETACH)
		}
	}
}

// waitFor polls cond every 50ms for up to d.
func waitFor(d time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}
