//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/stickylb/stickylb/admin"
)

const ctlUsage = `stickylb ctl: inspect and steer a running stickylb through its admin API

Usage: stickylb ctl [--admin URL] [--token-file FILE] [--json] COMMAND [ARGS]

  backends                     pools and backends: state and for how long, weight, connections,
                               pins, new connections/s, failed connects, last check, why down
  pins [--pool P] [--backend B] [--limit N] [--offset N | --cursor C]
                               list pins; a page ends with the command for the next
  pin CLIENT [--pool P]        which backend CLIENT (an IP address) is pinned to
  drain POOL/BACKEND [--deadline 30m]
                               no new clients; pinned clients stay until their connections
                               end (or the deadline, after which they are closed and moved)
  maint POOL/BACKEND           no traffic; pinned clients move at their next connection
  ready POOL/BACKEND           back in service
  weight [POOL/]BACKEND N       set a backend's weight (0-1000) until the next reload
  unpin --client IP | --backend B [--pool P]
                               delete pins; the clients are balanced afresh next time
  connections [--client IP] [--backend B] [--pool P] [--limit 100]
                               open connections: id, client, backend, age
  close --id LISTENER/N | --client IP | --backend B [--pool P]
                               close open connections (their pins stay)
  reload                       reload the config file
  events                       recent state changes
  info                         version, uptime, pid, config file, file limit
  members                      the cluster's members and their state, pins sent and received
  readyz                       exit 0 while this instance should take clients, 1 otherwise (keepalived's track script)

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
	if code, done := parseFlags(fs, args); done {
		return code
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
	if method != http.MethodGet {
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(admin.RequestHeader, "1")
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
	if resp.StatusCode == http.StatusUnauthorized {
		return errors.New("the admin API wants its token: pass --token-file FILE (the file admin.token_file names)")
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

// ctlCommands are the ctl subcommands by name, one function each.
var ctlCommands = map[string]func(c *ctl, args []string) error{
	"backends":    (*ctl).backends,
	"status":      (*ctl).backends,
	"pins":        (*ctl).pins,
	"pin":         (*ctl).pin,
	"drain":       func(c *ctl, args []string) error { return c.setState("drain", args) },
	"maint":       func(c *ctl, args []string) error { return c.setState("maint", args) },
	"ready":       func(c *ctl, args []string) error { return c.setState("ready", args) },
	"unpin":       (*ctl).unpin,
	"reload":      (*ctl).reload,
	"events":      (*ctl).events,
	"info":        (*ctl).info,
	"members":     (*ctl).members,
	"readyz":      (*ctl).readyz,
	"connections": (*ctl).connections,
	"close":       (*ctl).closeConns,
	"weight":      (*ctl).weight,
}

func (c *ctl) run(cmd string, args []string) error {
	if wantsHelp(args) {
		fmt.Fprint(c.out, ctlUsage) // help never acts: ctl reload --help reloads nothing
		return nil
	}
	if f, ok := ctlCommands[cmd]; ok {
		return f(c, args)
	}
	return usageError(fmt.Sprintf("unknown ctl command %q (stickylb ctl help)", cmd))
}
