//go:build linux

package main

import (
	"flag"
	"fmt"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/stickylb/stickylb/admin"
)

// backends prints pools and backends: state, connections, pins.
func (c *ctl) backends(args []string) error {
	var st admin.Status
	if err := c.call("GET", "/api/backends", nil, &st); err != nil || c.asJSON {
		return err
	}
	tw := tabwriter.NewWriter(c.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "POOL\tBACKEND\tADDRESS\tSTATE\tWEIGHT\tCONNS\tPINS")
	for _, p := range st.Pools {
		for _, b := range p.Backends {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\n", p.Name, b.Name, b.Address, b.State, b.Weight, b.Connections, b.Pins)
		}
	}
	tw.Flush()
	for _, p := range st.Pools {
		rate := 0.0
		if p.Hits+p.Misses > 0 {
			rate = 100 * float64(p.Hits) / float64(p.Hits+p.Misses)
		}
		fmt.Fprintf(c.out, "pool %s: %d pins (key %s), affinity hit rate %.1f%%, %d re-pins\n", p.Name, p.Pins, p.Key, rate, p.Repins)
	}
	return nil
}

// pins lists pins, filtered and paged.
func (c *ctl) pins(args []string) error {
	var pool, backend, cursor string
	var limit, offset int
	_, _, err := subFlags("pins", args, func(fs *flag.FlagSet) {
		fs.StringVar(&pool, "pool", "", "")
		fs.StringVar(&backend, "backend", "", "")
		fs.IntVar(&limit, "limit", 100, "")
		fs.IntVar(&offset, "offset", 0, "")
		fs.StringVar(&cursor, "cursor", "", "")
	})
	if err != nil {
		return err
	}
	q := url.Values{"limit": {fmt.Sprint(limit)}}
	for k, v := range map[string]string{"pool": pool, "backend": backend, "cursor": cursor} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if offset != 0 {
		q.Set("offset", fmt.Sprint(offset))
	}
	var res struct {
		Total int
		Pins  []admin.PinInfo
		Next  string
	}
	if err := c.call("GET", "/api/pins?"+q.Encode(), nil, &res); err != nil || c.asJSON {
		return err
	}
	tw := tabwriter.NewWriter(c.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "POOL\tCLIENT\tBACKEND\tCONNS\tLAST SEEN")
	for _, p := range res.Pins {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", p.Pool, p.Client, p.Backend, p.Connections, p.LastSeen.Format(time.RFC3339))
	}
	tw.Flush()
	fmt.Fprintf(c.out, "%d of %d pins\n", len(res.Pins), res.Total)
	if res.Next != "" {
		fmt.Fprintf(c.out, "more: run again with --cursor %s\n", res.Next)
	}
	return nil
}

// pin says which backend one client is pinned to.
func (c *ctl) pin(args []string) error {
	var pool string
	_, pos, err := subFlags("pin", args, func(fs *flag.FlagSet) { fs.StringVar(&pool, "pool", "", "") })
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError("usage: stickylb ctl pin CLIENT-IP [--pool P]")
	}
	path := "/api/pins/" + url.PathEscape(pos[0])
	if pool != "" {
		path += "?pool=" + url.QueryEscape(pool)
	}
	var p admin.PinInfo
	if err := c.call("GET", path, nil, &p); err != nil || c.asJSON {
		return err
	}
	fmt.Fprintf(c.out, "%s is pinned to %s in pool %s (%d connections open, last seen %s)\n",
		p.Client, p.Backend, p.Pool, p.Connections, p.LastSeen.Format(time.RFC3339))
	return nil
}

// setState drains a backend, puts it in maintenance or back in service.
func (c *ctl) setState(cmd string, args []string) error {
	var deadline string
	_, pos, err := subFlags(cmd, args, func(fs *flag.FlagSet) { fs.StringVar(&deadline, "deadline", "", "") })
	if err != nil {
		return err
	}
	if len(pos) != 1 || !strings.Contains(pos[0], "/") {
		return usageError(fmt.Sprintf("usage: stickylb ctl %s POOL/BACKEND", cmd))
	}
	pool, backend, _ := strings.Cut(pos[0], "/")
	body := map[string]string{"state": cmd}
	if deadline != "" {
		body["deadline"] = deadline
	}
	var b admin.BackendInfo
	if err := c.call("POST", "/api/backends/"+url.PathEscape(pool)+"/"+url.PathEscape(backend)+"/state",
		body, &b); err != nil || c.asJSON {
		return err
	}
	fmt.Fprintf(c.out, "%s/%s is now %s (%d connections open)\n", b.Pool, b.Name, b.State, b.Connections)
	return nil
}

// unpin deletes pins by client, backend or pool.
func (c *ctl) unpin(args []string) error {
	var pool, client, backend string
	_, _, err := subFlags("unpin", args, func(fs *flag.FlagSet) {
		fs.StringVar(&pool, "pool", "", "")
		fs.StringVar(&client, "client", "", "")
		fs.StringVar(&backend, "backend", "", "")
	})
	if err != nil {
		return err
	}
	q := url.Values{}
	for k, v := range map[string]string{"pool": pool, "client": client, "backend": backend} {
		if v != "" {
			q.Set(k, v)
		}
	}
	var res struct{ Deleted int }
	if err := c.call("DELETE", "/api/pins?"+q.Encode(), nil, &res); err != nil || c.asJSON {
		return err
	}
	fmt.Fprintf(c.out, "%d pins deleted\n", res.Deleted)
	return nil
}

// reload makes the running stickylb reload its config file.
func (c *ctl) reload(_ []string) error {
	if err := c.call("POST", "/api/reload", nil, nil); err != nil || c.asJSON {
		return err
	}
	fmt.Fprintln(c.out, "reloaded")
	return nil
}

// events prints recent state changes.
func (c *ctl) events(_ []string) error {
	var ev []admin.Event
	if err := c.call("GET", "/api/events", nil, &ev); err != nil || c.asJSON {
		return err
	}
	for _, e := range ev {
		fmt.Fprintf(c.out, "%s  %s/%s  %s\n", e.Time.Format(time.RFC3339), e.Pool, e.Backend, e.What)
	}
	return nil
}
