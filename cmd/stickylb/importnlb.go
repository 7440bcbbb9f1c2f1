//go:build linux

package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/pflag"

	"github.com/stickylb/stickylb/config"
	"github.com/stickylb/stickylb/nlbimport"
)

const importNLBHelp = `Reads a Windows NLB cluster's configuration and writes an lb.toml that does
what the cluster did: one listener per port rule (a range listener for a
range), the cluster's addresses as listen addresses, each node as a backend
at its dedicated address with its load weight, single-host rules as a
primary and backups. It then checks the result as "stickylb check" does and
prints, on standard error, what it could not carry over and what you must
still decide. Exits 1 when the input is unusable (the error says what is
missing). docs/deploy.md, "Migrating from NLB", walks through it.

Produce the input on one NLB host, in an administrator's PowerShell:

` + nlbimport.ExportScript + `

then copy nlb.json here and run: stickylb import-nlb nlb.json -o lb.toml`

func importNLBFlags(fs *pflag.FlagSet) runFunc {
	out := fs.StringP("output", "o", "", "write the lb.toml here (default: standard output)")
	return func(args []string, stdout, stderr io.Writer) int {
		b, err := os.ReadFile(args[0])
		if err != nil {
			fmt.Fprintln(stderr, "error:", err)
			return 1
		}
		e, err := nlbimport.Read(b)
		if err == nil {
			var res *nlbimport.Result
			if res, err = nlbimport.Build(e, filepath.Base(args[0])); err == nil {
				return writeImport(res, *out, stdout, stderr)
			}
		}
		fmt.Fprintf(stderr, "error: %s: %v\n", args[0], err)
		return 1
	}
}

// writeImport checks the imported config, writes it and says what it
// left out and what is still to decide.
func writeImport(res *nlbimport.Result, out string, stdout, stderr io.Writer) int {
	name := out
	if name == "" {
		name = "imported lb.toml"
	}
	cfg, err := config.Parse(name, []byte(res.TOML))
	if err != nil {
		printConfigError(stderr, err)
		fmt.Fprintln(stderr, "error: the imported config does not pass check (a bug in import-nlb: please report it with the input)")
		return 1
	}
	if out == "" {
		io.WriteString(stdout, res.TOML)
	} else if err := os.WriteFile(out, []byte(res.TOML), 0o644); err != nil {
		fmt.Fprintln(stderr, "error:", err)
		return 1
	}
	for _, w := range cfg.Warnings() {
		fmt.Fprintln(stderr, "warning:", w)
	}
	for _, d := range res.Dropped {
		fmt.Fprintln(stderr, "not carried over:", d)
	}
	for _, d := range res.Decide {
		fmt.Fprintln(stderr, "to decide:", d)
	}
	if out != "" {
		fmt.Fprintf(stderr, "wrote %s: %s, %s; check it with `stickylb check -c %s`\n", out, count(len(cfg.Listeners), "listener"), count(len(cfg.Pools), "pool"), out)
	}
	return 0
}
