//go:build linux

package soak

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"time"
)

// Kind is a fault the schedule knows.
type Kind string

// The faults, on a member (m) or a CAS (c).
const (
	MemberKill Kind = "member-kill" // m: SIGKILL, restarted after For
	MemberStop Kind = "member-stop" // m: SIGSTOP under load, SIGCONT after For
	CASKill    Kind = "cas-kill"    // c: SIGKILL, restarted after For
	CASStop    Kind = "cas-stop"    // c: SIGSTOP (hangs), SIGCONT after For
	CASMaint   Kind = "cas-maint"   // c: maint from one member, ready from another after For
	CASDrain   Kind = "cas-drain"   // c: drain from one member, ready from another after For
	ReloadGood Kind = "reload-good" // m: a changed, valid file and SIGHUP
	ReloadBad  Kind = "reload-bad"  // m: a broken file and SIGHUP; the old config stays
	Upgrade    Kind = "upgrade"     // m: SIGUSR2, a new process takes over the sockets, pins and cluster place
	UpgradeBad Kind = "upgrade-bad" // m: SIGUSR2 with a binary that exits at once; the old process serves on
	Partition  Kind = "partition"   // m: cut from its peers (not from clients or CAS hosts), healed after For
	DiskFull   Kind = "disk-full"   // m: its state disk filled, freed after For
)

// Kinds are the faults a schedule draws from: all of them in
// namespaces of the soak's own (Isolated), else all but the partition
// and the full disk, which need them.
func Kinds(isolated bool) []Kind {
	ks := []Kind{MemberKill, MemberStop, CASKill, CASStop, CASMaint, CASDrain, ReloadGood, ReloadBad, Upgrade, UpgradeBad}
	if isolated {
		ks = append(ks, Partition, DiskFull)
	}
	return ks
}

// Fault is one step of a schedule.
type Fault struct {
	At, For time.Duration
	Kind    Kind
	Target  int // member or CAS index
	From    int // for maint and drain: the member that sets it (ready comes from (From+1)%3)
}

// onMember: a fault that takes a member out of the cluster or out of
// its normal running; one at a time.
func (f Fault) onMember() bool {
	switch f.Kind {
	case MemberKill, MemberStop, Upgrade, UpgradeBad, Partition, DiskFull:
		return true
	}
	return false
}

func (f Fault) onCAS() bool { return f.Kind == CASKill || f.Kind == CASStop || f.Kind == CASMaint }

// excuses says whether the fault may explain what goes wrong on its
// member or CAS: a connection cut or a failed /readyz. A failed upgrade,
// a partition and a full disk excuse nothing: a user must notice none
// of them.
func (f Fault) excuses() bool {
	switch f.Kind {
	case MemberKill, MemberStop, Upgrade, CASKill, CASStop, CASMaint:
		return true
	}
	return false
}

// Target's name.
func (f Fault) target() string {
	if f.Kind == CASKill || f.Kind == CASStop || f.Kind == CASMaint || f.Kind == CASDrain {
		return fmt.Sprintf("cas%d", f.Target+1)
	}
	return fmt.Sprintf("m%d", f.Target+1)
}

func (f Fault) String() string {
	s := fmt.Sprintf("%s %s", f.Kind, f.target())
	if f.Kind == CASMaint || f.Kind == CASDrain {
		s += fmt.Sprintf(" (set on m%d, ready on m%d)", f.From+1, (f.From+1)%3+1)
	}
	if f.For > 0 {
		s += fmt.Sprintf(" for %.1fs", f.For.Seconds())
	}
	return s
}

// Schedule is the seed's faults between warm (the warm-up) and d less
// the quiet end: one every few seconds, overlapping, with at most one
// member and one CAS out of service at a time (a three-member cluster in
// front of a three-host array is built to survive one of each), and
// reloads, drains and their readies anywhere else, but for drain and
// maintenance during a partition: a cut member cannot learn an
// operator's decision, and its clients' sessions would split by design.
func Schedule(seed uint64, warm, d time.Duration, kinds []Kind) []Fault {
	rng := rand.New(rand.NewPCG(seed, 0x50a4))
	var out []Fault
	// When the last member and CAS faults, the last partition and the
	// last drain or maintenance end.
	var memberFree, casFree, cutEnd, adminEnd time.Duration
	end := d - quietEnd
	for at := warm; ; {
		at += time.Duration((1.5 + 3*rng.Float64()) * float64(time.Second))
		if at >= end {
			break
		}
		f := Fault{At: at, Kind: kinds[rng.IntN(len(kinds))], Target: rng.IntN(3), From: rng.IntN(3)}
		switch f.Kind {
		case MemberKill, CASKill:
			f.For = time.Duration(2+rng.IntN(4)) * time.Second
		case MemberStop:
			f.For = 2 * time.Second
		case CASStop:
			f.For = time.Duration(1+rng.IntN(3)) * time.Second
		case CASMaint, CASDrain:
			f.For = time.Duration(3+rng.IntN(4)) * time.Second
		case Partition:
			// Long enough for the peers to find the member gone
			// (memberlist's probe and suspicion, about 6s for three).
			f.For = time.Duration(8+rng.IntN(4)) * time.Second
		case DiskFull:
			f.For = time.Duration(4+rng.IntN(4)) * time.Second
		}
		// Member faults settle: a restarted member needs its restart and
		// a sync to be back; the same for a CAS's health checks.
		settle := f.For + 4*time.Second
		if f.Kind == Partition || f.Kind == Upgrade {
			settle += 6 * time.Second // a rejoin, a hand-over
		}
		admin := f.Kind == CASMaint || f.Kind == CASDrain
		if admin && at < cutEnd || f.Kind == Partition && at < adminEnd {
			continue
		}
		switch {
		case f.onMember() || f.Kind == ReloadGood || f.Kind == ReloadBad:
			if at < memberFree || at+settle > end {
				continue
			}
			if f.onMember() {
				memberFree = at + settle
			}
			if f.Kind == Partition {
				cutEnd = at + settle
			}
		case f.onCAS():
			if at < casFree || at+settle > end {
				continue
			}
			casFree = at + settle
		case f.Kind == CASDrain && at+settle > end:
			continue
		}
		if admin {
			adminEnd = max(adminEnd, at+settle)
		}
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b Fault) int { return int(a.At - b.At) })
	return out
}

// quietEnd is the end of a run left without faults, so that the
// members agree and the growth figures are taken under plain load.
const quietEnd = 15 * time.Second
