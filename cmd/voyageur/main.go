// Command voyageur replicates S3 buckets to a second provider, keeping a
// local journal so that nothing is lost and interrupted copies resume.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/voyageur-ca/voyageur/journal"
)

// Exit codes, part of the CLI contract.
const (
	exitOK      = 0
	exitFailed  = 1 // some objects (or a job) failed; the rest was done
	exitUsage   = 2 // usage or configuration error
	exitLocked  = 3 // the journal is locked by another run
	lockTimeout = 2 * time.Second
)

// errObjectsFailed marks a run that finished with failures already reported
// in its summary.
var errObjectsFailed = errors.New("some objects failed")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// globals are the flags every command takes.
type globals struct {
	verbose   bool
	quiet     bool
	logFormat string // text | json
	journal   string // --journal, on the commands that use one
}

func (g *globals) logger(w io.Writer) *slog.Logger {
	level := slog.LevelInfo
	switch {
	case g.verbose:
		level = slog.LevelDebug
	case g.quiet:
		level = slog.LevelWarn
	}
	opts := &slog.HandlerOptions{Level: level}
	if t, ok := terminal(w); ok {
		w = t // shared with the progress bar
	}
	if g.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// check rejects flag combinations that make no sense.
func (g *globals) check() error {
	if g.logFormat != "text" && g.logFormat != "json" {
		return configErrorf("--log-format %q: use text or json", g.logFormat)
	}
	if g.verbose && g.quiet {
		return configErrorf("--verbose and --quiet: choose one")
	}
	return nil
}

// run executes the CLI and maps the outcome to an exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root, started := newRootCmd(stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	if !errors.Is(err, errObjectsFailed) {
		fmt.Fprintf(stderr, "voyageur: %v\n", err)
	}
	var ce *ConfigError
	switch {
	case errors.Is(err, journal.ErrLocked):
		return exitLocked
	case errors.As(err, &ce) || !*started:
		// Errors before a command started are cobra's usage errors.
		return exitUsage
	default:
		return exitFailed
	}
}

func newRootCmd(stdout, stderr io.Writer) (*cobra.Command, *bool) {
	var g globals
	started := new(bool)
	root := &cobra.Command{
		Use:   "voyageur",
		Short: "Replicate S3 buckets to a provider you choose, with a local journal and resumable transfers",
		Long: `voyageur keeps a second copy of S3 buckets at another provider (OVHcloud in
Canada, your own MinIO, any S3 endpoint). Every pending change is recorded in a
local journal before it is acted on, and large objects are copied with
concurrent, checkpointed multipart uploads that resume after a crash.`,
		Example: `  voyageur init -o voyageur.yaml          # a commented sample configuration
  voyageur keygen -o identity.txt          # an age identity; keep it offline
  voyageur sync -c voyageur.yaml           # replicate what changed (cron, systemd timer)
  voyageur watch -c voyageur.yaml --metrics :9090
  voyageur status -c voyageur.yaml
  voyageur restore -c voyageur.yaml --job ledgers --identity identity.txt --to /srv/restore`,
		Version:       currentVersion().String(),
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(*cobra.Command, []string) error {
			return g.check()
		},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetVersionTemplate("voyageur {{.Version}}\n")
	root.PersistentFlags().BoolVarP(&g.verbose, "verbose", "v", false, "log every object (debug level)")
	root.PersistentFlags().BoolVarP(&g.quiet, "quiet", "q", false, "log warnings and errors only")
	root.PersistentFlags().StringVar(&g.logFormat, "log-format", "text", "log lines as text (logfmt) or json, on stderr")
	root.AddCommand(newSyncCmd(&g), newStatusCmd(&g), newForgetCmd(&g), newKeygenCmd(), newRestoreCmd(&g), newLsCmd(&g), newVerifyCmd(&g), newWatchCmd(&g),
		newServeCmd(&g), newInitCmd(), newVersionCmd(), newDrillCmd(&g), newShardPlanCmd(&g))
	// cobra's completion command shows its help and exits 0 for a shell it
	// does not know (tcsh): a usage error is what a script must see.
	root.InitDefaultCompletionCmd()
	if comp, _, err := root.Find([]string{"completion"}); err == nil && comp != root {
		comp.Args = cobra.NoArgs
		comp.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
	}
	for _, c := range root.Commands() {
		if c.Flags().Lookup("job") != nil {
			_ = c.RegisterFlagCompletionFunc("job", completeJobs)
		}
	}
	// Cobra reports usage errors (unknown flags, missing required ones)
	// before RunE; marking RunE's start tells them apart from run errors.
	for _, c := range root.Commands() {
		if runE := c.RunE; runE != nil {
			c.RunE = func(cmd *cobra.Command, args []string) error {
				*started = true
				return runE(cmd, args)
			}
		}
	}
	return root, started
}

// completeJobs completes --job with the job names of the config given with
// -c; a config that cannot be read completes nothing.
func completeJobs(cmd *cobra.Command, _ []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
	path, _ := cmd.Flags().GetString("config")
	if path == "" {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	cfg, err := LoadConfig(path, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	names := make([]cobra.Completion, len(cfg.Jobs))
	for i, j := range cfg.Jobs {
		names[i] = j.Name
	}
	return names, cobra.ShellCompDirectiveNoFileComp
}

// openJournal opens the configured journal, failing fast when another run
// holds it.
func openJournal(cfg *Config) (*journal.Journal, error) {
	return journalError(journal.Open(cfg.Journal, lockTimeout))
}

// openJournalReadOnly opens the configured journal for a command that only
// reads it (status, sync --dry-run): nothing is created or changed, and a
// read-only file will do.
func openJournalReadOnly(cfg *Config) (*journal.Journal, error) {
	return journalError(journal.OpenReadOnly(cfg.Journal, lockTimeout))
}

func journalError(j *journal.Journal, err error) (*journal.Journal, error) {
	switch {
	case errors.Is(err, journal.ErrLocked):
		return nil, fmt.Errorf("%w (is another sync or watch running?)", err)
	case err != nil:
		// The journal the config names cannot be used: a path that cannot
		// hold it, or a damaged file (docs/config.md says what to do).
		return nil, &ConfigError{err}
	}
	return j, nil
}
