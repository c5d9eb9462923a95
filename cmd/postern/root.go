package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/postern-mail/postern/internal/config"
	"github.com/postern-mail/postern/internal/server"
	"github.com/postern-mail/postern/internal/store/sqlite"
)

type usageError struct{ error }

func isUsageError(err error) bool {
	_, ok := err.(usageError)
	if ok {
		return true
	}
	s := err.Error()
	return strings.HasPrefix(s, "unknown command") || strings.HasPrefix(s, "unknown flag") ||
		strings.HasPrefix(s, "unknown shorthand flag") || strings.Contains(s, "arg(s), received") ||
		strings.HasPrefix(s, "requires at least") || strings.HasPrefix(s, "flag needs an argument")
}

// app is the state shared by the subcommands.
type app struct {
	configPath string
	stdin      io.Reader
	stdout     io.Writer
	stderr     io.Writer
}

func (a *app) loadConfig() (*config.Config, error) {
	return config.Load(a.configPath)
}

// openStore opens the data directory of the configured server; it works
// whether or not the server is running.
func (a *app) openStore() (*sqlite.Store, *config.Config, error) {
	cfg, err := a.loadConfig()
	if err != nil {
		return nil, nil, err
	}
	st, err := sqlite.Open(cfg.DataDir)
	if err != nil {
		return nil, nil, err
	}
	return st, cfg, nil
}

// withStore adapts a command body that works on the store: it opens the
// configured data directory (the server may be running or not), runs fn,
// and closes the store.
func (a *app) withStore(fn func(st *sqlite.Store, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		st, _, err := a.openStore()
		if err != nil {
			return err
		}
		defer st.Close()
		return fn(st, args)
	}
}

func newRootCmd(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:           "postern",
		Short:         "Postern runs a domain's whole mail system: SMTP, mailboxes, IMAP and POP3",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.PersistentFlags().StringVar(&a.configPath, "config", "", "config file (default: development defaults, data in ./postern-data)")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(a.serveCmd(), a.domainCmd(), a.userCmd(), a.aliasCmd(), a.mailboxCmd(), a.queueCmd(), a.traceCmd(), a.versionCmd())
	root.AddCommand(a.auditCmd(), a.dnsRecordsCmd())
	// A command group (domain, user, ...) run alone shows its help; with an
	// unknown subcommand it is a usage error (exit 2), not help and exit 0.
	for _, c := range root.Commands() {
		if c.HasSubCommands() && c.Run == nil && c.RunE == nil {
			c.Args = cobra.NoArgs
			c.RunE = func(c *cobra.Command, _ []string) error { return c.Help() }
		}
	}
	return root
}

func (a *app) serveCmd() *cobra.Command {
	var logLevel, cpuProfile string
	c := &cobra.Command{
		Use:   "serve",
		Short: "Run the mail server",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := a.loadConfig()
			if err != nil {
				return err
			}
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return usageError{fmt.Errorf("--log-level: %v", err)}
			}
			log := slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: level}))
			slog.SetDefault(log)
			if cpuProfile != "" {
				f, err := os.Create(cpuProfile)
				if err != nil {
					return err
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return err
				}
				defer pprof.StopCPUProfile()
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return server.Run(ctx, cfg, log, a.stdout)
		},
	}
	c.Flags().StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	// For the benchmarks: the profile covers the whole run, written on a
	// clean shutdown.
	c.Flags().StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile (pprof) of the run to this file")
	c.Flags().MarkHidden("cpuprofile")
	return c
}

func (a *app) versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			fmt.Fprintln(a.stdout, "postern", Version)
			return nil
		},
	}
}
