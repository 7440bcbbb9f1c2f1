//go:build linux

package main

import (
	"flag"
	"fmt"
	"net/url"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/stickylb/stickylb/admin"
)

// connQuery reads the filters connections and close share.
func connQuery(name string, args []string, extra func(*flag.FlagSet)) (url.Values, error) {
	var pool, backend, client, id string
	_, _, err := subFlags(name, args, func(fs *flag.FlagSet) {
		fs.StringVar(&pool, "pool", "", "")
		fs.StringVar(&backend, "backend", "", "")
		fs.StringVar(&client, "client", "", "")
		fs.StringVar(&id, "id", "", "")
		if extra != nil {
			extra(fs)
		}
	})
	q := url.Values{}
	for k, v := range map[string]string{"pool": pool, "backend": backend, "client": client, "id": id} {
		if v != "" {
			q.Set(k, v)
		}
	}
	return q, err
}

// connections lists open connections: client, backend, age.
func (c *ctl) connections(args []string) error {
	limit := 100
	q, err := connQuery("connections", args, func(fs *flag.FlagSet) { fs.IntVar(&limit, "limit", 100, "") })
	if err != nil {
		return err
	}
	q.Set("limit", strconv.Itoa(limit))
	var res struct {
		Total       int
		Connections []admin.ConnInfo
	}
	if err := c.call("GET", "/api/connections?"+q.Encode(), nil, &res); err != nil || c.asJSON {
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
func (c *ctl) closeConns(args []string) error {
	q, err := connQuery("close", args, nil)
	if err != nil {
		return err
	}
	if len(q) == 0 {
		return usageError("usage: stickylb ctl close --id LISTENER/N | --client IP | --backend NAME [--pool P]: say which connections")
	}
	var res struct{ Closed int }
	if err := c.call("DELETE", "/api/connections?"+q.Encode(), nil, &res); err != nil || c.asJSON {
		return err
	}
	fmt.Fprintf(c.out, "%s closed (pins kept)\n", count(res.Closed, "connection"))
	return nil
}

// weight sets a backend's weight until the next reload.
func (c *ctl) weight(args []string) error {
	_, pos, err := subFlags("weight", args, func(*flag.FlagSet) {})
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usageError("usage: stickylb ctl weight [POOL/]BACKEND N (0 to 1000; until the next reload)")
	}
	w, err := strconv.Atoi(pos[1])
	if err != nil {
		return usageError(fmt.Sprintf("weight %q is not a whole number", pos[1]))
	}
	pool, backend, err := c.backendPath(pos[0])
	if err != nil {
		return err
	}
	var b admin.BackendInfo
	if err := c.call("POST", "/api/backends/"+url.PathEscape(pool)+"/"+url.PathEscape(backend)+"/weight",
		map[string]int{"weight": w}, &b); err != nil || c.asJSON {
		return err
	}
	fmt.Fprintf(c.out, "%s/%s now has weight %d (lb.toml's applies again at the next reload)\n", b.Pool, b.Name, b.Weight)
	return nil
}
