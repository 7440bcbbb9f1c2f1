package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/stickylb/stickylb/admin"
)

const ctlUsage = `stickylb ctl: inspect and steer a running stickylb through its admin API

Usage: stickylb ctl [--admin URL] [--token-file FILE] [--json] COMMAND [ARGS]

  backends                     pools and backends: state, connections, pins
  pins [--pool P] [--backend B] [--limit N] [--offset N]
                               list pins
  pin CLIENT [--pool P]        which backend CLIENT (an IP address) is pinned to
  drain POOL/BACKEND [--deadline 30m]
                               no new clients; pinned clients stay until their connections
                               end (or the deadline, after which they are closed and moved)
  maint POOL/BACKEND           no traffic; pinned clients move at their next connection
  ready POOL/BACKEND           back in service
  unpin --client IP | --backend B [--pool P]
                               delete pins; the clients are balanced afresh next time
  reload                       reload the config file
  events                       recent state changes

--admin defaults to $STICKYLB_ADMIN or http://127.0.0.1:9090.
`

type ctl struct {
	base   string
	token  string
	asJSON bool
	out    io.Writer
	client *http.Client
}

func cmdCtl(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, ctlUsage) }
	def := os.Getenv("STICKYLB_ADMIN")
	if def == "" {
		def = "http://127.0.0.1:9090"
	}
	base := fs.String("admin", def, "admin API address")
	tokenFile := fs.String("token-file", "", "file holding the admin token")
	asJSON := fs.Bool("json", false, "print the API's JSON")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	c := &ctl{base: strings.TrimRight(*base, "/"), asJSON: *asJSON, out: stdout, client: &http.Client{Timeout: 10 * time.Second}}
	if !strings.Contains(c.base, "://") {
		c.base = "http://" + c.base
	}
	if *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			fmt.Fprintln(stderr, "error:", err)
			return 2
		}
		c.token = strings.TrimSpace(string(b))
	}
	rest := fs.Args()
	if len(rest) == 0 || rest[0] == "help" {
		fmt.Fprint(stdout, ctlUsage)
		return 0
	}
	if err := c.run(rest[0], rest[1:]); err != nil {
		fmt.Fprintln(stderr, "error:", err)
		var ue usageError
		if errors.As(err, &ue) {
			return 2
		}
		return 1
	}
	return 0
}

type usageError string

func (u usageError) Error() string { return string(u) }

// call does one API request; out, if not nil, receives the decoded JSON.
func (c *ctl) call(method, path string, body any, out any) error {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		return err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the admin API at %s (is stickylb running, and is admin.listen this address?): %w", c.base, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var e struct{ Error string }
		if json.Unmarshal(raw, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s (HTTP %d)", e.Error, resp.StatusCode)
		}
		return fmt.Errorf("HTTP %d: %s", resp.StatusCode, raw)
	}
	if c.asJSON {
		c.out.Write(raw)
		return nil
	}
	if out != nil {
		return json.Unmarshal(raw, out)
	}
	return nil
}

// subFlags parses a subcommand's flags wherever they stand among its
// arguments.
func subFlags(name string, args []string, def func(*flag.FlagSet)) (*flag.FlagSet, []string, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	def(fs)
	var pos []string
	for len(args) > 0 {
		if err := fs.Parse(args); err != nil {
			return nil, nil, usageError(fmt.Sprintf("ctl %s: %v", name, err))
		}
		args = fs.Args()
		if len(args) > 0 {
			pos = append(pos, args[0])
			args = args[1:]
		}
	}
	return fs, pos, nil
}

func (c *ctl) run(cmd string, args []string) error {
	switch cmd {
	case "backends", "status":
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
	case "pins":
		var pool, backend string
		var limit, offset int
		_, _, err := subFlags("pins", args, func(fs *flag.FlagSet) {
			fs.StringVar(&pool, "pool", "", "")
			fs.StringVar(&backend, "backend", "", "")
			fs.IntVar(&limit, "limit", 100, "")
			fs.IntVar(&offset, "offset", 0, "")
		})
		if err != nil {
			return err
		}
		q := url.Values{"limit": {fmt.Sprint(limit)}, "offset": {fmt.Sprint(offset)}}
		if pool != "" {
			q.Set("pool", pool)
		}
		if backend != "" {
			q.Set("backend", backend)
		}
		var res struct {
			Total int
			Pins  []admin.PinInfo
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
		return nil
	case "pin":
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
	case "drain", "maint", "ready":
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
	case "unpin":
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
	case "reload":
		if err := c.call("POST", "/api/reload", nil, nil); err != nil || c.asJSON {
			return err
		}
		fmt.Fprintln(c.out, "reloaded")
		return nil
	case "events":
		var ev []admin.Event
		if err := c.call("GET", "/api/events", nil, &ev); err != nil || c.asJSON {
			return err
		}
		for _, e := range ev {
			fmt.Fprintf(c.out, "%s  %s/%s  %s\n", e.Time.Format(time.RFC3339), e.Pool, e.Backend, e.What)
		}
		return nil
	}
	return usageError(fmt.Sprintf("unknown ctl command %q (stickylb ctl help)", cmd))
}
