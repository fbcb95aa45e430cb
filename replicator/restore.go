package replicator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"strings"
	"sync"
	"time"

	"filippo.io/age"

	"github.com/voyageur-ca/voyageur/backends"
	"github.com/voyageur-ca/voyageur/crypto"
)

// Target receives restored objects: a local directory (DirTarget) or a
// bucket (BucketTarget).
type Target interface {
	// Check fails when the target cannot take any object (a bucket that
	// does not exist), before anything is read from the replica.
	Check(ctx context.Context) error
	// Restored reports whether the target already holds the object m
	// describes, so that a re-run of an interrupted restore skips it.
	Restored(ctx context.Context, m crypto.Meta) (bool, error)
	// Write stores one object. fill writes its plaintext and returns its
	// META once the plaintext is verified; the target puts the object in
	// place only after fill succeeded, and leaves nothing when it failed.
	Write(ctx context.Context, key string, fill func(io.Writer) (crypto.Meta, error)) error
	// Name describes the target in logs.
	Name() string
}

// RestoreOptions are per-restore settings.
type RestoreOptions struct {
	Catalog  CatalogOptions
	DryRun   bool
	Logger   *slog.Logger
	Progress *Progress
}

// Restore copies the job's replica (or the part CatalogOptions selects) to
// target, decrypting and verifying every object against its TRAILER's
// SHA-256 before it is put in place. It needs neither the journal nor the
// source. Per-object failures are listed in the Summary; the returned error
// is for failures of the restore itself (listing, a missing or wrong
// identity, a target that cannot be written).
func Restore(ctx context.Context, job Job, target Target, opts RestoreOptions) (Summary, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if err := job.Transfer.Normalize(false); err != nil {
		return Summary{Job: job.Name}, err
	}
	if job.Encryption != nil && len(opts.Catalog.Identities) == 0 {
		return Summary{Job: job.Name}, fmt.Errorf("restore %s: %w", job.Name, ErrNeedIdentity)
	}
	if err := target.Check(ctx); err != nil {
		return Summary{Job: job.Name, DryRun: opts.DryRun, Error: err.Error()}, err
	}
	r := &run{
		job: job, opts: Options{DryRun: opts.DryRun, Progress: opts.Progress}, log: opts.Logger.With("job", job.Name),
		readLimit: newLimiter(job.Transfer.Bandwidth),
	}
	started := time.Now()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	work := make(chan Replica)
	var wg sync.WaitGroup
	for range job.Transfer.Concurrency {
		wg.Go(func() {
			for rep := range work {
				if err := r.restoreOne(ctx, target, rep, opts.Catalog.Identities); err != nil {
					if IsWrongIdentity(err) {
						cancel(wrongIdentity(job.Name, err))
					}
					r.noteFailure(rep.Meta.Key, "restore", err)
				}
			}
		})
	}
	var fatal error
	copts := opts.Catalog
	copts.Concurrency = job.Transfer.Concurrency
	replicas := Catalog(ctx, job, copts)
	if job.Encryption != nil && job.Encryption.HashedNames && job.Encryption.NameSecret == nil {
		r.log.Warn("names are not being checked: without a readable name_secret_file, a replica's name cannot be matched to the key in its META; two replicas claiming one key are both refused")
		replicas = withoutConflicts(replicas, r)
	}
	for rep, err := range replicas {
		if err != nil && rep.DestKey == "" {
			fatal = err
			break
		}
		if err != nil {
			r.noteFailure(rep.DestKey, "restore", err)
			continue
		}
		r.noteQueued(rep.Meta.Size)
		select {
		case work <- rep:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(work)
	wg.Wait()
	if cause := context.Cause(ctx); fatal == nil && cause != nil && !errors.Is(cause, context.Canceled) {
		fatal = cause
	}
	s := r.summary(started)
	if fatal != nil {
		s.Error = fatal.Error()
	}
	return s, fatal
}

// withoutConflicts reads the whole catalog, then yields it without the keys
// that more than one replica claims: each of those is one failure naming
// all its replicas. Only names the job cannot check (hashed, without the
// name secret) can conflict; with checked names one key has one name. Two
// writers on one key would splice their bytes into one file, and nothing
// tells which replica this job wrote, so neither is restored.
func withoutConflicts(replicas iter.Seq2[Replica, error], r *run) iter.Seq2[Replica, error] {
	return func(yield func(Replica, error) bool) {
		type entry struct {
			rep Replica
			err error
		}
		var all []entry
		claims := map[string][]string{}
		for rep, err := range replicas {
			all = append(all, entry{rep, err})
			if err == nil {
				claims[rep.Meta.Key] = append(claims[rep.Meta.Key], rep.DestKey)
			}
			if err != nil && rep.DestKey == "" {
				break
			}
		}
		for _, e := range all {
			if c := claims[e.rep.Meta.Key]; e.err == nil && len(c) > 1 {
				if c[0] == e.rep.DestKey {
					r.noteFailure(e.rep.Meta.Key, "restore", fmt.Errorf("conflict: replicas %s all claim %q and names are not checked without name_secret_file; restoring none (give the job's name_secret_file to tell which one it wrote)", strings.Join(c, ", "), e.rep.Meta.Key))
				}
				continue
			}
			if !yield(e.rep, e.err) {
				return
			}
		}
	}
}

// restoreOne restores one replica unless the target has it already.
func (r *run) restoreOne(ctx context.Context, target Target, rep Replica, ids []age.Identity) error {
	if ok, err := target.Restored(ctx, rep.Meta); err != nil {
		return err
	} else if ok {
		r.skipped.Add(1)
		r.noteDone(0)
		return nil
	}
	if r.opts.DryRun {
		r.log.Info("would restore", "key", rep.Meta.Key, "size", rep.Meta.Size, "to", target.Name())
		r.copied.Add(1)
		return nil
	}
	err := target.Write(ctx, rep.Meta.Key, func(w io.Writer) (crypto.Meta, error) {
		rc, info, err := r.job.Dest.Get(ctx, rep.DestKey, backends.GetOptions{VersionID: rep.VersionID})
		if err != nil {
			return crypto.Meta{}, err
		}
		defer rc.Close()
		var src io.Reader = &countingReader{r: rc, n: &r.bytesRead}
		if r.readLimit != nil {
			src = &limitedReader{ctx: ctx, r: src, lim: r.readLimit}
		}
		if r.job.Encryption == nil {
			m := rep.Meta
			// The fingerprint is voyageur's, not the source's.
			m.ContentType, m.Metadata = info.ContentType, info.Metadata
			delete(m.Metadata, fingerprintMeta)
			n, err := io.Copy(w, src)
			if err == nil && n != info.Size {
				err = fmt.Errorf("read %s: got %d of %d bytes", rep.DestKey, n, info.Size)
			}
			return m, err
		}
		m, _, err := crypto.Decrypt(src, w, ids...)
		if err != nil {
			return m, fmt.Errorf("decrypt %s: %w", rep.DestKey, err)
		}
		if m.Key != rep.Meta.Key {
			return m, fmt.Errorf("decrypt %s: META names %q, the listing %q", rep.DestKey, m.Key, rep.Meta.Key)
		}
		return m, nil
	})
	if err != nil {
		return err
	}
	r.copied.Add(1)
	r.bytesWritten.Add(rep.Meta.Size)
	r.noteDone(rep.Meta.Size)
	return nil
}

// noteFailure counts and lists one failed object.
func (r *run) noteFailure(key, op string, err error) {
	r.log.Warn("object failed", "key", key, "op", op, "err", err)
	r.failed.Add(1)
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.failures) < maxFailuresListed {
		r.failures = append(r.failures, Failure{Key: key, Op: op, Error: err.Error()})
	}
}

type countingReader struct {
	r io.Reader
	n interface{ Add(int64) int64 }
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}
