//go:build linux

package main

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"github.com/stickylb/stickylb/admin"
	"github.com/stickylb/stickylb/admin/client"
	"github.com/stickylb/stickylb/affinity"
)

// backends prints pools and backends: state, connections, pins.
func (c *ctl) backends(args []string) error {
	st, err := c.api.Backends(c.ctx)
	if err != nil || c.show(st) {
		return err
	}
	h, _ := c.api.History(c.ctx) // rates only; the table stands without them
	var now admin.HistoryPoint
	if len(h.Points) > 0 {
		now = h.Points[len(h.Points)-1]
	}
	tw := tabwriter.NewWriter(c.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "POOL\tBACKEND\tADDRESS\tSTATE\tFOR\tWEIGHT\tCONNS\tPINS\tCONN/S\tERRORS\tLAST CHECK\tWHY DOWN")
	for _, p := range st.Pools {
		for _, b := range p.Backends {
			r, ok := now.Backends[p.Name+"/"+b.Name]
			rate := "-"
			if ok {
				rate = fmt.Sprintf("%.1f", r.ConnsPerSec)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\t%d\t%s\t%s\n", p.Name, b.Name, b.Address, stateCell(b),
				forCell(b.Since), b.Weight, b.Connections, b.Pins, rate, b.ConnectErrors, lastCheck(b), whyCell(b))
		}
	}
	tw.Flush()
	for _, p := range st.Pools {
		rate := "-" // no lookups yet
		if p.Hits+p.Misses > 0 {
			rate = fmt.Sprintf("%.1f%%", 100*float64(p.Hits)/float64(p.Hits+p.Misses))
		}
		fmt.Fprintf(c.out, "pool %s: %s (key %s), affinity hit rate %s, %s\n", p.Name, count(p.Pins, "pin"), p.Key, rate, count(int(p.Repins), "re-pin"))
		for _, b := range p.Backends {
			if b.Cluster != "" && b.Cluster != "agreed" {
				fmt.Fprintf(c.out, "  %s: %s in this member's view of the cluster: %s\n", b.Name, b.Admin, b.Cluster)
			}
		}
	}
	return nil
}

// stateCell is a backend's state with what it hides: a CAS in
// maintenance that is down (rebooting) reads "maint, down", a draining
// one that is down "down, drain": health and the operator's state apart.
func stateCell(b admin.BackendInfo) string {
	s := b.State
	if !b.Healthy && s != "down" && s != "removed" {
		s += ", down"
	}
	if b.Admin != "ready" && b.Admin != s && !strings.HasPrefix(s, b.Admin) {
		s += ", " + b.Admin
	}
	if b.Ejected != nil {
		s += ", ejected"
	}
	return s
}

// whyCell is why a backend is down, and why it is ejected (an outlier
// takes no new clients while its pinned clients stay) and until when.
func whyCell(b admin.BackendInfo) string {
	e := b.Ejected
	if e == nil {
		return b.DownReason
	}
	ej := fmt.Sprintf("ejected (%s) until %s, %d in a row", e.Reason, e.Until.Local().Format(time.TimeOnly), e.InARow)
	if b.DownReason == "" {
		return ej
	}
	return b.DownReason + "; " + ej
}

// age says how long ago t was, roughly; "-" for never.
func age(t time.Time) string {
	if t.IsZero() || t.Year() < 2 {
		return "-"
	}
	return time.Since(t).Round(time.Second).String()
}

// forCell is how long a backend has been in its state: "since start"
// when it has not changed in this process, as after a restart or an
// upgrade that restored it (a "-" read as unknown, or as no state).
func forCell(t time.Time) string {
	if t.IsZero() || t.Year() < 2 {
		return "since start"
	}
	return age(t)
}

// lastCheck says what a backend's latest check found, and when; when a
// pool has several checks and the latest is not the one that holds the
// backend down (WHY DOWN), it names that one too, so the two columns do
// not seem to disagree.
func lastCheck(b admin.BackendInfo) string {
	c := b.LastCheck
	if c == nil {
		return "-"
	}
	res := "ok"
	if !c.OK {
		res = "failed"
	}
	s := fmt.Sprintf("%s %s %.1fms %s ago", c.Name, res, c.TookMS, age(c.Time))
	if name, _, ok := strings.Cut(strings.TrimPrefix(b.DownReason, "check "), ":"); ok && strings.HasPrefix(b.DownReason, "check ") && name != c.Name {
		s += "; down by " + name
	}
	return s
}

// pinsFlags lists pins, filtered and paged.
func pinsFlags(fs *pflag.FlagSet) ctlRun {
	pool := fs.String("pool", "", "only this pool's pins")
	backend := fs.String("backend", "", "only pins to this backend")
	limit := fs.Int("limit", 100, "pins per page (at most 10000)")
	offset := fs.Int("offset", 0, "skip this many (without --backend)")
	cursor := fs.String("cursor", "", "start where the previous page said")
	return func(c *ctl, _ []string) error {
		return c.pins(client.PinQuery{Pool: *pool, Backend: *backend, Cursor: *cursor, Limit: *limit, Offset: *offset})
	}
}

func (c *ctl) pins(q client.PinQuery) error {
	res, err := c.api.Pins(c.ctx, q)
	if err != nil || c.show(res) {
		return err
	}
	// The table pages in its own order; a page reads best sorted.
	slices.SortFunc(res.Pins, func(a, b admin.PinInfo) int {
		return cmp.Or(strings.Compare(a.Pool, b.Pool), compareClients(a.Client, b.Client))
	})
	tw := tabwriter.NewWriter(c.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "POOL\tCLIENT\tBACKEND\tCONNS\tLAST SEEN")
	for _, p := range res.Pins {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", p.Pool, p.Client, p.Backend, p.Connections, p.LastSeen.Format(time.RFC3339))
	}
	tw.Flush()
	if res.Total == 0 {
		fmt.Fprintln(c.out, "no pins match")
		return nil
	}
	fmt.Fprintf(c.out, "%d of %s\n", len(res.Pins), count(res.Total, "pin"))
	if res.Next != "" {
		fmt.Fprintf(c.out, "more: run again with --cursor %s\n", res.Next)
	}
	return nil
}

// pinFlags says which backend one client is pinned to.
func pinFlags(fs *pflag.FlagSet) ctlRun {
	pool := fs.String("pool", "", "the pool (when there are several)")
	return func(c *ctl, args []string) error { return c.pin(args[0], *pool) }
}

func (c *ctl) pin(ip, pool string) error {
	p, err := c.api.Pin(c.ctx, ip, pool)
	if err != nil || c.show(p) {
		return err
	}
	fmt.Fprintf(c.out, "%s is pinned to %s in pool %s (%d connections open, last seen %s)\n",
		p.Client, p.Backend, p.Pool, p.Connections, p.LastSeen.Format(time.RFC3339))
	return nil
}

// stateFlags drains a backend, puts it in maintenance or back in service.
func stateFlags(state string) func(*pflag.FlagSet) ctlRun {
	return func(fs *pflag.FlagSet) ctlRun {
		deadline := new(string)
		if state == "drain" {
			deadline = fs.String("deadline", "", "after this long (such as 30m), close the connections left and go to maint")
		}
		return func(c *ctl, args []string) error { return c.setState(state, args[0], *deadline) }
	}
}

func (c *ctl) setState(cmd, target, deadline string) error {
	pool, backend, err := c.backendPath(target)
	if err != nil {
		return err
	}
	b, err := c.api.SetState(c.ctx, pool, backend, cmd, deadline)
	if err != nil || c.show(b) {
		return err
	}
	fmt.Fprintf(c.out, "%s/%s is now %s (%s open)\n", b.Pool, b.Name, stateWords[b.State], count(int(b.Connections), "connection"))
	return nil
}

// stateWords are backend states as a sentence says them.
var stateWords = map[string]string{"up": "up", "down": "down", "drain": "draining", "maint": "in maintenance", "removed": "removed"}

// backendPath reads POOL/BACKEND, or BACKEND alone when exactly one pool
// has a backend of that name.
func (c *ctl) backendPath(s string) (pool, backend string, err error) {
	if p, b, ok := strings.Cut(s, "/"); ok {
		return p, b, nil
	}
	st, err := c.api.Backends(c.ctx)
	if err != nil {
		return "", "", err
	}
	var pools []string
	for _, p := range st.Pools {
		for _, b := range p.Backends {
			if b.Name == s {
				pools = append(pools, p.Name)
			}
		}
	}
	switch len(pools) {
	case 1:
		return pools[0], s, nil
	case 0:
		return "", "", fmt.Errorf("no backend %q in any pool (stickylb ctl backends lists them)", s)
	}
	return "", "", fmt.Errorf("backend %q is in pools %s: say which, as POOL/%s", s, strings.Join(pools, " and "), s)
}

// count says n things, in the singular for one.
func count(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
}

// unpinFlags deletes pins by client, backend or pool.
func unpinFlags(fs *pflag.FlagSet) ctlRun {
	pool := fs.String("pool", "", "the pool (when there are several)")
	client := fs.String("client", "", "delete this client's pin (an IP address)")
	backend := fs.String("backend", "", "delete every pin to this backend")
	return func(c *ctl, _ []string) error { return c.unpin(*pool, *client, *backend) }
}

func (c *ctl) unpin(pool, ip, backend string) error {
	if ip == "" && backend == "" {
		return usageError("usage: stickylb ctl unpin --client IP | --backend NAME [--pool POOL]: say whose pins to delete")
	}
	res, err := c.api.Unpin(c.ctx, pool, ip, backend)
	if err != nil || c.show(res) {
		return err
	}
	fmt.Fprintf(c.out, "%s deleted\n", count(res.Deleted, "pin"))
	return nil
}

// reload makes the running stickylb reload its config file.
func (c *ctl) reload(_ []string) error {
	res, err := c.api.Reload(c.ctx)
	if err != nil || c.show(res) {
		return err
	}
	fmt.Fprintln(c.out, "reloaded")
	return nil
}

// events prints recent state changes.
func (c *ctl) events(_ []string) error {
	ev, err := c.api.Events(c.ctx)
	if err != nil || c.show(ev) {
		return err
	}
	if len(ev) == 0 {
		fmt.Fprintln(c.out, "no events since stickylb started")
	}
	for _, e := range ev {
		fmt.Fprintf(c.out, "%s  %s/%s  %s\n", e.Time.Format(time.RFC3339), e.Pool, e.Backend, e.What)
	}
	return nil
}

// info prints what the running stickylb is: version, uptime, pid, config
// file, limits.
func (c *ctl) info(_ []string) error {
	in, err := c.api.Info(c.ctx)
	if err != nil || c.show(in) {
		return err
	}
	state := "running"
	if in.Draining {
		state = "draining (stopping: no new connections)"
	}
	fmt.Fprintf(c.out, "stickylb %s, pid %d, %s, up %s (since %s)\n", in.Version, in.PID, state,
		(time.Duration(in.UptimeSeconds) * time.Second).Round(time.Second), in.Started.Format(time.RFC3339))
	fmt.Fprintf(c.out, "config %s: %s, %s; reloads: %d applied, %d failed\n", in.Config, count(in.Listeners, "listener"),
		count(in.Pools, "pool"), in.Reloads, in.ReloadFailures)
	fmt.Fprintf(c.out, "%s open, file limit %d (two per connection)\n", count(in.Connections, "connection"), in.FileLimit)
	return nil
}

// listeners is `ctl listeners`: GET /api/listeners as a table.
func (c *ctl) listeners(_ []string) error {
	ls, err := c.api.Listeners(c.ctx)
	if err != nil || c.show(ls) {
		return err
	}
	tw := tabwriter.NewWriter(c.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "LISTENER\tADDRESS\tPORTS\tTAKEN BY\tPOOL\tCONNS\tACCEPTED")
	for _, l := range ls {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\n", l.Name, l.Address, l.Ports, l.TakenBy, l.Pool, l.Connections, l.Accepted)
	}
	return tw.Flush()
}

// members is `ctl members`: the cluster as this member sees it.
func (c *ctl) members(_ []string) error {
	st, err := c.api.Cluster(c.ctx)
	if err != nil || c.show(st) {
		return err
	}
	if !st.Enabled {
		fmt.Fprintln(c.out, "no cluster: this instance runs alone (see [cluster] in docs/cluster.md)")
		return nil
	}
	sync := "in sync"
	if !st.Synced {
		sync = "waiting for its first sync"
	}
	fmt.Fprintf(c.out, "member %s, %s; %s, %s, %s\n", st.Self, sync, count(int(st.Sent), "pin record")+" sent",
		count(int(st.Received), "pin record")+" received", count(int(st.Conflicts), "conflict"))
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MEMBER\tADDRESS\tSTATE\tCLOCK\tOPERATOR DECISIONS")
	for _, m := range st.Members {
		name, decisions := m.Name, fmt.Sprintf("%d", m.Decisions)
		switch {
		case m.Self:
			name += " (this)"
		case m.Differ > 0:
			decisions += fmt.Sprintf(", %d differ from this member's (not heard yet, or newer)", m.Differ)
		default:
			decisions += ", as this member's"
		}
		if len(m.Lacks) > 0 {
			decisions += "; lacks " + strings.Join(m.Lacks, ", ") + " (configs differ: no new clients there until it has them)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", name, m.Addr, m.State, clockOffset(m.ClockOffset), decisions)
	}
	return tw.Flush()
}

// clockOffset says how a member's clock stands against this one's:
// messages carry whole seconds and take time to cross, so within 2s is
// in step.
func clockOffset(s int64) string {
	switch {
	case s > 2:
		return fmt.Sprintf("%s ahead: fix its time", time.Duration(s)*time.Second)
	case s < -2:
		return fmt.Sprintf("%s behind: fix its time", time.Duration(-s)*time.Second)
	}
	return "in step"
}

// readyz is `ctl readyz`: exit 0 while this instance should be sent
// clients (GET /readyz answers 200), 1 otherwise: draining, waiting for
// its first cluster sync, no backend to give, or not running. It is the
// track script of a keepalived pair (docs/cluster.md). With --wait it
// asks every 100ms until ready or the wait is over, for scripts that
// start stickylb and go on once it serves.
func readyzFlags(fs *pflag.FlagSet) ctlRun {
	wait := fs.Duration("wait", 0, "ask again until ready, for at most this long (such as 10s)")
	return func(c *ctl, _ []string) error {
		deadline := time.Now().Add(*wait)
		for {
			err := c.readyz()
			if err == nil || !time.Now().Before(deadline) {
				return err
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

func (c *ctl) readyz() error {
	raw, err := c.api.Ready(c.ctx)
	if err != nil {
		return fmt.Errorf("not ready: %w", apiHints(err))
	}
	if c.asJSON {
		c.out.Write(raw)
		return nil
	}
	fmt.Fprintln(c.out, "ready")
	return nil
}

// compareClients orders client keys by address, then by their text
// (prefix or port); a key that does not parse sorts by its text.
func compareClients(a, b string) int {
	ka, ea := affinity.ParseKey(a)
	kb, eb := affinity.ParseKey(b)
	if ea != nil || eb != nil {
		return strings.Compare(a, b)
	}
	return cmp.Or(ka.Addr().Compare(kb.Addr()), strings.Compare(a, b))
}
