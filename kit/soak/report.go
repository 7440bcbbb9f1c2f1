//go:build linux

package soak

import (
	"fmt"
	"html"
	"slices"
	"strings"
	"time"
)

// timeline is the run as text: the seed, each fault and recovery, each
// failure the fleet saw with the fault that explains it, and the
// verdicts.
func (r *rig) timeline(res *Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "stickylb soak, seed %d, %s, %d Unity sessions; replay: go test ./kit/soak -run TestSoak -soak %s -seed %d\n",
		res.Seed, res.Duration.Round(time.Second), r.cfg.Sessions, r.cfg.Duration, res.Seed)
	if r.cfg.Isolated {
		b.WriteString("in namespaces of its own: every fault, partition and full disk included\n\n")
	} else {
		fmt.Fprintf(&b, "without partition and full-disk faults: %s\n\n", r.cfg.NotIsolated)
	}
	type line struct {
		at   time.Duration
		text string
	}
	var lines []line
	r.mu.Lock()
	for _, n := range r.notes {
		lines = append(lines, line{n.At, fmt.Sprintf("%-5s %s", n.Lane, n.What)})
	}
	ws := windows(res.Faults)
	for _, f := range r.failures {
		why := r.explainFailure(ws, f)
		if why == "" {
			why = "UNEXPLAINED"
		} else {
			why = "explained by " + why
		}
		lines = append(lines, line{f.Time.Sub(r.start), fmt.Sprintf("fleet %s on %s via %s: %s (long %v); %s", f.Mailbox, f.CAS, memberOf(f.Via), f.Kind, f.Long, why)})
	}
	r.mu.Unlock()
	slices.SortStableFunc(lines, func(a, b line) int { return int(a.at - b.at) })
	for _, l := range lines {
		fmt.Fprintf(&b, "%7.2fs  %s\n", l.at.Seconds(), l.text)
	}
	rep := res.Fleet
	fmt.Fprintf(&b, "\nfleet: %d operations (%d ok), %d MAPI_E_NETWORK_ERROR, %d connection errors, %d logons (%d again), errors %v\n\n",
		rep.Ops, rep.OK, rep.MAPINetworkErrors, rep.ConnErrors, rep.Logons, rep.Relogons, rep.Errors)
	for _, v := range res.Verdicts {
		fmt.Fprintln(&b, v)
	}
	return b.String()
}

// svg draws the run: a lane per member and CAS with its faults as bars,
// the fleet's failures as marks on their CAS's lane (red when nothing
// explains them), and the verdicts below.
func (r *rig) svg(res *Result) string {
	const left, width, laneH = 70.0, 900.0, 28.0
	lanes := []string{"m1", "m2", "m3", "cas1", "cas2", "cas3"}
	total := res.Duration.Seconds()
	x := func(d time.Duration) float64 { return left + width*d.Seconds()/total }
	y := func(lane string) float64 { return 20 + laneH*float64(slices.Index(lanes, lane)) }
	colors := map[Kind]string{MemberKill: "#d62728", MemberStop: "#ff7f0e", CASKill: "#d62728", CASStop: "#ff7f0e",
		CASMaint: "#9467bd", CASDrain: "#8c564b", ReloadGood: "#2ca02c", ReloadBad: "#bcbd22",
		Upgrade: "#1f77b4", UpgradeBad: "#17becf", Partition: "#e377c2", DiskFull: "#7f7f7f"}
	height := 20 + laneH*float64(len(lanes)) + 30 + 16*float64(len(res.Verdicts)+1)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="11">`+"\n", left+width+20, height)
	fmt.Fprintf(&b, `<text x="4" y="12">stickylb soak, seed %d, %s</text>`+"\n", res.Seed, res.Duration.Round(time.Second))
	for _, l := range lanes {
		fmt.Fprintf(&b, `<text x="4" y="%.0f">%s</text><line x1="%.0f" x2="%.0f" y1="%.0f" y2="%.0f" stroke="#ccc"/>`+"\n", y(l)+16, l, left, left+width, y(l)+laneH/2, y(l)+laneH/2)
	}
	for _, f := range res.Faults {
		w := max(x(f.At+f.For)-x(f.At), 2)
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.0f" width="%.1f" height="%.0f" fill="%s" opacity="0.7"><title>%s</title></rect>`+"\n",
			x(f.At), y(f.target())+4, w, laneH-8, colors[f.Kind], html.EscapeString(f.String()))
	}
	ws := windows(res.Faults)
	r.mu.Lock()
	for _, f := range r.failures {
		lane := f.CAS
		if slices.Index(lanes, lane) < 0 {
			lane = memberOf(f.Via)
		}
		if slices.Index(lanes, lane) < 0 {
			continue
		}
		color := "#333"
		if r.explainFailure(ws, f) == "" {
			color = "#f00"
		}
		fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.0f" r="2.5" fill="%s"><title>%s %s</title></circle>`+"\n", x(f.Time.Sub(r.start)), y(lane)+laneH/2, color, f.Mailbox, f.Kind)
	}
	r.mu.Unlock()
	top := 20 + laneH*float64(len(lanes))
	for s := 0.0; s <= total; s += 10 {
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="middle" fill="#666">%.0fs</text>`+"\n", x(time.Duration(s*float64(time.Second))), top+12, s)
	}
	for i, v := range res.Verdicts {
		fmt.Fprintf(&b, `<text x="4" y="%.0f">%s</text>`+"\n", top+34+16*float64(i), html.EscapeString(v.String()))
	}
	b.WriteString("</svg>\n")
	return b.String()
}
