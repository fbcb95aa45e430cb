package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/voyageur-ca/voyageur/journal"
	"github.com/voyageur-ca/voyageur/replicator/recovery"
)

type verifyOptions struct {
	config, job, identity string
	sample                int
	json                  bool
	shard                 shardFlags
}

func newVerifyCmd(g *globals) *cobra.Command {
	var o verifyOptions
	cmd := &cobra.Command{
		Use:   "verify -c FILE --job NAME [--identity FILE] [--sample N] [--json]",
		Short: "Compare a job's source with its replica: missing, extra, stale and corrupt objects",
		Long: `verify lists the source and the replica and reports source objects without a
replica (missing), replicas whose source is gone (extra) and replicas of an
older version (stale). With --identity it reads each replica's META and
decrypts replicas to compare their SHA-256 with the source's (all of them, or
a random N with --sample N). Without an identity, encrypted replicas are
compared by name, and by ETag against the journal: a replica whose ETag is
not the one sync recorded when it wrote it (a byte flip, a truncation,
another replica copied over it) is corrupt. Without a readable journal (on
another host, or while a sync or watch holds it) that check is skipped, and
the report says so. It exits 1 when anything differs.`,
		Example: `  voyageur verify -c voyageur.yaml --job ledgers
  voyageur verify -c voyageur.yaml --job ledgers --identity /media/offline/identity.txt --sample 100`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runVerify(cmd.Context(), o, g, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.config, "config", "c", "", "configuration file (required)")
	f.StringVar(&o.job, "job", "", "the job to verify (required)")
	f.StringVar(&o.identity, "identity", "", "age identity file: compare contents, not only names")
	f.IntVar(&o.sample, "sample", 0, "compare the contents of a random N objects (0: all)")
	f.BoolVar(&o.json, "json", false, "print the report as one JSON object on stdout")
	o.shard.add(f)
	for _, name := range []string{"config", "job"} {
		_ = cmd.MarkFlagRequired(name)
	}
	return cmd
}

func runVerify(ctx context.Context, o verifyOptions, g *globals, stdout, stderr io.Writer) error {
	if o.sample < 0 {
		return configErrorf("--sample %d: must be 0 (all) or more", o.sample)
	}
	cfg, job, err := replicaJob(ctx, g, o.config, o.job, true, stderr)
	if err != nil {
		return err
	}
	copts, err := catalogOptions(o.identity, "", "")
	if err != nil {
		return err
	}
	rng, err := o.shard.replicaRange(job)
	if err != nil {
		return err
	}
	log := g.logger(stderr)
	jb, closeJournal, err := verifyJournal(cfg, job.Name, len(copts.Identities) > 0, log)
	if err != nil {
		return err
	}
	defer closeJournal()
	report, err := recovery.Verify(ctx, job, recovery.VerifyOptions{Identities: copts.Identities, Sample: o.sample, Journal: jb, Logger: log, Range: rng})
	if err != nil {
		return identityHint(err, o.identity)
	}
	if o.json {
		if err := json.NewEncoder(stdout).Encode(report); err != nil {
			return err
		}
	} else {
		journalNote := "replica ETags compared with the journal"
		if !report.JournalChecked {
			journalNote = "replica ETags not compared with a journal (none readable here)"
		}
		fmt.Fprintf(stdout, "%s: %d source objects, %d replicas; %d missing, %d extra, %d stale; %d compared byte for byte, %d corrupt; %s\n",
			report.Job, report.Source, report.Replica, len(report.Missing), len(report.Extra), len(report.Stale), report.Deep, len(report.Corrupt), journalNote)
		for _, k := range report.Missing {
			fmt.Fprintf(stdout, "  missing %s\n", termSafe(k))
		}
		for _, k := range report.Extra {
			fmt.Fprintf(stdout, "  extra   %s\n", termSafe(k))
		}
		for _, k := range report.Stale {
			fmt.Fprintf(stdout, "  stale   %s\n", termSafe(k))
		}
		for _, f := range report.Corrupt {
			fmt.Fprintf(stdout, "  corrupt %s: %s\n", termSafe(f.Key), termSafe(f.Error))
		}
	}
	if !report.OK() {
		return errObjectsFailed
	}
	return nil
}

// verifyJournal opens the job's journal for verify's comparison of replica
// ETags with what sync recorded. Verify also runs where there is no
// journal (another host, a lost one) or while a sync or watch holds it:
// it then goes on without that comparison, saying so, rather than
// creating a journal or waiting. With an identity the missing journal is
// no loss: decrypting checks every compared replica.
func verifyJournal(cfg *Config, job string, identity bool, log *slog.Logger) (*journal.Section, func(), error) {
	none := func() {}
	if _, err := os.Stat(cfg.Journal); errors.Is(err, fs.ErrNotExist) {
		if identity {
			return nil, none, nil
		}
		log.Warn("no journal: replica ETags are not compared with what sync recorded; without --identity, a replica changed at the destination goes unnoticed", "journal", cfg.Journal)
		return nil, none, nil
	}
	j, err := journal.Open(cfg.Journal, 0)
	switch {
	case errors.Is(err, journal.ErrLocked):
		log.Warn("the journal is locked by a running sync or watch: replica ETags are not compared with what sync recorded; run verify when it is stopped for that check", "journal", cfg.Journal)
		return nil, none, nil
	case err != nil:
		return nil, none, &ConfigError{err}
	}
	return j.Section(job), func() { j.Close() }, nil
}
