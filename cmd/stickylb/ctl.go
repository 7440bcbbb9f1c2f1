//go:build linux

package main

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/stickylb/stickylb/admin"
)

type ctl struct {
	base string
	// socket is the admin socket ctl speaks over ("": base, over TCP).
	socket string
	// token and tokenFile: the admin token and the file it came from.
	token, tokenFile string
	asJSON           bool
	out              io.Writer
	client           *http.Client
	// authClient, if set, carries the calls that send the token: over
	// plain HTTP to loopback, it checks who serves first (ctl_target.go).
	authClient *http.Client
}

// ctlRun is a ctl subcommand's work once its flags are parsed.
type ctlRun func(c *ctl, args []string) error

// ctlSub is a ctl subcommand: flags defines its flags and returns its
// work.
type ctlSub struct {
	use, short string
	args       cobra.PositionalArgs
	flags      func(fs *pflag.FlagSet) ctlRun
}

// plain is a subcommand without flags of its own.
func plain(f ctlRun) func(*pflag.FlagSet) ctlRun { return func(*pflag.FlagSet) ctlRun { return f } }

var ctlSubs = []ctlSub{
	{"backends", "pools and backends: state and for how long, weight, connections, pins, rates, last check, why down", noArgs, plain((*ctl).backends)},
	{"pins", "list pins, a page at a time; a page ends with the command for the next", noArgs, pinsFlags},
	{"pin CLIENT-IP", "which backend a client is pinned to", exactArgs(1), pinFlags},
	{"drain [POOL/]BACKEND", "no new clients; pinned clients stay until their connections end (or --deadline, then they are closed and move)", exactArgs(1), stateFlags("drain")},
	{"maint [POOL/]BACKEND", "no traffic; pinned clients move at their next connection", exactArgs(1), stateFlags("maint")},
	{"ready [POOL/]BACKEND", "back in service", exactArgs(1), stateFlags("ready")},
	{"weight [POOL/]BACKEND N", "set a backend's weight (0-1000) until lb.toml's weight for it changes", exactArgs(2), plain((*ctl).weight)},
	{"unpin", "delete pins; the clients are balanced afresh next time", noArgs, unpinFlags},
	{"listeners", "listeners: address and ports, how the ports are taken, pool, open and accepted connections", noArgs, plain((*ctl).listeners)},
	{"connections", "open connections: id, client, backend, age", noArgs, connectionsFlags},
	{"close", "close open connections (their pins stay)", noArgs, closeFlags},
	{"reload", "reload the config file", noArgs, plain((*ctl).reload)},
	{"events", "recent state changes", noArgs, plain((*ctl).events)},
	{"info", "version, uptime, pid, config file, file limit", noArgs, plain((*ctl).info)},
	{"members", "the cluster's members and their state, pin records sent and received", noArgs, plain((*ctl).members)},
	{"readyz", "exit 0 while this instance should take clients, 1 otherwise (keepalived's track script); --wait to wait for it", noArgs, readyzFlags},
}

func ctlCommand(stdout, stderr io.Writer) *cobra.Command {
	c := &ctl{out: stdout}
	cmd := &cobra.Command{Use: "ctl", Short: "inspect and steer a running stickylb through its admin API", Args: noArgs,
		Long: "ctl speaks to the admin API of a running stickylb (docs/operations.md): at --admin, or $STICKYLB_ADMIN; else over --socket;\n" +
			"else as the [admin] of -c FILE, or of " + ctlDefaultConfig + " when it exists, says (its admin.socket where this user may use it);\n" +
			"else at http://127.0.0.1:9090. The token goes only where it cannot be read on the way or taken by another user.",
		RunE: func(cmd *cobra.Command, _ []string) error { cmd.SetOut(stderr); cmd.Usage(); return exitCode(2) }}
	env := os.Getenv("STICKYLB_ADMIN")
	var t ctlTarget
	pf := cmd.PersistentFlags()
	pf.StringVar(&t.admin, "admin", cmp.Or(env, "http://127.0.0.1:9090"), "admin API address")
	pf.StringVar(&t.socket, "socket", "", "the admin socket (admin.socket), for a stickylb on this host")
	pf.StringVar(&t.tokenFile, "token-file", "", "file holding the admin token (admin.token_file)")
	pf.BoolVar(&c.asJSON, "json", false, "print the API's JSON")
	pf.StringVar(&t.caFile, "cacert", "", "file of CA certificates (PEM) to trust for an https --admin address, besides the system's")
	pf.StringVarP(&t.cfgFile, "config", "c", "", "take the admin socket or address, token and certificate from this config file's [admin] (default "+
		ctlDefaultConfig+", when it exists and neither --admin nor --socket is given)")
	cmd.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		t.adminSet = env != "" || cmd.Flags().Changed("admin")
		return c.setup(t)
	}
	for _, s := range ctlSubs {
		sub := &cobra.Command{Use: s.use, Short: s.short, Args: s.args}
		work := s.flags(sub.Flags())
		sub.RunE = func(_ *cobra.Command, args []string) error { return work(c, args) }
		cmd.AddCommand(sub)
	}
	return cmd
}

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
	client := c.client
	if c.token != "" && path != "/readyz" && path != "/healthz" { // health checks never need it
		req.Header.Set("Authorization", "Bearer "+c.token)
		client = cmp.Or(c.authClient, c.client)
	}
	if method != http.MethodGet {
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(admin.RequestHeader, "1")
	}
	resp, err := client.Do(req)
	if err != nil {
		if c.socket != "" {
			return fmt.Errorf("cannot reach the admin API at the socket %s (is stickylb running, and is admin.socket this path?): %w", c.socket, err)
		}
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
			return fmt.Errorf("%s (HTTP %d)", flagHints(e.Error), resp.StatusCode)
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

// flagHints turns the API's query-parameter hints ("name a pool with
// ?pool=") into the ctl flags that set them.
func flagHints(msg string) string {
	return strings.NewReplacer("?pool= ", "--pool ", "?pool=", "--pool ", "?client=", "--client ", "?backend=", "--backend ", "?id=", "--id ").Replace(msg)
}
