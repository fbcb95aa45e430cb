package recovery

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"iter"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"filippo.io/age"
	"golang.org/x/time/rate"

	"github.com/voyageur-ca/voyageur/backends"
	"github.com/voyageur-ca/voyageur/crypto"
	"github.com/voyageur-ca/voyageur/replicator"
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
	// Refuse says why the target cannot hold the object m describes (nil
	// when it can), before anything is read.
	Refuse(m crypto.Meta) error
	// Existing reports whether something is at the place the object m
	// describes would go, and opens it when it is a file or object (rc is
	// nil for something else, such as a directory where a file goes).
	// Restore asks only after Restored said no, and compares its bytes
	// with the replica's: other data is replaced only with
	// RestoreOptions.Overwrite.
	Existing(ctx context.Context, m crypto.Meta) (rc io.ReadCloser, occupied bool, err error)
	// Write stores one object. fill writes its plaintext and returns its
	// META once the plaintext is verified; the target puts the object in
	// place only after fill succeeded, and leaves nothing when it failed.
	Write(ctx context.Context, key string, fill func(io.Writer) (crypto.Meta, error)) error
	// Name describes the target in logs.
	Name() string
}

// RestoreOptions are per-restore settings.
type RestoreOptions struct {
	Catalog CatalogOptions
	DryRun  bool
	// Overwrite replaces files or objects at the target whose content
	// differs from the replica's. Without it they are left as they are and
	// listed as failed: a restore into a place holding other data must not
	// destroy it unasked.
	Overwrite bool
	Logger    *slog.Logger
	// Counters, when not nil, are the ones the restore counts into, for a
	// caller to read while it goes (a progress bar); nil: its own.
	Counters *replicator.Counters
}

// restorer is one restore of a job's replica.
type restorer struct {
	job       replicator.Job
	dryRun    bool
	log       *slog.Logger
	count     *replicator.Counters
	readLimit *rate.Limiter
}

// Restore copies the job's replica (or the part CatalogOptions selects) to
// target, decrypting and verifying every object against its TRAILER's
// SHA-256 before it is put in place. It needs neither the journal nor the
// source. Per-object failures are listed in the Summary; the returned error
// is for failures of the restore itself (listing, a missing or wrong
// identity, a target that cannot be written).
func Restore(ctx context.Context, job replicator.Job, target Target, opts RestoreOptions) (replicator.Summary, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if err := job.Transfer.Normalize(false); err != nil {
		return replicator.Summary{Job: job.Name}, err
	}
	if job.Encryption != nil && len(opts.Catalog.Identities) == 0 {
		return replicator.Summary{Job: job.Name}, fmt.Errorf("restore %s: %w", job.Name, ErrNeedIdentity)
	}
	if err := target.Check(ctx); err != nil {
		return replicator.Summary{Job: job.Name, DryRun: opts.DryRun, Error: err.Error()}, err
	}
	r := &restorer{
		job: job, dryRun: opts.DryRun, log: opts.Logger.With("job", job.Name), count: opts.Counters,
		readLimit: replicator.NewLimiter(job.Transfer.Bandwidth),
	}
	if r.count == nil {
		r.count = &replicator.Counters{}
	}
	started := time.Now()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	work := make(chan Replica)
	var wg sync.WaitGroup
	for range job.Transfer.Concurrency {
		wg.Go(func() {
			for rep := range work {
				if err := r.restoreOne(ctx, target, rep, opts.Catalog.Identities, opts.Overwrite); err != nil {
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
		r.count.Queue(rep.Meta.Size)
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
	s := r.count.Summary(job.Name, opts.DryRun, started)
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
func withoutConflicts(replicas iter.Seq2[Replica, error], r *restorer) iter.Seq2[Replica, error] {
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

// restoreOne restores one replica unless the target has it already. What
// the target holds in its place otherwise is replaced with overwrite;
// without it, it is compared with the replica's bytes: the same bytes are
// skipped, others left alone and reported.
func (r *restorer) restoreOne(ctx context.Context, target Target, rep Replica, ids []age.Identity, overwrite bool) error {
	if err := target.Refuse(rep.Meta); err != nil {
		return err
	}
	if ok, err := target.Restored(ctx, rep.Meta); err != nil {
		return err
	} else if ok {
		r.skip()
		return nil
	}
	rc, occupied, err := target.Existing(ctx, rep.Meta)
	if err != nil {
		return err
	}
	switch {
	case occupied && overwrite:
		if rc != nil {
			rc.Close()
		}
		if r.dryRun {
			r.log.Info("would overwrite", "key", rep.Meta.Key, "size", rep.Meta.Size, "to", target.Name())
			r.count.Copied.Add(1)
			return nil
		}
		r.log.Info("overwriting", "key", rep.Meta.Key, "to", target.Name())
	case occupied:
		same, err := r.sameBytes(ctx, rep, ids, rc)
		switch {
		case err != nil:
			return err
		case same:
			r.skip()
			return nil
		case r.dryRun:
			return fmt.Errorf("would overwrite: %s holds other content there; refused without --overwrite", target.Name())
		}
		return fmt.Errorf("not overwritten: %s holds other content there (give --overwrite to replace it)", target.Name())
	case r.dryRun:
		r.log.Info("would restore", "key", rep.Meta.Key, "size", rep.Meta.Size, "to", target.Name())
		r.count.Copied.Add(1)
		return nil
	}
	err = target.Write(ctx, rep.Meta.Key, func(w io.Writer) (crypto.Meta, error) {
		return r.replicaBytes(ctx, rep, ids, w)
	})
	if err != nil {
		return err
	}
	r.count.Copied.Add(1)
	r.count.BytesWritten.Add(rep.Meta.Size)
	r.count.Done(rep.Meta.Size)
	return nil
}

func (r *restorer) skip() {
	r.count.Skipped.Add(1)
	r.count.Done(0)
}

// errDiffers stops reading a replica once it differs from what the target
// holds.
var errDiffers = errors.New("differs from what the target holds")

// sameBytes reports whether existing (nil: something that is not a file,
// such as a directory where a file goes) holds exactly the replica's
// plaintext, reading both in step up to the first difference; a match is
// one the replica's own check (TRAILER, ETag) confirmed. It closes
// existing.
func (r *restorer) sameBytes(ctx context.Context, rep Replica, ids []age.Identity, existing io.ReadCloser) (bool, error) {
	if existing == nil {
		return false, nil
	}
	defer existing.Close()
	cmp := &compareWriter{r: existing}
	_, err := r.replicaBytes(ctx, rep, ids, cmp)
	switch {
	case errors.Is(err, errDiffers):
		return false, nil
	case cmp.err != nil:
		return false, fmt.Errorf("read what the target holds for %s: %w", rep.Meta.Key, cmp.err)
	case err != nil:
		return false, err
	}
	// Nothing may follow the replica's bytes.
	var one [1]byte
	n, err := io.ReadFull(existing, one[:])
	if err != nil && !errors.Is(err, io.EOF) {
		return false, fmt.Errorf("read what the target holds for %s: %w", rep.Meta.Key, err)
	}
	return n == 0, nil
}

// compareWriter compares what is written with what r reads, failing the
// write with errDiffers at the first difference.
type compareWriter struct {
	r   io.Reader
	buf []byte
	err error // reading r
}

func (c *compareWriter) Write(p []byte) (int, error) {
	if cap(c.buf) < len(p) {
		c.buf = make([]byte, len(p))
	}
	b := c.buf[:len(p)]
	_, err := io.ReadFull(c.r, b)
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return 0, errDiffers
	case err != nil:
		c.err = err
		return 0, err
	case !bytes.Equal(b, p):
		return 0, errDiffers
	}
	return len(p), nil
}

// replicaBytes writes the plaintext of one replica to w and returns its
// META. An encrypted replica is checked against its TRAILER (SHA-256 and
// size) by Decrypt; a plain one against its ETag (checkETag).
func (r *restorer) replicaBytes(ctx context.Context, rep Replica, ids []age.Identity, w io.Writer) (crypto.Meta, error) {
	rc, info, err := r.job.Dest.Get(ctx, rep.DestKey, backends.GetOptions{VersionID: rep.VersionID})
	if err != nil {
		return crypto.Meta{}, err
	}
	defer rc.Close()
	src := replicator.PacedReader(ctx, &countingReader{r: rc, n: &r.count.BytesRead}, r.readLimit)
	if r.job.Encryption == nil {
		m := rep.Meta
		// The fingerprint is voyageur's, not the source's.
		m.ContentType, m.Metadata = info.ContentType, maps.Clone(info.Metadata)
		delete(m.Metadata, replicator.FingerprintMeta)
		sum := newETagSum(replicator.PartSizeFor(info.Size, r.job.Transfer.PartSize))
		n, err := io.Copy(io.MultiWriter(w, sum), src)
		if err == nil && n != info.Size {
			err = fmt.Errorf("read %s: got %d of %d bytes", rep.DestKey, n, info.Size)
		}
		if err == nil {
			err = r.checkETag(rep, info, sum)
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
}

// checkETag compares the bytes read of a plain replica with the ETag the
// destination gave for it: the MD5 of the bytes for a single PUT, the MD5
// of the parts' MD5s and their count for a multipart upload, whose parts
// voyageur cut at the job's part size (partSizeFor). A store whose ETags
// are not MD5s (SSE-KMS) fails that; the bytes then pass when the
// replica's fingerprint names their MD5 as the source ETag it was written
// from. An ETag it cannot recompute (a part count another part size gave,
// an opaque ETag as on Azure) is logged, not failed: nothing says the
// bytes are wrong.
func (r *restorer) checkETag(rep Replica, info backends.ObjectInfo, sum *etagSum) error {
	etag := strings.ToLower(backends.TrimETag(info.ETag))
	got, ok := sum.etag(etag)
	switch {
	case ok && got == etag:
		return nil
	case ok && r.fingerprintNamesMD5(rep, info, sum):
		return nil
	case !ok:
		r.log.Warn("bytes not checked: the replica's ETag is not one voyageur can recompute (an opaque ETag, or parts of another part size than the job's)", "key", rep.DestKey, "etag", etag)
		return nil
	}
	return fmt.Errorf("read %s: the bytes do not match the replica's ETag (%s, they give %s): changed at the destination, or damaged", rep.DestKey, etag, got)
}

// fingerprintNamesMD5 reports whether the plain replica's fingerprint
// (docs/FORMAT.md §7) is that of its key and size with the MD5 of the
// bytes read as the source ETag.
func (r *restorer) fingerprintNamesMD5(rep Replica, info backends.ObjectInfo, sum *etagSum) bool {
	fp, ok := info.Metadata[replicator.FingerprintMeta]
	if !ok {
		return false
	}
	key, err := r.job.FingerprintKey()
	if err != nil {
		return false
	}
	return fp == crypto.Fingerprint(key, "", rep.Meta.Key, info.Size, hex.EncodeToString(sum.whole.Sum(nil)))
}

// etagSum computes, as bytes go by, the S3 ETag of a single PUT of them
// and of a multipart upload of them in parts of partSize.
type etagSum struct {
	partSize, inPart int64
	whole, part      hash.Hash
	parts            [][]byte // the MD5s of the finished parts, in order
}

func newETagSum(partSize int64) *etagSum {
	return &etagSum{partSize: partSize, whole: md5.New(), part: md5.New()}
}

func (e *etagSum) Write(p []byte) (int, error) {
	e.whole.Write(p)
	for rest := p; len(rest) > 0; {
		k := min(int64(len(rest)), e.partSize-e.inPart)
		e.part.Write(rest[:k])
		e.inPart += k
		rest = rest[k:]
		if e.inPart == e.partSize {
			e.endPart()
		}
	}
	return len(p), nil
}

func (e *etagSum) endPart() {
	e.parts = append(e.parts, e.part.Sum(nil))
	e.part.Reset()
	e.inPart = 0
}

// etag returns the ETag of the bytes in the form of want (single PUT or N
// parts), and false when want is neither an MD5 nor a multipart ETag with
// the part count partSize gives.
func (e *etagSum) etag(want string) (string, bool) {
	if _, ok := plainMD5(want); ok {
		return hex.EncodeToString(e.whole.Sum(nil)), true
	}
	sum, count, ok := strings.Cut(want, "-")
	if _, md5ok := plainMD5(sum); !ok || !md5ok {
		return "", false
	}
	parts := e.parts
	if e.inPart > 0 {
		parts = append(slices.Clip(parts), e.part.Sum(nil))
	}
	if count != strconv.Itoa(len(parts)) {
		return "", false
	}
	return backends.MultipartETag(parts), true
}

// noteFailure counts, lists and logs one failed object.
func (r *restorer) noteFailure(key, op string, err error) {
	r.log.Warn("object failed", "key", key, "op", op, "err", err)
	r.count.Fail(key, op, err)
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
