//go:build linux

package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// The command line, built with cobra: every subcommand answers --help
// (and never acts on it), and cobra gives shell completion (`stickylb
// completion bash`) and man pages (`stickylb man DIR`).

// runFunc is a subcommand's work once its flags are parsed; it returns
// the exit code.
type runFunc func(args []string, stdout, stderr io.Writer) int

// exitCode ends a command with a code it has already explained.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func exit(code int) error {
	if code == 0 {
		return nil
	}
	return exitCode(code)
}

// usageError is a command used wrongly: exit code 2.
type usageError string

func (u usageError) Error() string { return string(u) }

// run runs the command line args and returns the exit code: 0, 1 when the
// work failed, 2 when the command was used wrongly.
func run(args []string, stdout, stderr io.Writer) int {
	root := rootCommand(stdout, stderr)
	root.SetArgs(args)
	err := root.Execute()
	var ec exitCode
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ec):
		return int(ec)
	case errors.As(err, &ue), strings.HasPrefix(err.Error(), "unknown command"):
		fmt.Fprintln(stderr, "error:", err)
		return 2
	}
	fmt.Fprintln(stderr, "error:", err)
	return 1
}

// leaf is a subcommand that does work: flags defines its flags on the
// command's flag set and returns what it does with them.
func leaf(use, short, long string, args cobra.PositionalArgs, flags func(*pflag.FlagSet) runFunc, stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{Use: use, Short: short, Long: long, Args: args}
	work := flags(cmd.Flags())
	cmd.RunE = func(_ *cobra.Command, args []string) error { return exit(work(args, stdout, stderr)) }
	return cmd
}

// noArgs and exactArgs check positional arguments, as usage errors.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageError(fmt.Sprintf("%s takes no arguments, not %q (see %s --help)", cmd.CommandPath(), args, cmd.CommandPath()))
	}
	return nil
}

func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usageError(fmt.Sprintf("usage: %s", cmd.UseLine()))
		}
		return nil
	}
}

func rootCommand(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "stickylb",
		Short: "a sticky layer-4 TCP load balancer for an Exchange CAS array",
		Long: `stickylb pins every client to one backend across all the ports of a pool,
for as long as its session lives, so that Cisco Unity's MAPI sessions stay
on one Exchange 2010 Client Access Server. Start with "stickylb lab".`,
		Version:       versionString(),
		SilenceErrors: true,
		SilenceUsage:  true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cmd.SetOut(stderr)
			cmd.Usage()
			return exitCode(2)
		},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetVersionTemplate("stickylb {{.Version}}\n")
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return usageError(fmt.Sprintf("%v (see %s --help)", err, cmd.CommandPath()))
	})
	root.AddCommand(
		leaf("lab", "reproduce MAPI_E_NETWORK_ERROR behind broken balancers and show stickylb removing it",
			`Runs simulated CAS hosts (127.0.0.11-13), balancers and a simulated Unity fleet on
loopback through scenarios that each end in a verdict, in about a minute
(docs/lab.md). Exits 1 if a scenario did not turn out as expected.`, noArgs, labFlags, stdout, stderr),
		leaf("run", "balance connections as the config says",
			`Loads the config, binds the listeners, restores pins and serves. SIGHUP (or
"stickylb ctl reload") reloads the config; SIGTERM or SIGINT drains: no new
connections (after global.stop_grace), then up to global.drain_timeout for
open ones; SIGUSR2 hands the sockets, pins and operator decisions over to
the binary now at this process's path, and finishes the open connections.`, noArgs, runFlags, stdout, stderr),
		leaf("check", "validate a config and print what it sets up",
			`Prints every mistake as file:line: key: reason and exits 1; prints warnings
for values that are legal but likely wrong for a CAS array, then what the
config sets up, and exits 0. Judges this host as the user running it, or
as --as-user (the unit's User=, stickylb: root re-runs check as that user
with the --caps the unit grants): a token file that user cannot read is a
mistake, and what start-up would stop at (a range listener without CAP_BPF
and CAP_NET_ADMIN, transparent mode without CAP_NET_ADMIN) exits 1 too.`, noArgs, checkFlags, stdout, stderr),
		leaf("import-nlb [flags] NLB-EXPORT.json", "turn a Windows NLB cluster's port rules and hosts into a checked lb.toml",
			importNLBHelp, exactArgs(1), importNLBFlags, stdout, stderr),
		ctlCommand(stdout, stderr),
		simCommand(stdout, stderr),
		benchCommand(stdout, stderr),
		leaf("analyze [flags] CAPTURE", "flag every client whose connections reached more than one backend in a capture",
			`Reads a pcap or pcapng capture and reports, per client, the backends its
connections reached over time; exits 1 if a client was split. With --steps,
times each step inside a balancer from a loopback capture of both its legs
(docs/benchmarks.md).`, exactArgs(1), analyzeFlags, stdout, stderr),
		&cobra.Command{Use: "version", Short: "print the version, commit, build date and Go version", Args: noArgs,
			Run: func(*cobra.Command, []string) { fmt.Fprintln(stdout, "stickylb", versionString()) }},
		manCommand(),
	)
	// stickylb runs on Linux: no PowerShell completion (nor its man page).
	root.InitDefaultCompletionCmd()
	if c, _, err := root.Find([]string{"completion", "powershell"}); err == nil && c.Name() == "powershell" {
		c.Hidden = true
	}
	return root
}

func simCommand(stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{Use: "sim", Short: "run a simulated CAS array or Unity client fleet (docs/lab.md)", Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { cmd.SetOut(stderr); cmd.Usage(); return exitCode(2) }}
	cmd.AddCommand(
		leaf("cas", "serve simulated CAS hosts until SIGINT or SIGTERM", simCASHelp, noArgs, simCASFlags, stdout, stderr),
		leaf("unity", "run a simulated Unity fleet against a balancer and report", "", noArgs, simUnityFlags, stdout, stderr),
	)
	return cmd
}

func benchCommand(stdout, stderr io.Writer) *cobra.Command {
	cmd := leaf("bench", "load and score any TCP balancer: speed, stickiness, balance, remapping",
		"See docs/benchmarks.md. Exits 1 if a client reached two backends.", noArgs, benchFlags, stdout, stderr)
	cmd.AddCommand(leaf("backends", "serve bench's echo (and DCE/RPC) backends until SIGINT or SIGTERM", "", noArgs, benchBackendsFlags, stdout, stderr))
	return cmd
}

// simCASHelp says what a simulated CAS speaks: DCE/RPC as a CAS does, so
// the packaged template's rpc checks work against it (issue 35, point 8;
// issue 32).
const simCASHelp = `Serves simulated CAS hosts: an endpoint mapper and RPC Client Access and
Address Book ports that speak DCE/RPC as Exchange does (ept_map hands out
the EMSMDB and NSPI ports, each port binds its own interface), with the
lab's own session protocol inside the calls (docs/lab-protocol.md). An rpc
health check (the packaged lb.toml's) works against it: give the check
port = the --epm-port when that is not 135. To try the check against a
DCE/RPC stack of another make before production, run Samba's endpoint
mapper as the CAS (docs/operations.md, "Trying the rpc check").`
