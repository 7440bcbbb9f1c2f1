//go:build linux

package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/stickylb/stickylb/admin/client"
	"github.com/stickylb/stickylb/config"
)

// ctl is `stickylb ctl`: the admin API's client and where its answers
// are printed, as tables or (--json) as the API's JSON.
type ctl struct {
	api    *client.Client
	ctx    context.Context // the command's; each call is bounded by client.Timeout
	asJSON bool
	out    io.Writer
}

// ctlDefaultConfig is the config file ctl reads its [admin] from without
// -c, --admin or --socket.
var ctlDefaultConfig = config.DefaultPath

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
	{"sessions [CLIENT-IP]", "each client's RPC sessions: its connections' port, CAS, interface bound and answer, since when, and whether it is split across CAS", upToOneArg, sessionsFlags},
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
	var t client.Target
	pf := cmd.PersistentFlags()
	pf.StringVar(&t.Admin, "admin", cmp.Or(env, "http://127.0.0.1:9090"), "admin API address")
	pf.StringVar(&t.Socket, "socket", "", "the admin socket (admin.socket), for a stickylb on this host")
	pf.StringVar(&t.TokenFile, "token-file", "", "file holding the admin token (admin.token_file)")
	pf.BoolVar(&c.asJSON, "json", false, "print the API's JSON")
	pf.StringVar(&t.CAFile, "cacert", "", "file of CA certificates (PEM) to trust for an https --admin address, besides the system's")
	pf.StringVarP(&t.Config, "config", "c", "", "take the admin socket or address, token and certificate from this config file's [admin] (default "+
		ctlDefaultConfig+", when it exists and neither --admin nor --socket is given)")
	cmd.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		t.AdminSet = env != "" || cmd.Flags().Changed("admin")
		t.DefaultConfig = ctlDefaultConfig
		c.ctx = cmp.Or[context.Context](cmd.Context(), context.Background())
		var err error
		if c.api, err = client.New(t); err != nil {
			var ae client.ArgError
			if errors.As(err, &ae) {
				return usageError(ae.Error())
			}
			return err
		}
		return nil
	}
	for _, s := range ctlSubs {
		sub := &cobra.Command{Use: s.use, Short: s.short, Args: s.args}
		work := s.flags(sub.Flags())
		sub.RunE = func(_ *cobra.Command, args []string) error { return apiHints(work(c, args)) }
		cmd.AddCommand(sub)
	}
	return cmd
}

// show prints v, an answer of the API, as JSON when --json asked for
// it, and says whether it did; the command prints its table otherwise.
func (c *ctl) show(v any) bool {
	if !c.asJSON {
		return false
	}
	enc := json.NewEncoder(c.out)
	enc.SetIndent("", "  ")
	enc.Encode(v)
	return true
}

// apiHints says the API's refusals with ctl's flags for its query
// parameters.
func apiHints(err error) error {
	var ae *client.APIError
	if errors.As(err, &ae) {
		return fmt.Errorf("%s (HTTP %d)", flagHints(ae.Message), ae.Status)
	}
	return err
}

// flagHints turns the API's query-parameter hints ("name a pool with
// ?pool=") into the ctl flags that set them.
func flagHints(msg string) string {
	return strings.NewReplacer("?pool= ", "--pool ", "?pool=", "--pool ", "?client=", "--client ", "?backend=", "--backend ", "?id=", "--id ").Replace(msg)
}
