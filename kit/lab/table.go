//go:build linux

package lab

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
)

// WriteHeader prints the table's header line.
func WriteHeader(w io.Writer) {
	fmt.Fprintf(w, "%-2s %-24s %-20s %8s %7s %12s %7s %6s %6s %6s  %-22s %s\n",
		"#", "scenario", "balancer", "sessions", "ops", "MAPI_E_NETW", "rate", "conn", "relog", "split", "sessions per CAS", "verdict")
}

// WriteRow prints result i as one table row.
func WriteRow(w io.Writer, i int, r Result) {
	rep := r.Report
	var per []string
	for _, k := range slices.Sorted(maps.Keys(rep.SessionsPerCAS)) {
		per = append(per, fmt.Sprintf("%s:%d", k, rep.SessionsPerCAS[k]))
	}
	event := ""
	if r.Target != "" {
		event = " (" + r.Scenario.Event + " " + r.Target + ")"
	}
	fmt.Fprintf(w, "%-2d %-24s %-20s %8d %7d %12d %6.2f%% %6d %6d %6d  %-22s %s%s\n",
		i+1, r.Scenario.Name, r.Scenario.Balancer, rep.Sessions, rep.Ops, rep.MAPINetworkErrors,
		100*rep.ErrorRate, rep.ConnErrors, rep.Relogons, rep.SplitSessions, strings.Join(per, " "), r.Verdict, event)
}
