package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"
	"golang.org/x/time/rate"

	"github.com/voyageur-ca/voyageur/backends"
	"github.com/voyageur-ca/voyageur/journal"
	"github.com/voyageur-ca/voyageur/replicator"
	"github.com/voyageur-ca/voyageur/replicator/multipart"
)

// ErrTooManyDeletes is returned (wrapped) when a run would delete more
// replicas than the job's MaxDelete allows; nothing is deleted then.
var ErrTooManyDeletes = errors.New("too many deletes")

// enqueueBatch is how many changes one journal transaction queues: large
// enough to amortize fsync, small enough to start copying early.
const enqueueBatch = 256

type run struct {
	job  replicator.Job
	j    *journal.Journal
	jb   *journal.Section
	opts Options
	log  *slog.Logger

	// limits holds the memory budget, the transfer slots and the pace of
	// the bytes sent to the destination.
	limits *multipart.Limits
	// pipelines admits encrypted multipart objects so that the memory each
	// needs to make progress (MinMemory) fits in the budget together.
	pipelines *semaphore.Weighted
	// readLimit paces source reads; nil: no limit.
	readLimit *rate.Limiter

	work chan journal.Change
	// pending counts the changes handed to workers and the journal commits
	// still in flight.
	pending sync.WaitGroup
	// commits bounds the journal commits in flight to one per worker:
	// enough for the group commit to gather a batch per fsync, and a
	// crash re-sends at most that many objects whose write had landed
	// beyond the ones in flight (docs/reliability.md).
	commits chan struct{}
	// kick, in watch mode, wakes the watcher's dispatcher instead of
	// handing changes to this run's workers.
	kick func()

	// started is when the run began: a replica recorded since then was
	// copied by this run, not skipped by its scan.
	started time.Time

	// count is what the run did, for its summary, journal record and
	// progress bar.
	count *replicator.Counters
	// adopted counts the replicas a rebuild recognized by fingerprint.
	adopted atomic.Int64
	// fpKey keys replica fingerprints; nil when the job writes none.
	fpKey []byte
	// fpFormat is the format fingerprints name (Job.fingerprintFormat).
	fpFormat string
	// noFingerprints warns once that a rebuild cannot recognize replicas.
	noFingerprints sync.Once

	mu         sync.Mutex
	failedKeys map[string]bool
}

// Sync runs one scan-diff replication of job: it first finishes the changes
// a previous run left in the journal queue (resuming multipart uploads),
// then lists the source, queues what differs from the index, copies it, and
// finally propagates deletes when the policy asks and the listing was
// complete.
//
// Per-object failures are counted and listed in the Summary and leave their
// change queued for the next run; the returned error is for failures of the
// run itself (listing, journal, the delete limit).
func Sync(ctx context.Context, j *journal.Journal, job replicator.Job, opts Options) (replicator.Summary, error) {
	r, err := newRun(j, job, opts)
	if err != nil {
		return replicator.Summary{Job: job.Name}, err
	}
	var workers sync.WaitGroup
	for range r.job.Transfer.Concurrency {
		workers.Go(func() {
			for c := range r.work {
				r.process(ctx, c)
				r.pending.Done()
			}
		})
	}
	complete, err := r.run(ctx)
	close(r.work)
	workers.Wait()
	r.pending.Wait() // the journal commits still in flight
	if err == nil && ctx.Err() != nil {
		// Interrupted after the listing: work was abandoned, not done.
		complete, err = false, ctx.Err()
	}

	s := r.summary()
	if err != nil {
		s.Error = err.Error()
	}
	if !opts.DryRun {
		rec := r.count.Counts().Record(r.started, time.Now(), complete, err)
		// A cancelled ctx must not lose the run record.
		if rerr := r.jb.AddRun(rec); rerr != nil && err == nil {
			err = rerr
		}
	}
	return s, err
}

// newRun prepares a run of job: its budgets, limiter, buffers and counters.
func newRun(j *journal.Journal, job replicator.Job, opts Options) (*run, error) {
	if err := job.Transfer.Normalize(job.Encryption != nil); err != nil {
		return nil, fmt.Errorf("job %s: transfer.%w", job.Name, err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	fpKey, err := job.FingerprintKey()
	if err != nil {
		return nil, fmt.Errorf("job %s: %w", job.Name, err)
	}
	fpFormat, err := job.FingerprintFormat()
	if err != nil {
		return nil, fmt.Errorf("job %s: %w", job.Name, err)
	}
	count := opts.Counters
	if count == nil {
		count = &replicator.Counters{}
	}
	return &run{
		job:        job,
		count:      count,
		j:          j,
		jb:         j.Section(job.Name),
		opts:       opts,
		log:        opts.Logger.With("job", job.Name),
		limits:     newLimits(job),
		pipelines:  semaphore.NewWeighted(job.Transfer.Memory),
		readLimit:  replicator.NewLimiter(job.Transfer.ReadBandwidth),
		work:       make(chan journal.Change, job.Transfer.Concurrency),
		commits:    make(chan struct{}, job.Transfer.Concurrency),
		failedKeys: map[string]bool{},
		fpKey:      fpKey,
		fpFormat:   fpFormat,
		started:    time.Now(),
	}, nil
}

func (r *run) run(ctx context.Context) (complete bool, err error) {
	if err := r.prepare(ctx); err != nil {
		return false, err
	}
	if !r.opts.DryRun {
		if err := r.drainLeftovers(ctx); err != nil {
			return false, err
		}
	}
	return r.scan(ctx)
}

// prepare is the start of every sync and watch, dry runs included: the
// journal state must be this job's, and the destination must answer. A
// store that cannot be reached, refuses the credentials or lacks the bucket
// stops the run at its first request with one error, not one per object,
// and never passes as a run with nothing to do.
func (r *run) prepare(ctx context.Context) error {
	if err := r.checkRoute(ctx); err != nil {
		return err
	}
	if err := r.checkShard(); err != nil {
		return err
	}
	if err := r.checkRetention(ctx); err != nil {
		return err
	}
	return r.abortStaleUploads(ctx)
}

// checkRetention fails a job with retention whose destination bucket has
// no object lock: every write would be refused, or worse, on a store that
// ignored the request, land unprotected.
func (r *run) checkRetention(ctx context.Context) error {
	if r.job.Retention == nil {
		return nil
	}
	on, err := r.job.Dest.ObjectLockEnabled(ctx)
	if err != nil {
		return fmt.Errorf("destination %s: %w", r.job.Dest.Name(), err)
	}
	if !on {
		return fmt.Errorf("destination bucket %s has no object lock: retention needs a bucket created with object lock", r.job.Dest.Name())
	}
	return nil
}

// dispatch hands a queued change to the workers; it blocks while they are
// busy, which keeps the listing from running far ahead of the copies.
func (r *run) dispatch(ctx context.Context, c journal.Change) error {
	if r.kick != nil {
		r.kick()
		return nil
	}
	r.pending.Add(1)
	select {
	case r.work <- c:
		return nil
	case <-ctx.Done():
		r.pending.Done()
		return ctx.Err()
	}
}

// drainLeftovers processes what earlier runs left queued (failed objects,
// an upload interrupted by a crash) before the scan, so no key is worked on
// twice at once.
func (r *run) drainLeftovers(ctx context.Context) error {
	var after uint64
	for {
		batch, err := r.jb.Pending(after, enqueueBatch)
		if err != nil {
			return err
		}
		if len(batch) == 0 {
			break
		}
		for _, c := range batch {
			r.count.Queue(c.Size)
			if err := r.dispatch(ctx, c); err != nil {
				return err
			}
		}
		after = batch[len(batch)-1].Seq
	}
	r.pending.Wait()
	return nil
}

// abortStaleUploads aborts incomplete multipart uploads under the
// destination prefix that no checkpoint of the journal refers to: they were
// started by a run killed before it could record them. The journal lock
// guarantees no other voyageur process of this journal is using them; the
// destination prefix belongs to voyageur (docs/config.md).
func (r *run) abortStaleUploads(ctx context.Context) error {
	// Every job of the journal: jobs of one watch share it, and their
	// destinations may overlap.
	jobs, err := r.j.Jobs()
	if err != nil {
		return err
	}
	known := map[string]bool{}
	for _, name := range jobs {
		cps, err := r.j.Section(name).Checkpoints()
		if err != nil {
			return err
		}
		for _, cp := range cps {
			known[cp.UploadID] = true
		}
	}
	for up, err := range r.job.Dest.ListMultipartUploads(ctx, r.job.DestPrefix) {
		if err != nil {
			if backends.UploadListingRefused(err) {
				r.log.Warn("the destination does not list multipart uploads: stale uploads are not cleaned up", "err", err)
				return nil
			}
			return fmt.Errorf("destination %s: %w", r.job.Dest.Name(), err)
		}
		if known[up.UploadID] || !r.ownsUpload(up.Key) {
			continue
		}
		if r.opts.DryRun {
			r.log.Info("would abort stale multipart upload", "key", up.Key, "upload", up.UploadID)
			continue
		}
		r.log.Info("aborting stale multipart upload", "key", up.Key, "upload", up.UploadID)
		if err := r.job.Dest.AbortMultipart(ctx, up.Key, up.UploadID); err != nil && !errors.Is(err, backends.ErrNoSuchUpload) {
			// The store answered the listing: a refused abort (a
			// missing permission) costs storage, not data.
			r.log.Warn("could not abort stale multipart upload", "key", up.Key, "upload", up.UploadID, "err", err)
		}
	}
	return nil
}

// ownsUpload reports whether this run may abort an upload to destKey: a
// shard aborts only its own keys' uploads, since the others' checkpoints
// are in journals it cannot see. Hashed names do not tell the source key,
// so a sharded run leaves them all (see docs/scaling.md).
func (r *run) ownsUpload(destKey string) bool {
	if r.job.Shard == nil {
		return true
	}
	if e := r.job.Encryption; e != nil && e.HashedNames {
		return false
	}
	return r.keyRange().Contains(r.job.SourcePrefix + strings.TrimPrefix(destKey, r.job.DestPrefix))
}

// process works on one queued change. It returns the error of a change
// that failed (and stays queued, with its attempt counted), nil when it
// succeeded or was interrupted by ctx.
func (r *run) process(ctx context.Context, c journal.Change) error {
	var err error
	switch c.Op {
	case journal.OpPut:
		err = r.put(ctx, c)
	case journal.OpDelete:
		err = r.del(ctx, c)
	default:
		err = fmt.Errorf("unknown change %d", c.Op)
	}
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		// Interrupted: the change stays queued as it was for the next run.
		return nil
	}
	r.failChange(c, err)
	return err
}

// failChange counts a change that failed and records the failure in the
// journal, where the change stays queued with its attempt counted.
func (r *run) failChange(c journal.Change, err error) {
	r.noteFailure(c.Key, c.Op.String(), err)
	r.count.Done(0)
	if o := r.opts.Observer; o != nil {
		o.Failed(r.job.Name)
	}
	r.mu.Lock()
	r.failedKeys[c.Key] = true
	r.mu.Unlock()
	if ferr := r.jb.Fail(c, err); ferr != nil {
		r.log.Error("could not record failure in journal", "key", c.Key, "err", ferr)
	}
}

// failedEarlier reports whether key failed earlier in this run.
func (r *run) failedEarlier(key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failedKeys[key]
}

// noteFailure counts, lists and logs one failed object.
func (r *run) noteFailure(key, op string, err error) {
	r.log.Warn("object failed", "key", key, "op", op, "err", err)
	r.count.Fail(key, op, err)
}

func (r *run) summary() replicator.Summary {
	return r.count.Summary(r.job.Name, r.opts.DryRun, r.started)
}
