//go:build linux

package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/cpuguy83/go-md2man/v2/md2man"
	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// manCommand writes the man pages that the packages install: one in
// section 8 per command, each titled by its own name, the root's with
// FILES, SIGNALS, EXIT STATUS and EXAMPLES, and lb.toml(5) from
// docs/config.md. It is hidden: operators read the pages it writes.
func manCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "man DIR", Short: "write man pages for stickylb, its subcommands and lb.toml(5) into DIR", Hidden: true, Args: exactArgs(1)}
	configDoc := cmd.Flags().String("config-doc", "docs/config.md", "the configuration reference lb.toml(5) is made from")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		root := cmd.Root()
		root.DisableAutoGenTag = true // the pages do not change with the day they are built
		// A folder that is not there yet is made, as install -d would.
		if err := os.MkdirAll(args[0], 0o755); err != nil {
			return fmt.Errorf("man pages: %w", err)
		}
		if err := writeCommandPages(root, root, args[0]); err != nil {
			return err
		}
		return writeConfigPage(*configDoc, args[0])
	}
	return cmd
}

func writeCommandPages(root, c *cobra.Command, dir string) error {
	for _, sub := range c.Commands() {
		if sub.IsAvailableCommand() && !sub.IsAdditionalHelpTopicCommand() {
			if err := writeCommandPages(root, sub, dir); err != nil {
				return err
			}
		}
	}
	name := strings.ReplaceAll(c.CommandPath(), " ", "-")
	var buf bytes.Buffer
	h := &doc.GenManHeader{Title: strings.ToUpper(name), Section: "8", Source: "stickylb " + version, Manual: "stickylb manual"}
	if err := doc.GenMan(c, h, &buf); err != nil {
		return fmt.Errorf("man page of %s: %w", name, err)
	}
	page := buf.Bytes()
	if c == root {
		page = bytes.Replace(page, []byte(".SH SEE ALSO"), []byte(rootSections+".SH SEE ALSO"), 1)
	}
	return os.WriteFile(filepath.Join(dir, name+".8"), page, 0o644)
}

// rootSections are stickylb(8)'s sections beyond what the commands say.
const rootSections = `.SH FILES
.TP
\fB/etc/stickylb/lb.toml\fR
The configuration, read by \fBrun\fR and \fBcheck\fR without \fB-c\fR; see \fBlb.toml\fR(5).
.TP
\fB/var/lib/stickylb/pins.json\fR, \fBpins.json.journal\fR
The pins' snapshot and the journal of changes since (\fBglobal.snapshot_file\fR).
.TP
\fB/usr/lib/systemd/system/stickylb.service\fR
The hardened unit; \fBsystemctl reload\fR reloads the configuration.
.TP
\fB/usr/share/doc/stickylb/\fR
The documentation: README.md, the example lb.toml, and docs/ (config, deploy, operations, cluster and its ecmp/ configs, lab, benchmarks, reliability).
.SH SIGNALS
.TP
\fBSIGHUP\fR
Reload the configuration: a bad file is refused and the running one stays.
.TP
\fBSIGTERM\fR, \fBSIGINT\fR
Stop: readiness says no, listeners keep accepting for \fBglobal.stop_grace\fR, then stop; open connections get up to \fBglobal.drain_timeout\fR, then the pins are saved.
.TP
\fBSIGUSR2\fR
Upgrade: start the binary at this process's path, which takes over the listening sockets, pins and operator decisions; this process then finishes its open connections and exits.
.SH EXIT STATUS
.TP
\fB0\fR
Success; for \fBcheck\fR, a valid file (warnings included); for \fBlab\fR, every scenario as expected; for \fBctl readyz\fR, ready.
.TP
\fB1\fR
Failure, said on standard error: an invalid configuration, a port that cannot be bound, a refused admin call, a lab scenario or a simulated fleet that did not turn out as expected, a split client in \fBanalyze\fR, not ready.
.TP
\fB2\fR
A usage error: an unknown command, flag or argument.
.SH EXAMPLES
.nf
stickylb check                          # check /etc/stickylb/lb.toml
stickylb run -c /etc/stickylb/lb.toml   # what the unit runs
stickylb ctl backends                   # state, connections, pins
stickylb ctl drain cas2 --deadline 4h   # patch cas2 without cutting a session
stickylb ctl pin 10.1.2.3               # where a client is pinned
stickylb import-nlb nlb.json -o lb.toml # migrate a Windows NLB cluster
stickylb lab                            # reproduce MAPI_E_NETWORK_ERROR and its fix
.fi
`

// writeConfigPage makes lb.toml(5) from the configuration reference.
func writeConfigPage(configDoc, dir string) error {
	src, err := os.ReadFile(configDoc)
	if err != nil {
		return fmt.Errorf("lb.toml(5): %w", err)
	}
	// The reference's own title gives way to the page's; its sections
	// (## in the file) become the page's subsections under DESCRIPTION.
	body := regexp.MustCompile(`(?m)\A# .*\n`).ReplaceAll(src, nil)
	md := "# LB.TOML 5 \"\" \"stickylb " + version + "\" \"stickylb manual\"\n\n# NAME\nlb.toml \\- stickylb configuration file\n\n" +
		"# SYNOPSIS\n**/etc/stickylb/lb.toml**\n\n# DESCRIPTION\n" + string(body) + "\n# SEE ALSO\n**stickylb**(8), **stickylb-check**(8)\n"
	return os.WriteFile(filepath.Join(dir, "lb.toml.5"), md2man.Render([]byte(md)), 0o644)
}
