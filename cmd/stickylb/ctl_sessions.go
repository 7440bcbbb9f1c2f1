//go:build linux

package main

import (
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/stickylb/stickylb/admin"
	"github.com/stickylb/stickylb/admin/client"
)

// upToOneArg takes an optional argument.
func upToOneArg(cmd *cobra.Command, args []string) error {
	if len(args) > 1 {
		return usageError(fmt.Sprintf("usage: %s", cmd.UseLine()))
	}
	return nil
}

func sessionsFlags(fs *pflag.FlagSet) ctlRun {
	pool := fs.String("pool", "", "only this pool's clients")
	return func(c *ctl, args []string) error {
		f := client.SessionFilter{Pool: *pool}
		if len(args) == 1 {
			f.Client = args[0]
		}
		return c.sessions(f)
	}
}

// sessions prints each client's open connections: the port, the CAS,
// the interface bound and its answer, since when, and whether the client
// is split across CAS (the split behind MAPI_E_NETWORK_ERROR).
func (c *ctl) sessions(f client.SessionFilter) error {
	res, err := c.api.Sessions(c.ctx, f)
	if err != nil || c.show(res) {
		return err
	}
	if len(res.Clients) == 0 {
		fmt.Fprintln(c.out, "no open connections match")
		return nil
	}
	now := time.Now()
	for i, cs := range res.Clients {
		if i > 0 {
			fmt.Fprintln(c.out)
		}
		fmt.Fprintln(c.out, sessionHeading(cs))
		tw := tabwriter.NewWriter(c.out, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  ID\tSOURCE\tPORT\tBACKEND\tINTERFACE\tBIND\tSINCE\tCALLS\tFAULTS")
		for _, k := range cs.Connections {
			fmt.Fprintf(tw, "  %s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Source, k.Port, sessionBackend(k), sessionIface(k),
				sessionBind(k), sessionSince(k, now), sessionCount(k, k.Calls), sessionCount(k, k.Faults))
		}
		tw.Flush()
	}
	if res.Split > 0 {
		fmt.Fprintf(c.out, "\n%s split across CAS, the split behind MAPI_E_NETWORK_ERROR: `stickylb ctl close --id ID` closes a connection "+
			"that is not on its pin, and the client reconnects to its pinned CAS\n", count(res.Split, "client"))
	}
	return nil
}

func sessionHeading(cs admin.ClientSessions) string {
	h := fmt.Sprintf("client %s, pool %s, ", cs.Client, cs.Pool)
	if cs.Pinned == "" {
		h += "no pin"
	} else {
		h += "pinned to " + cs.Pinned
	}
	if cs.Split {
		return h + ": SPLIT (" + cs.SplitWhy + ")"
	}
	return h + ": not split"
}

func sessionBackend(k admin.SessionConn) string {
	if k.OffPin {
		return k.Backend + " (not its pin)"
	}
	return k.Backend
}

func sessionIface(k admin.SessionConn) string {
	if k.Interface == "" {
		return "-"
	}
	return k.Interface
}

func sessionBind(k admin.SessionConn) string {
	if !k.Read {
		return "not read"
	}
	return k.Bind
}

// sessionSince is when the connection was accepted, and how long ago.
func sessionSince(k admin.SessionConn, now time.Time) string {
	return k.Since.Format(time.RFC3339) + " (" + now.Sub(k.Since).Truncate(time.Second).String() + " ago)"
}

func sessionCount(k admin.SessionConn, n uint64) string {
	if !k.Read {
		return "-"
	}
	return strconv.FormatUint(n, 10)
}
