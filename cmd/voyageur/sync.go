package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/voyageur-ca/voyageur/backends"
	"github.com/voyageur-ca/voyageur/crypto"
	"github.com/voyageur-ca/voyageur/journal"
	"github.com/voyageur-ca/voyageur/replicator"
	"github.com/voyageur-ca/voyageur/replicator/engine"
)

type syncOptions struct {
	config string
	job    string
	dryRun bool
	json   bool
	shard  shardFlags
}

func newSyncCmd(g *globals) *cobra.Command {
	var o syncOptions
	cmd := &cobra.Command{
		Use:   "sync -c FILE [--job NAME] [--dry-run] [--json] [--shard I/N [--shard-plan PLAN]] [--journal PATH]",
		Short: "Replicate what changed since the last run (a scan diff), then exit",
		Example: `  voyageur sync -c /etc/voyageur/voyageur.yaml
  voyageur sync -c voyageur.yaml --job ledgers --dry-run
  voyageur sync -c voyageur.yaml --json | jq .copied
  voyageur sync -c voyageur.yaml --job ledgers --shard auto/8 --shard-plan /plan/ledgers.json --journal /journal/db`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runSync(cmd.Context(), o, g, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVarP(&o.config, "config", "c", "", "configuration file (required)")
	cmd.Flags().StringVar(&o.job, "job", "", "run only this job")
	cmd.Flags().BoolVar(&o.dryRun, "dry-run", false, "show what would be copied and deleted, change nothing")
	cmd.Flags().BoolVar(&o.json, "json", false, "print one JSON summary object on stdout")
	o.shard.add(cmd.Flags())
	g.addJournalFlag(cmd.Flags())
	_ = cmd.MarkFlagRequired("config")
	return cmd
}

// selectJobs returns the configured jobs, or the one named.
func selectJobs(cfg *Config, name string) ([]JobConfig, error) {
	if name == "" {
		return cfg.Jobs, nil
	}
	var names []string
	for _, j := range cfg.Jobs {
		if j.Name == name {
			return []JobConfig{j}, nil
		}
		names = append(names, j.Name)
	}
	return nil, configErrorf("--job %q: no such job in the config (jobs: %v)", name, names)
}

// loadJobs loads the config and builds the selected jobs (all, or the one
// named). needSecret is false for commands that read names from META.
func loadJobs(ctx context.Context, config, name string, needSecret bool, log *slog.Logger) (*Config, []JobConfig, []replicator.Job, error) {
	cfg, err := LoadConfig(config, log)
	if err != nil {
		return nil, nil, nil, err
	}
	jobs, err := selectJobs(cfg, name)
	if err != nil {
		return nil, nil, nil, err
	}
	specs := make([]replicator.Job, len(jobs))
	for i, jc := range jobs {
		if specs[i], err = buildJob(ctx, cfg, jc, log, needSecret); err != nil {
			return nil, nil, nil, err
		}
	}
	return cfg, jobs, specs, nil
}

// runSync runs the selected jobs one after the other and reports them.
func runSync(ctx context.Context, o syncOptions, g *globals, stdout, stderr io.Writer) error {
	log := g.logger(stderr)
	cfg, jobs, specs, err := loadJobs(ctx, o.config, o.job, true, log)
	if err != nil {
		return err
	}
	if err := checkResidency(cfg, jobs); err != nil {
		return err
	}
	if o.shard.plan != "" && o.job == "" {
		return configErrorf("--shard-plan %s: a plan is for one job: add --job", o.shard.plan)
	}
	for i := range specs {
		if specs[i].Shard, err = o.shard.sourceShard(specs[i]); err != nil {
			return err
		}
	}
	g.applyJournal(cfg)
	limitMemory(specs, false)
	if o.dryRun {
		j, closeJournal, err := dryRunJournal(cfg)
		if err != nil {
			return err
		}
		defer closeJournal()
		return syncJobs(ctx, j, specs, o, g, log, stdout, stderr)
	}
	j, err := openJournal(cfg)
	if err != nil {
		return err
	}
	defer j.Close()
	snapCtx, stopSnap := context.WithCancel(ctx)
	snapDone := make(chan struct{})
	go func() { snapshotter(snapCtx, j, cfg, "sync", log); close(snapDone) }()
	defer func() { stopSnap(); <-snapDone }()
	return syncJobs(ctx, j, specs, o, g, log, stdout, stderr)
}

// dryRunJournal is the journal a dry run reads: the configured one opened
// read-only (a dry run writes nothing, and status can read alongside it),
// or, before any run, an empty one in a temporary directory that
// closeJournal removes.
func dryRunJournal(cfg *Config) (j *journal.Journal, closeJournal func(), err error) {
	if _, err := os.Stat(cfg.Journal); !errors.Is(err, fs.ErrNotExist) {
		if j, err = openJournalReadOnly(cfg); err != nil {
			return nil, nil, err
		}
		return j, func() { j.Close() }, nil
	}
	dir, err := os.MkdirTemp("", "voyageur-dry-run-")
	if err != nil {
		return nil, nil, fmt.Errorf("dry run: empty journal: %w", err)
	}
	if j, err = journal.Open(filepath.Join(dir, "journal.db"), lockTimeout); err != nil {
		os.RemoveAll(dir)
		return nil, nil, fmt.Errorf("dry run: empty journal: %w", err)
	}
	return j, func() { j.Close(); os.RemoveAll(dir) }, nil
}

// syncJobs runs the jobs one after the other on j and prints the summary.
func syncJobs(ctx context.Context, j *journal.Journal, specs []replicator.Job, o syncOptions, g *globals, log *slog.Logger, stdout, stderr io.Writer) error {

	var summaries []replicator.Summary
	failed := false
	for _, spec := range specs {
		progress := &replicator.Counters{}
		stopBar := startProgressBar(stderr, spec.Name, progress, g.quiet || o.json)
		s, err := engine.Sync(ctx, j, spec, engine.Options{DryRun: o.dryRun, Logger: log, Counters: progress})
		stopBar()
		if err != nil {
			if errors.Is(err, journal.ErrLocked) || ctx.Err() != nil {
				return err
			}
			if errors.Is(err, engine.ErrRouteChanged) || errors.Is(err, engine.ErrDestinationEmpty) || errors.Is(err, engine.ErrShardChanged) {
				return &ConfigError{err}
			}
			log.Error("job failed", "job", spec.Name, "err", err)
			failed = true
		}
		if s.Failed > 0 {
			failed = true
		}
		summaries = append(summaries, s)
	}
	if o.json {
		if err := writeJSONSummary(stdout, summaries); err != nil {
			return err
		}
	} else {
		for _, s := range summaries {
			writeHumanSummary(stdout, s, "copied")
		}
	}
	if failed {
		return errObjectsFailed
	}
	return nil
}

// buildJob turns a job's configuration into what the replicator runs.
func buildJob(ctx context.Context, cfg *Config, jc JobConfig, log *slog.Logger, needSecret bool) (replicator.Job, error) {
	filter, err := replicator.NewFilter(jc.Include, jc.Exclude)
	if err != nil {
		return replicator.Job{}, configErrorf("job %s: %w", jc.Name, err)
	}
	src, err := openBucket(ctx, cfg, jc.Source, log)
	if err != nil {
		return replicator.Job{}, err
	}
	dst, err := openBucket(ctx, cfg, jc.Destination, log)
	if err != nil {
		return replicator.Job{}, err
	}
	spec := replicator.Job{
		Name: jc.Name, Source: src, SourceBucket: jc.Source.Bucket, SourcePrefix: jc.Source.Prefix,
		Dest: dst, DestPrefix: jc.Destination.Prefix,
		Route:  jc.Source.String() + " -> " + jc.Destination.String(),
		Filter: filter,
		Transfer: replicator.Transfer{
			PartSize: int64(jc.Transfer.PartSize), Concurrency: jc.Transfer.Concurrency,
			Memory: int64(jc.Transfer.Memory), Bandwidth: int64(jc.Transfer.Bandwidth),
			ReadBandwidth: int64(jc.Transfer.ReadBandwidth),
		},
	}
	if jc.Deletes == "propagate" {
		spec.Deletes = replicator.DeletesPropagate
	}
	if r := jc.Retention; r != nil {
		spec.Retention = &replicator.Retention{Mode: backends.LockGovernance, Days: r.Days}
		if r.Mode == "compliance" {
			spec.Retention.Mode = backends.LockCompliance
		}
	}
	if jc.Encryption.Enabled() {
		if spec.Encryption, err = buildEncryption(jc, needSecret); err != nil {
			return replicator.Job{}, err
		}
	}
	if jc.MaxDelete != "" {
		n, pct, _ := parseMaxDelete(jc.MaxDelete) // validated when loading
		if n == 0 {
			n = -1 // an explicit 0: 0 % of the replica, not the default
		}
		spec.MaxDelete, spec.MaxDeletePercent = n, pct
	}
	return spec, nil
}

// buildEncryption reads the recipients file and the name secret; a file
// that cannot be read or holds bad data is a configuration error.
// needSecret is false for commands that read names from META (restore, ls):
// the name secret may be missing on a recovery host.
func buildEncryption(jc JobConfig, needSecret bool) (*replicator.Encryption, error) {
	e := jc.Encryption
	enc := &replicator.Encryption{Options: crypto.Options{
		Compression: crypto.Compression{Zstd: e.Compression == "zstd", Level: e.Level},
	}}
	for _, s := range e.Recipients {
		r, err := crypto.ParseRecipient(s) // validated when loading
		if err != nil {
			return nil, configErrorf("job %s: encryption.recipients: %w", jc.Name, err)
		}
		enc.Options.Recipients = append(enc.Options.Recipients, r)
	}
	if e.RecipientsFile != "" {
		rs, err := crypto.LoadRecipientsFile(e.RecipientsFile)
		if err != nil {
			return nil, configErrorf("job %s: encryption.recipients_file: %w", jc.Name, err)
		}
		enc.Options.Recipients = append(enc.Options.Recipients, rs...)
	}
	enc.HashedNames = e.Names == "hashed"
	// With plain names, the secret is optional: it keys the fingerprints
	// that let a lost journal be rebuilt without sending everything again.
	if e.NameSecretFile != "" {
		secret, err := crypto.LoadNameSecret(e.NameSecretFile)
		switch {
		case err == nil && bytes.Contains(bytes.ToUpper(secret), []byte("AGE-SECRET-KEY-")):
			// Using the identity as the name secret would put the private
			// key on the replicating host, which needs only recipients.
			return nil, configErrorf("job %s: encryption.name_secret_file: %s is an age identity, not a name secret: keep the identity offline and make a name secret with head -c 32 /dev/urandom > FILE", jc.Name, e.NameSecretFile)
		case err == nil:
			enc.NameSecret = secret
		case needSecret:
			return nil, configErrorf("job %s: encryption.name_secret_file: %w", jc.Name, err)
		}
	}
	// Mixed recipient kinds (post-quantum and classic) are refused before
	// anything is copied.
	if _, err := crypto.NewWriter(enc.Options, crypto.Meta{}); err != nil {
		return nil, configErrorf("job %s: encryption: %w", jc.Name, err)
	}
	return enc, nil
}

func writeJSONSummary(w io.Writer, summaries []replicator.Summary) error {
	enc := json.NewEncoder(w)
	if len(summaries) == 1 {
		return enc.Encode(summaries[0])
	}
	total := replicator.Summary{Job: "*"}
	for _, s := range summaries {
		total.Copied += s.Copied
		total.Skipped += s.Skipped
		total.Deleted += s.Deleted
		total.Failed += s.Failed
		total.BytesRead += s.BytesRead
		total.BytesWritten += s.BytesWritten
		total.Seconds += s.Seconds
	}
	return enc.Encode(struct {
		replicator.Summary
		Jobs []replicator.Summary `json:"jobs"`
	}{total, summaries})
}

// writeHumanSummary prints a run's summary; verb names what "copied"
// counts ("copied", "restored").
func writeHumanSummary(w io.Writer, s replicator.Summary, verb string) {
	if s.DryRun {
		verb = "would have " + verb
	}
	fmt.Fprintf(w, "%s: %s %d, skipped %d, deleted %d, failed %d; read %s, wrote %s in %.1fs\n",
		s.Job, verb, s.Copied, s.Skipped, s.Deleted, s.Failed, humanBytes(s.BytesRead), humanBytes(s.BytesWritten), s.Seconds)
	if s.Error != "" {
		fmt.Fprintf(w, "  error: %s\n", termSafe(s.Error))
	}
	for _, f := range s.Failures {
		fmt.Fprintf(w, "  failed %s: %s\n", termSafe(f.Key), termSafe(f.Error))
	}
	if n := s.Failed - int64(len(s.Failures)); n > 0 {
		fmt.Fprintf(w, "  ... and %d more failures\n", n)
	}
}
