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
)

// Fault is one step of a schedule.
type Fault struct {
	At, For time.Duration
	Kind    Kind
	Target  int // member or CAS index
	From    int // for maint and drain: the member that sets it (ready comes from (From+1)%3)
}

func (f Fault) onMember() bool { return f.Kind == MemberKill || f.Kind == MemberStop }
func (f Fault) onCAS() bool    { return f.Kind == CASKill || f.Kind == CASStop || f.Kind == CASMaint }

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
// reloads, drains and their readies anywhere else.
func Schedule(seed uint64, warm, d time.Duration) []Fault {
	rng := rand.New(rand.NewPCG(seed, 0x50a4))
	kinds := []Kind{MemberKill, MemberStop, CASKill, CASStop, CASMaint, CASDrain, ReloadGood, ReloadBad}
	var out []Fault
	var memberFree, casFree time.Duration // when the last member or CAS fault ends
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
		}
		// Member faults settle: a restarted member needs its restart and
		// a sync to be back; the same for a CAS's health checks.
		settle := f.For + 4*time.Second
		switch {
		case f.onMember() || f.Kind == ReloadGood || f.Kind == ReloadBad:
			if at < memberFree || at+settle > end {
				continue
			}
			if f.onMember() {
				memberFree = at + settle
			}
		case f.onCAS():
			if at < casFree || at+settle > end {
				continue
			}
			casFree = at + settle
		case f.Kind == CASDrain && at+settle > end:
			continue
		}
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b Fault) int { return int(a.At - b.At) })
	return out
}

// quietEnd is the end of a run left without faults, so that the
// members agree and the growth figures are taken under plain load.
const quietEnd = 15 * time.Second
