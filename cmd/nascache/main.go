package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"
)

// Exit codes.
const (
	exitOK     = 0
	exitFail   = 1
	exitUsage  = 2
	exitConfig = 3
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	// After the first signal starts a graceful stop, a second one kills
	// the process the default way.
	context.AfterFunc(ctx, stop)
	code := run(ctx, os.Args[1:], env{stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv})
	stop()
	os.Exit(code)
}

// env is what a subcommand may use of the process: its output streams and
// environment. Tests pass their own.
type env struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	// httpClient calls a node's admin API; nil: a default client.
	httpClient *http.Client
}

const usage = `usage: nascache <command> [flags]

commands:
  serve --config FILE          serve NFSv3 as configured
  check-config --config FILE   validate a config file and exit
  demo [--dir DIR] [--listen ADDR] [--self-check]
                               serve a generated sample tree; --self-check
                               reads it back through NFS and exits
  warm [--pin] [--parallelism N] PATH...
                               load /EXPORT/path trees into a running node's
                               cache and follow the job (Ctrl-C cancels it)
  status [--json]              cache, hit ratio, origins of a running node
                               (warm and status take --admin URL or
                               --config FILE to find the node)
  version                      print the version
`

// run dispatches a subcommand and returns the process exit code.
func run(ctx context.Context, args []string, e env) int {
	if len(args) == 0 {
		fmt.Fprint(e.stderr, usage)
		return exitUsage
	}
	cmd, rest := args[0], args[1:]
	var err error
	switch cmd {
	case "serve":
		err = cmdServe(ctx, rest, e)
	case "check-config":
		err = cmdCheckConfig(rest, e)
	case "demo":
		err = cmdDemo(ctx, rest, e)
	case "warm":
		err = cmdWarm(ctx, rest, e)
	case "status":
		err = cmdStatus(ctx, rest, e)
	case "version", "--version":
		fmt.Fprintln(e.stdout, versionString())
	case "help", "-h", "--help":
		fmt.Fprint(e.stdout, usage)
	default:
		fmt.Fprintf(e.stderr, "nascache: unknown command %q\n\n%s", cmd, usage)
		return exitUsage
	}
	var ce *ConfigError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.Is(err, errUsage):
		fmt.Fprintf(e.stderr, "nascache %s: %v\n", cmd, err)
		return exitUsage
	case errors.As(err, &ce):
		fmt.Fprintf(e.stderr, "nascache %s: %v\n", cmd, err)
		return exitConfig
	default:
		fmt.Fprintf(e.stderr, "nascache %s: %v\n", cmd, err)
		return exitFail
	}
}

// newFlags returns a FlagSet for a subcommand that prints to e.stderr.
func newFlags(name string, e env) *flag.FlagSet {
	fs := flag.NewFlagSet("nascache "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	return fs
}

// parseFlags parses args and refuses positional arguments.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	return nil
}

func cmdCheckConfig(args []string, e env) error {
	fs := newFlags("check-config", e)
	file := fs.String("config", "/etc/nascache/nascache.yaml", "config `file` to check")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(*file)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s: ok (%d export(s), listen %s)\n", *file, len(cfg.Exports), cfg.Listen)
	return nil
}

func cmdServe(ctx context.Context, args []string, e env) error {
	fs := newFlags("serve", e)
	file := fs.String("config", "/etc/nascache/nascache.yaml", "config `file`")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(*file)
	if err != nil {
		return err
	}
	logger, err := newLogger(e.stdout, cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		return err
	}
	logger.Info().Str("version", versionString()).Str("config", *file).Msg("starting")
	n, err := buildNode(ctx, cfg, logger)
	if err != nil {
		return err
	}
	return n.Run(ctx, e.getenv("NOTIFY_SOCKET"))
}

// versionString names the build: module version, VCS revision when the
// binary was built with it, and the Go version.
func versionString() string {
	v, rev := "(unknown)", ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		v = bi.Main.Version
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				rev = " " + s.Value[:12]
			}
		}
	}
	return fmt.Sprintf("nascache %s%s %s %s/%s", v, rev, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
