package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/voyageur-ca/voyageur/crypto"
	"github.com/voyageur-ca/voyageur/replicator"
	"github.com/voyageur-ca/voyageur/replicator/recovery"
)

type restoreOptions struct {
	config, job, identity, to, prefix, asOf, tmpDir string
	dryRun, json, overwrite                         bool
	shard                                           shardFlags
}

func newRestoreCmd(g *globals) *cobra.Command {
	var o restoreOptions
	cmd := &cobra.Command{
		Use:   "restore -c FILE --job NAME --identity FILE --to TARGET [--prefix P] [--as-of RFC3339] [--overwrite] [--dry-run] [--json]",
		Short: "Restore a job's replica (or a prefix, or its state at a time) to a directory or a bucket",
		Long: `restore reads the replica at the job's destination and writes the original
objects to TARGET: a local directory, or ENDPOINT:BUCKET[/PREFIX] with an
endpoint from the config. It needs neither the journal nor the source.
Encrypted replicas need the identity; every object is verified against its
SHA-256 before it is put in place. A re-run skips what is already restored.
A file or object already at the target with other content is left alone and
listed as failed (exit 1) unless --overwrite is given; --dry-run lists them
as "would overwrite".

--as-of T restores, from a versioned destination, the state the replica held
at T: per key, the newest version the destination stored at or before T.
T is the destination's clock (when voyageur wrote the replica), not the
source's modification times.`,
		Example: `  voyageur restore -c voyageur.yaml --job ledgers --identity /media/offline/identity.txt --to /srv/restore
  voyageur restore -c voyageur.yaml --job ledgers --identity id.txt --to aws-recovered:ledgers-restored --prefix daily/2026-11/
  voyageur restore -c voyageur.yaml --job ledgers --identity id.txt --to /srv/restore --as-of 2026-11-24T18:00:00Z`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runRestore(cmd.Context(), o, g, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.config, "config", "c", "", "configuration file (required)")
	f.StringVar(&o.job, "job", "", "the job whose replica to restore (required)")
	f.StringVar(&o.identity, "identity", "", "age identity file (needed for encrypted replicas)")
	f.StringVar(&o.to, "to", "", "a directory, or ENDPOINT:BUCKET[/PREFIX] (required)")
	f.StringVar(&o.prefix, "prefix", "", "restore only original keys starting with this prefix")
	f.StringVar(&o.asOf, "as-of", "", "restore the replica as it was at this time (RFC 3339; versioned destinations)")
	f.StringVar(&o.tmpDir, "tmp-dir", "", "where a restore to a bucket stages each object while it is verified (default $TMPDIR)")
	f.BoolVar(&o.dryRun, "dry-run", false, "list what would be restored, write nothing")
	f.BoolVar(&o.overwrite, "overwrite", false, "replace files or objects at the target whose content differs from the replica's")
	f.BoolVar(&o.json, "json", false, "print one JSON summary object on stdout")
	o.shard.add(f)
	for _, name := range []string{"config", "job", "to"} {
		_ = cmd.MarkFlagRequired(name)
	}
	return cmd
}

// replicaJob loads the config and builds the named job, for commands that
// read the replica (restore, ls, verify).
func replicaJob(ctx context.Context, g *globals, config, name string, needSecret bool, stderr io.Writer) (*Config, replicator.Job, error) {
	cfg, _, specs, err := loadJobs(ctx, config, name, needSecret, g.logger(stderr))
	if err != nil {
		return nil, replicator.Job{}, err
	}
	return cfg, specs[0], nil
}

// catalogOptions reads --identity, --prefix and --as-of.
func catalogOptions(identity, prefix, asOf string) (recovery.CatalogOptions, error) {
	opts := recovery.CatalogOptions{Prefix: prefix}
	if identity != "" {
		ids, err := crypto.LoadIdentities(identity)
		if err != nil {
			return opts, configErrorf("--identity: %w", err)
		}
		opts.Identities = ids
	}
	if asOf != "" {
		t, err := time.Parse(time.RFC3339, asOf)
		if err != nil {
			return opts, configErrorf("--as-of %q: not an RFC 3339 time such as 2026-11-24T18:00:00Z", asOf)
		}
		opts.AsOf = t
	}
	return opts, nil
}

// identityHint points at --identity when no identity opened a replica:
// the file is almost always the cause.
func identityHint(err error, identity string) error {
	if recovery.IsWrongIdentity(err) {
		return fmt.Errorf("%w (check --identity %s)", err, identity)
	}
	return err
}

// emptyDir stands for a directory a dry run would create: it holds nothing.
type emptyDir string

var _ recovery.Target = emptyDir("")

func (d emptyDir) Name() string              { return string(d) }
func (emptyDir) Check(context.Context) error { return nil }
func (emptyDir) Restored(context.Context, crypto.Meta) (bool, error) {
	return false, nil
}
func (emptyDir) Refuse(m crypto.Meta) error { return recovery.DirRefuses(m) }
func (emptyDir) Existing(context.Context, crypto.Meta) (io.ReadCloser, bool, error) {
	return nil, false, nil
}
func (d emptyDir) Write(context.Context, string, func(io.Writer) (crypto.Meta, error)) error {
	return fmt.Errorf("dry run: nothing is written to %s", string(d))
}

func runRestore(ctx context.Context, o restoreOptions, g *globals, stdout, stderr io.Writer) (err error) {
	cfg, job, err := replicaJob(ctx, g, o.config, o.job, false, stderr)
	if err != nil {
		return err
	}
	copts, err := catalogOptions(o.identity, o.prefix, o.asOf)
	if err != nil {
		return err
	}
	if copts.Range, err = o.shard.replicaRange(job); err != nil {
		return err
	}
	if job.Encryption != nil && len(copts.Identities) == 0 {
		return configErrorf("job %s is encrypted: --identity FILE is required", job.Name)
	}
	log := g.logger(stderr)
	var target recovery.Target
	ep, _, hasColon := strings.Cut(o.to, ":")
	toBucket := hasColon && cfg.Endpoints[ep].Type != ""
	if hasColon && !toBucket && !strings.Contains(ep, "/") {
		// A typo in an endpoint must not turn into a directory named after it.
		return configErrorf("--to %s: no endpoint %q in the config (defined: %s); for a local directory whose name has a colon, write ./%s", o.to, ep, strings.Join(sortedKeys(cfg.Endpoints), ", "), o.to)
	}
	if toBucket {
		loc, err := ParseLocation(o.to)
		if err != nil {
			return configErrorf("--to: %w", err)
		}
		b, err := openBucket(ctx, cfg, loc, log)
		if err != nil {
			return err
		}
		target = &recovery.BucketTarget{Bucket: b, Prefix: loc.Prefix, PartSize: job.Transfer.PartSize, Concurrency: job.Transfer.Concurrency, TempDir: o.tmpDir}
	} else if _, err := os.Stat(o.to); o.dryRun && errors.Is(err, fs.ErrNotExist) {
		target = emptyDir(o.to) // a dry run creates nothing
	} else {
		_, serr := os.Stat(o.to)
		d, derr := recovery.NewDirTarget(o.to)
		if derr != nil {
			return derr
		}
		if errors.Is(serr, fs.ErrNotExist) {
			// A restore that fails before writing anything (a wrong
			// identity) leaves no directory behind; Remove spares one
			// that holds anything.
			defer func() {
				if err != nil {
					os.Remove(o.to)
				}
			}()
		}
		defer d.Close()
		target = d
	}
	progress := &replicator.Counters{}
	stopBar := startProgressBar(stderr, job.Name, progress, g.quiet || o.json)
	s, err := recovery.Restore(ctx, job, target, recovery.RestoreOptions{
		Catalog: copts, DryRun: o.dryRun, Overwrite: o.overwrite, Logger: log, Counters: progress,
	})
	stopBar()
	if o.json {
		if jerr := writeJSONSummary(stdout, []replicator.Summary{s}); jerr != nil {
			return jerr
		}
	} else {
		if err != nil {
			s.Error = "" // printed once, with its hint, as the command's error
		}
		writeHumanSummary(stdout, s, "restored")
	}
	switch {
	case err != nil:
		return identityHint(err, o.identity)
	case s.Failed > 0:
		return errObjectsFailed
	}
	return nil
}
