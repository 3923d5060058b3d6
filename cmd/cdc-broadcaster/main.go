// Command cdc-broadcaster turns committed row changes of a PostgreSQL
// database into events for live dashboards. See docs/config.md for the
// subcommands and their exit codes.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/treasure-home/cdc-broadcaster/config"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// Exit codes, per docs/config.md.
const (
	exitOK      = 0
	exitFailed  = 1
	exitUsage   = 2
	exitAborted = 130
)

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-signals
		cancel() // first signal: close gracefully
		<-signals
		fmt.Fprintln(os.Stderr, "second signal: aborting")
		os.Exit(exitAborted)
	}()

	m := NewMain()
	err := m.Run(ctx, os.Args[1:])
	os.Exit(m.ExitCode(err))
}

// Main is the program: it parses the subcommand and runs it.
type Main struct {
	Stdout, Stderr io.Writer
	// Env is the environment config overrides are read from.
	Env []string
}

// NewMain returns a Main on the process's standard streams and environment.
func NewMain() *Main {
	return &Main{Stdout: os.Stdout, Stderr: os.Stderr, Env: os.Environ()}
}

// usageError is a mistake in the command line. usage, when set, is the
// help of the command it was made for, shown instead of the list of
// commands.
type usageError struct{ msg, usage string }

func (e *usageError) Error() string { return e.msg }

// configError is a config that cannot be used.
type configError struct{ err error }

func (e *configError) Error() string { return e.err.Error() }
func (e *configError) Unwrap() error { return e.err }

// ExitCode maps Run's error to the process exit code and prints it.
func (m *Main) ExitCode(err error) int {
	var (
		ue *usageError
		ce *configError
	)
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &ue):
		help := ue.usage
		if help == "" {
			help = usage
		}
		fmt.Fprintf(m.Stderr, "cdc-broadcaster: %v\n\n%s", err, help)
		return exitUsage
	case errors.As(err, &ce):
		fmt.Fprintf(m.Stderr, "cdc-broadcaster: config error:\n%v\n", err)
		return exitUsage
	case errors.Is(err, errProblemsFound):
		return exitFailed
	}
	fmt.Fprintf(m.Stderr, "cdc-broadcaster: %v\n", err)
	return exitFailed
}

const usage = `Usage: cdc-broadcaster <command> [flags]

Commands:
  serve    run: replication -> mapping -> event log -> clients
  check    verify the config against the live database schema
  setup    create the publication, slot and replica identities (--dry-run prints the SQL)
  tail     print mapped events as JSON lines from a temporary slot (--types exam.*)
  types    write the TypeScript types of the mapping's events (--out src/realtime-events.d.ts)
  token    mint a development JWT (--sub 19 --role teacher --ttl 1h)
  version  print version and build information

Every command takes --config (default ./config.yaml; start from a copy of
config.example.yaml). Run 'cdc-broadcaster <command> -h' for its flags.
--version prints the version.
`

// Run runs the subcommand named by args[0].
func (m *Main) Run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return &usageError{msg: "no command given"}
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return (&ServeCommand{main: m}).Run(ctx, rest)
	case "check":
		return (&CheckCommand{main: m}).Run(ctx, rest)
	case "setup":
		return (&SetupCommand{main: m}).Run(ctx, rest)
	case "tail":
		return (&TailCommand{main: m}).Run(ctx, rest)
	case "types":
		return (&TypesCommand{main: m}).Run(ctx, rest)
	case "token":
		return (&TokenCommand{main: m}).Run(ctx, rest)
	case "version", "--version", "-version":
		return (&VersionCommand{main: m}).Run(ctx, rest)
	case "help", "-h", "--help":
		fmt.Fprint(m.Stdout, usage)
		return nil
	}
	return &usageError{msg: fmt.Sprintf("unknown command %q", cmd)}
}

// newFlagSet returns a flag set that prints nothing itself: parseFlags
// prints its help on -h and turns its errors into usage errors, which are
// printed once, with the help, by ExitCode.
func (m *Main) newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parseFlags parses args, printing the command's help on -h and turning
// flag mistakes into usage errors that carry that help.
func (m *Main) parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(m.Stdout, commandUsage(fs))
			return err
		}
		return &usageError{msg: fmt.Sprintf("%s: %v", fs.Name(), err), usage: commandUsage(fs)}
	}
	if fs.NArg() > 0 {
		return &usageError{msg: fmt.Sprintf("%s: unexpected argument %q", fs.Name(), fs.Arg(0)), usage: commandUsage(fs)}
	}
	return nil
}

// configured parses a command's flags (--config, and those flags adds),
// runs check on them (usage errors before the config is read), then reads
// and validates the config and builds the logger it asks for. needKeys is as
// for loadConfigFor; flags and check may be nil.
func (m *Main) configured(name string, args []string, needKeys bool, flags func(*flag.FlagSet), check func() error) (*config.Config, *slog.Logger, error) {
	fs := m.newFlagSet(name)
	path := fs.String("config", "config.yaml", "config file")
	if flags != nil {
		flags(fs)
	}
	if err := m.parseFlags(fs, args); err != nil {
		return nil, nil, err
	}
	if check != nil {
		if err := check(); err != nil {
			var ue *usageError
			if errors.As(err, &ue) && ue.usage == "" {
				ue.usage = commandUsage(fs)
			}
			return nil, nil, err
		}
	}
	cfg, err := m.loadConfigFor(*path, needKeys)
	if err != nil {
		return nil, nil, err
	}
	return cfg, m.newLogger(cfg.Log), nil
}

// loadConfigFor reads and validates the config file. Commands that verify no
// token (tail, setup) pass needKeys false: a missing secret or public key is
// then no reason to refuse them.
func (m *Main) loadConfigFor(path string, needKeys bool) (*config.Config, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, &configError{fmt.Errorf("read config: %w\n(pass --config <file>, or copy config.example.yaml to %s and edit it; docs/config.md describes every key)", err, path)}
	}
	if err != nil {
		return nil, &configError{fmt.Errorf("read config: %w", err)}
	}
	cfg, err := config.Parse(data, path, m.Env)
	if err != nil {
		return nil, &configError{err}
	}
	if err := cfg.Validate(); err != nil {
		var errs config.Errors
		if needKeys || !errors.As(err, &errs) {
			return nil, &configError{err}
		}
		var kept config.Errors
		for _, e := range errs {
			if e.Key != "auth.jwt.secret" && e.Key != "auth.jwt" {
				kept = append(kept, e)
			}
		}
		if len(kept) > 0 {
			return nil, &configError{kept}
		}
	}
	return cfg, nil
}

// newLogger builds the process logger from the config's log section.
func (m *Main) newLogger(c config.Log) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "text" {
		return slog.New(slog.NewTextHandler(m.Stderr, opts))
	}
	return slog.New(slog.NewJSONHandler(m.Stderr, opts))
}
