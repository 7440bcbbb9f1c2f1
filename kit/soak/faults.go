//go:build linux

package soak

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/stickylb/stickylb/kit/lbtest"
)

// The faults that need more than a signal: a binary upgrade, one that
// fails, a partition and a full disk. Each checks that it took effect
// and that the member came through it; the invariants of check.go see
// what the fleet and the admin APIs saw meanwhile.

// upgrade hands a member over to a new process (SIGUSR2) under the
// fleet: the new process names itself in the pid file, the old one
// exits once its connections are done (drain_timeout), and the member
// is back in every member's view of the cluster.
func (r *rig) upgrade(f Fault) error {
	m := r.members[f.Target]
	old := m.pid()
	if err := m.signal(syscall.SIGUSR2); err != nil {
		return err
	}
	var pid int
	if err := waitFor(20*time.Second, m.name+"'s new process in its pid file", func() bool {
		pid = lbtest.PidIn(m.pidfile)
		return pid != 0 && pid != old
	}); err != nil {
		return fmt.Errorf("upgrade of %s (pid %d): %w", m.name, old, err)
	}
	m.tookOver(pid)
	if err := waitFor(10*time.Second, fmt.Sprintf("%s's old process %d to exit", m.name, old), func() bool { return lbtest.Exited(old) }); err != nil {
		return err
	}
	if err := r.rejoined(m, 20*time.Second); err != nil {
		return fmt.Errorf("after the upgrade: %w", err)
	}
	r.note(m.name, "pid %d took over from %d, which exited; all three members alive everywhere", pid, old)
	return nil
}

// upgradeBad sends SIGUSR2 with a binary that exits at once in place of
// the member's: the old process must say the upgrade failed, and keep
// its pid, its /readyz and its place in the cluster.
func (r *rig) upgradeBad(f Fault) error {
	m := r.members[f.Target]
	old := m.pid()
	_, mark := m.logSince(0)
	bad := m.exe + ".bad"
	if err := os.WriteFile(bad, []byte("#!/bin/sh\necho 'soak: a binary that fails at once' >&2\nexit 1\n"), 0o755); err != nil {
		return fmt.Errorf("write the failing binary for %s: %w", m.name, err)
	}
	if err := os.Rename(bad, m.exe); err != nil {
		return fmt.Errorf("put the failing binary in %s's place: %w", m.name, err)
	}
	err := m.signal(syscall.SIGUSR2)
	if err == nil {
		err = waitFor(10*time.Second, m.name+" to log the failed upgrade", func() bool {
			log, _ := m.logSince(mark)
			return strings.Contains(log, "upgrade failed")
		})
	}
	if lerr := linkBinary(m.binary, m.exe); lerr != nil {
		return lerr
	}
	if err != nil {
		return err
	}
	if now := lbtest.PidIn(m.pidfile); now != old || lbtest.Exited(old) {
		return fmt.Errorf("after a failed upgrade %s's pid file names %d (was %d; exited: %v)", m.name, now, old, lbtest.Exited(old))
	}
	if err := m.ready(); err != nil {
		return fmt.Errorf("after a failed upgrade: %w", err)
	}
	if err := r.rejoined(m, 5*time.Second); err != nil {
		return fmt.Errorf("after a failed upgrade: %w", err)
	}
	r.note(m.name, "upgrade failed as it should: pid %d serves on, ready, all three members alive everywhere", old)
	return nil
}

// partition cuts a member from its peers, and only from them: routing
// rules refuse the packets of the member's user to its peers' address
// and of theirs to its (the fleet's and the CAS hosts' traffic is the
// test's user's). The peers must find it gone, and after the heal all
// three see each other alive.
func (r *rig) partition(f Fault) error {
	m := r.members[f.Target]
	var rules [][]string
	for _, p := range r.members {
		if p != m {
			rules = append(rules, cutRule(m.uid, p.host), cutRule(p.uid, m.host))
		}
	}
	heal := func() error {
		var first error
		for _, rule := range rules {
			if err := ip(append([]string{"rule", "del"}, rule...)...); err != nil && first == nil {
				first = err
			}
		}
		return first
	}
	for _, rule := range rules {
		if err := ip(append([]string{"rule", "add"}, rule...)...); err != nil {
			heal()
			return fmt.Errorf("cut %s from its peers: %w", m.name, err)
		}
	}
	cut := time.Now()
	seen := waitFor(f.For, "the peers to find "+m.name+" gone", func() bool { return r.gone(m) })
	noticed := time.Since(cut)
	time.Sleep(time.Until(cut.Add(f.For)))
	if err := heal(); err != nil {
		return fmt.Errorf("heal %s's partition: %w", m.name, err)
	}
	r.note(m.name, "healed")
	if seen != nil {
		return fmt.Errorf("partition of %s did not show: %w", m.name, seen)
	}
	if err := r.rejoined(m, 30*time.Second); err != nil {
		return fmt.Errorf("after the partition healed: %w", err)
	}
	r.note(m.name, "peers found it gone %.1fs into the cut; all three alive everywhere %.1fs after the heal", noticed.Seconds(), time.Since(cut.Add(f.For)).Seconds())
	return nil
}

// cutRule refuses the packets of user uid to host; it comes before the
// local table's rule, which Isolated moved behind it.
func cutRule(uid int, host string) []string {
	return []string{"pref", "10", "uidrange", fmt.Sprintf("%d-%d", uid, uid), "to", host, "prohibit"}
}

// gone says whether every peer of m sees it other than alive.
func (r *rig) gone(m *member) bool {
	for _, p := range r.members {
		if p != m && r.view(p)[m.name] == "alive" {
			return false
		}
	}
	return true
}

// rejoined waits up to d for every member to see all three alive.
func (r *rig) rejoined(m *member, d time.Duration) error {
	return waitFor(d, "every member to see "+m.name+" and the others alive", func() bool {
		for _, p := range r.members {
			if r.alive(p) != 3 {
				return false
			}
		}
		return true
	})
}

// diskFull fills a member's state disk (its own tmpfs) for f.For and
// frees it: the member serves on meanwhile (its /readyz is polled, the
// fleet's invariants hold), and once there is room it writes its pin
// snapshot again.
func (r *rig) diskFull(f Fault) error {
	m := r.members[f.Target]
	_, mark := m.logSince(0)
	filler, err := lbtest.FillDir(m.dir)
	if err != nil {
		os.Remove(filler)
		return fmt.Errorf("fill %s's disk: %w", m.name, err)
	}
	time.Sleep(f.For)
	if err := os.Remove(filler); err != nil {
		return fmt.Errorf("free %s's disk: %w", m.name, err)
	}
	freed := time.Now()
	pins := filepath.Join(m.dir, "pins.json")
	if err := waitFor(15*time.Second, m.name+"'s pin snapshot written after its disk was freed", func() bool {
		fi, err := os.Stat(pins)
		return err == nil && fi.ModTime().After(freed)
	}); err != nil {
		return err
	}
	log, _ := m.logSince(mark)
	r.note(m.name, "disk freed; pins saved again %.1fs later; %d log lines on the full disk", time.Since(freed).Seconds(), strings.Count(log, "no space left on device"))
	return nil
}
