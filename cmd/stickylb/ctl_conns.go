//go:build linux

package main

import (
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"github.com/stickylb/stickylb/admin/client"
)

// connFilters defines the filters connections and close share, and
// returns them as a query.
func connFilters(fs *pflag.FlagSet) func() client.ConnFilter {
	pool := fs.String("pool", "", "only this pool's connections")
	backend := fs.String("backend", "", "only connections to this backend")
	ip := fs.String("client", "", "only this client's connections (an IP address)")
	id := fs.String("id", "", "only this connection (LISTENER/N, as connections lists it)")
	return func() client.ConnFilter {
		return client.ConnFilter{ID: *id, Pool: *pool, Client: *ip, Backend: *backend}
	}
}

func connectionsFlags(fs *pflag.FlagSet) ctlRun {
	query := connFilters(fs)
	limit := fs.Int("limit", 100, "show at most this many")
	return func(c *ctl, _ []string) error { return c.connections(query(), *limit) }
}

func closeFlags(fs *pflag.FlagSet) ctlRun {
	query := connFilters(fs)
	return func(c *ctl, _ []string) error { return c.closeConns(query()) }
}

// connections lists open connections: client, backend, age.
func (c *ctl) connections(f client.ConnFilter, limit int) error {
	res, err := c.api.Connections(c.ctx, f, limit)
	if err != nil || c.show(res) {
		return err
	}
	if res.Total == 0 {
		fmt.Fprintln(c.out, "no open connections match")
		return nil
	}
	tw := tabwriter.NewWriter(c.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tCLIENT\tPOOL\tBACKEND\tAGE")
	for _, k := range res.Connections {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", k.ID, k.Client, k.Pool, k.Backend, (time.Duration(k.AgeSeconds) * time.Second).String())
	}
	tw.Flush()
	if res.Total > len(res.Connections) {
		fmt.Fprintf(c.out, "%d of %s shown (--limit N for more)\n", len(res.Connections), count(res.Total, "connection"))
	}
	return nil
}

// closeConns closes one connection, or a client's or a backend's.
func (c *ctl) closeConns(f client.ConnFilter) error {
	if f.Empty() {
		return usageError("usage: stickylb ctl close --id LISTENER/N | --client IP | --backend NAME [--pool P]: say which connections")
	}
	res, err := c.api.CloseConnections(c.ctx, f)
	if err != nil || c.show(res) {
		return err
	}
	fmt.Fprintf(c.out, "%s closed here (pins kept)", count(res.Closed, "connection"))
	if res.MembersAsked > 0 {
		fmt.Fprintf(c.out, "; asked of the %s too", count(res.MembersAsked, "other cluster member"))
	}
	fmt.Fprintln(c.out)
	return nil
}

// weight sets a backend's weight until lb.toml's weight for it changes.
func (c *ctl) weight(args []string) error {
	w, err := strconv.Atoi(args[1])
	if err != nil {
		return usageError(fmt.Sprintf("weight %q is not a whole number", args[1]))
	}
	pool, backend, err := c.backendPath(args[0])
	if err != nil {
		return err
	}
	b, err := c.api.SetWeight(c.ctx, pool, backend, w)
	if err != nil || c.show(b) {
		return err
	}
	fmt.Fprintf(c.out, "%s/%s now has weight %d (until lb.toml's weight for it changes)\n", b.Pool, b.Name, b.Weight)
	return nil
}
