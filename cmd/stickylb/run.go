//go:build linux

package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/stickylb/stickylb/config"
	"github.com/stickylb/stickylb/daemon"
	"github.com/stickylb/stickylb/metrics"
)

// runFlags is `stickylb run`: load, start, then follow signals until
// told to stop.
func runFlags(fs *pflag.FlagSet) runFunc {
	path := fs.StringP("config", "c", config.DefaultPath, "config file")
	format := fs.String("log-format", "", "text or json (default: the config's global.log_format)")
	level := fs.String("log-level", "", "debug, info, warn or error (default: the config's global.log_level)")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file, for go tool pprof")
	pidfile := fs.String("pidfile", "", "write the process id to this file once serving, and remove it at exit (for kill -TERM $(cat FILE))")
	return func(_ []string, _, stderr io.Writer) int {
		// Signals are taken before anything else: without a handler a SIGHUP
		// ends a Go program, and loading a large pin snapshot takes seconds.
		// What arrives while starting waits in the channel.
		sigs := make(chan os.Signal, 8)
		signal.Notify(sigs, daemon.Signals...)
		defer signal.Stop(sigs)
		cfg, code := loadConfig(*path, stderr)
		if cfg == nil {
			return code
		}
		log, err := runLogger(stderr, cfg.Global, *format, *level)
		if err != nil {
			fmt.Fprintln(stderr, "error:", err)
			return 2
		}
		if *cpuprofile != "" {
			stop, err := startCPUProfile(*cpuprofile)
			if err != nil {
				log.Error("cannot start the CPU profile", "error", err)
				return 1
			}
			defer stop(log)
		}
		if *pidfile != "" {
			if err := pidfileFolder(*pidfile); err != nil {
				log.Error("cannot start", "error", err)
				return 1
			}
		}
		h, err := daemon.Inherited()
		if err != nil {
			log.Error("cannot start", "error", err)
			return 1
		}
		d, err := daemon.Start(daemon.Options{ConfigPath: *path, Config: cfg, Log: log, Build: metrics.Build{Version: version, Commit: commit},
			Version: versionString(), Args: os.Args[1:]}, h)
		if err != nil {
			log.Error("cannot start", "error", err)
			return 1
		}
		defer d.Close()
		d.Serve()
		if *pidfile != "" {
			if err := writePidfile(*pidfile); err != nil {
				log.Error("cannot write the pid file", "file", *pidfile, "error", err)
				d.Stop(daemon.Reason("none: the pid file could not be written"), sigs)
				return 1
			}
			defer removePidfile(*pidfile)
		}
		log.Info("stickylb running", "version", version, "pid", os.Getpid(), "config", *path, "listeners", len(cfg.Listeners), "pools", len(cfg.Pools))
		d.Ready()
		d.Follow(sigs)
		return 0
	}
}

// writePidfile writes this process's id to path; removePidfile removes
// it at exit unless a process that took over from this one wrote its own.
func writePidfile(path string) error {
	return os.WriteFile(path, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
}

func removePidfile(path string) {
	if b, err := os.ReadFile(path); err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(os.Getpid()) {
		os.Remove(path)
	}
}

// runLogger makes the logger, the command line's format and level
// overriding the config's.
func runLogger(w io.Writer, g config.Global, format, level string) (*slog.Logger, error) {
	if format != "" {
		if err := g.LogFormat.UnmarshalText([]byte(format)); err != nil {
			return nil, fmt.Errorf("--log-format: %w", err)
		}
	}
	if level != "" {
		if err := g.LogLevel.UnmarshalText([]byte(level)); err != nil {
			return nil, fmt.Errorf("--log-level: %w", err)
		}
	}
	opts := &slog.HandlerOptions{Level: g.LogLevel.Slog()}
	if g.LogFormat == config.JSONLog {
		// Durations as the text format and the config write them
		// ("15s"), not as nanoseconds.
		opts.ReplaceAttr = func(_ []string, a slog.Attr) slog.Attr {
			if a.Value.Kind() == slog.KindDuration {
				a.Value = slog.StringValue(a.Value.Duration().String())
			}
			return a
		}
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return slog.New(slog.NewTextHandler(w, opts)), nil
}
