package engine

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/voyageur-ca/voyageur/backends"
	"github.com/voyageur-ca/voyageur/backends/retry"
	"github.com/voyageur-ca/voyageur/journal"
	"github.com/voyageur-ca/voyageur/replicator"
	"github.com/voyageur-ca/voyageur/replicator/events"
)

// WatchOptions configure a watcher.
type WatchOptions struct {
	Sources []events.EventSource
	// Rescan is the period of the reconcile scan that catches lost
	// events (default 1 h).
	Rescan   time.Duration
	Logger   *slog.Logger
	Observer Observer
}

// Retry delays of a change that failed: the store or the network may need
// time.
const (
	retryBase = 2 * time.Second
	retryMax  = 5 * time.Minute
)

// watcher keeps one job's replica current: sources put changes in the
// journal queue, a dispatcher hands them to workers (one change per key at
// a time), and reconcile scans queue whatever events missed.
type watcher struct {
	r     *run
	rec   chan struct{} // a reconcile is wanted
	wake  chan struct{} // the queue may hold work
	mu    sync.Mutex
	busy  map[string]bool      // keys being worked on
	retry map[string]time.Time // keys whose change failed: not before
	full  bool                 // rescan the queue from its start
	seqs  map[string]string    // newest S3 sequencer seen per key
	// listed counts the objects the source's listings yielded: a reconcile
	// scan's size.
	listed *countingLister
}

// summaryEvery is how often a watcher logs what it did, when it did
// anything: a line per object would drown the log at the default level.
const summaryEvery = time.Minute

// maxSequencers bounds the memory of sequencers; past it they are
// forgotten (they only spare work: every change is checked at the source).
const maxSequencers = 100_000

// Watch replicates job continuously until ctx is done: a reconcile scan at
// start, then changes from the event sources as they come, a reconcile
// after every gap a source reports and every Rescan. Each change is durable
// in the journal before its source acknowledges it. When ctx ends, intake
// stops, work in flight is abandoned at its last checkpoint (its change
// stays queued) and Watch returns nil. It returns an error when the journal
// fails or an event source cannot run.
func Watch(ctx context.Context, j *journal.Journal, job replicator.Job, opts WatchOptions) error {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Rescan <= 0 {
		opts.Rescan = time.Hour
	}
	w := &watcher{
		rec: make(chan struct{}, 1), wake: make(chan struct{}, 1),
		busy: map[string]bool{}, retry: map[string]time.Time{}, seqs: map[string]string{},
		listed: &countingLister{Bucket: job.Source},
	}
	job.Source = w.listed
	// Its counters' ObjectsQueued count what the scans queue (events are
	// queued apart).
	r, err := newRun(j, job, Options{Logger: opts.Logger, Observer: opts.Observer})
	if err != nil {
		return err
	}
	r.kick = w.kick
	w.r = r
	if err := r.prepare(ctx); err != nil {
		return err
	}
	w.reconcileSoon()

	g, gctx := errgroup.WithContext(ctx)
	for range r.job.Transfer.Concurrency {
		g.Go(func() error { w.worker(gctx); return nil })
	}
	g.Go(func() error { return w.dispatcher(gctx) })
	g.Go(func() error { return w.reconciler(gctx, opts.Rescan, opts.Observer) })
	g.Go(func() error { w.reporter(gctx, summaryEvery); return nil })
	for _, src := range opts.Sources {
		g.Go(func() error {
			if err := src.Run(gctx, w.intake, w.reconcileSoon); err != nil {
				return fmt.Errorf("event source %s of job %s: %w", src.Name(), job.Name, err)
			}
			return nil
		})
	}
	err = g.Wait()
	if ctx.Err() != nil && (err == nil || errors.Is(err, context.Canceled)) {
		return nil
	}
	return err
}

func (w *watcher) kick() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *watcher) reconcileSoon() {
	select {
	case w.rec <- struct{}{}:
	default:
	}
}

// intake is the Intake of every source: it keeps the job's events, drops
// those an event already seen supersedes, and queues them durably.
func (w *watcher) intake(_ context.Context, evs []events.Event) error {
	job := w.r.job
	var changes []journal.Change
	w.mu.Lock()
	for _, e := range evs {
		if e.Bucket != "" && job.SourceBucket != "" && e.Bucket != job.SourceBucket {
			continue
		}
		if !strings.HasPrefix(e.Key, job.SourcePrefix) || !job.Filter.Match(strings.TrimPrefix(e.Key, job.SourcePrefix)) {
			continue
		}
		if !w.r.keyRange().Contains(e.Key) {
			continue // another shard's: its own queue has the event too
		}
		if e.Op == journal.OpDelete && job.Deletes != replicator.DeletesPropagate {
			continue
		}
		if prev := w.seqs[e.Key]; events.SequencerLess(e.Sequencer, prev) {
			continue // an older event than one already queued
		}
		if e.Sequencer != "" {
			if len(w.seqs) >= maxSequencers {
				clear(w.seqs)
			}
			w.seqs[e.Key] = e.Sequencer
		}
		// No version pin from an event: a replayed or late event must not
		// copy an older version over a newer replica. Its ETag pins the
		// read instead, and a changed object is statted again.
		changes = append(changes, journal.Change{
			Key: e.Key, Op: e.Op, ETag: e.ETag, Size: e.Size,
			Reason: "event:" + e.Source, EventTime: e.Time,
		})
	}
	w.mu.Unlock()
	if len(changes) == 0 {
		return nil
	}
	if err := w.r.jb.Enqueue(changes); err != nil {
		return err
	}
	w.kick()
	return nil
}

// dispatcher hands queued changes to the workers, never two of one key at
// once, and holds back failed ones until their retry time.
func (w *watcher) dispatcher(ctx context.Context) error {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var after uint64
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-w.wake:
		case <-tick.C:
			after = 0 // retries and deferred keys: look again from the start
		}
		w.mu.Lock()
		if w.full {
			after, w.full = 0, false
		}
		w.mu.Unlock()
		for {
			batch, err := w.r.jb.Pending(after, enqueueBatch)
			if err != nil {
				return err
			}
			if len(batch) == 0 {
				break
			}
			for _, c := range batch {
				after = c.Seq
				if !w.claim(c) {
					continue
				}
				select {
				case w.r.work <- c:
				case <-ctx.Done():
					return nil
				}
			}
		}
	}
}

// claim marks c's key busy unless it is, or c waits for a retry.
func (w *watcher) claim(c journal.Change) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.busy[c.Key] || time.Now().Before(w.retry[c.Key]) {
		return false
	}
	w.busy[c.Key] = true
	return true
}

func (w *watcher) worker(ctx context.Context) {
	for {
		var c journal.Change
		select {
		case <-ctx.Done():
			return
		case c = <-w.r.work:
		}
		err := w.r.process(ctx, c)
		w.mu.Lock()
		delete(w.busy, c.Key)
		delete(w.retry, c.Key)
		if err != nil {
			w.retry[c.Key] = time.Now().Add(retry.Backoff(retryBase, retryMax, int(c.Attempts)+1))
		}
		// A newer change of this key may have been passed over.
		w.full = true
		w.mu.Unlock()
		w.kick()
	}
}

// reconciler runs reconcile scans: when asked (start, gaps) and every
// period. The scan queues what differs from the index; the dispatcher
// does the work. Every scan that ends records, as a journal run, what the
// watcher did since the previous one ended.
func (w *watcher) reconciler(ctx context.Context, period time.Duration, obs Observer) error {
	t := time.NewTicker(period)
	defer t.Stop()
	since, before := w.r.started, w.r.count.Counts()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-w.rec:
		case <-t.C:
		}
		w.r.log.Info("reconcile scan")
		// Replicas recorded from now on were copied, not skipped by this
		// scan (only this goroutine runs scans).
		w.r.started = time.Now()
		listed, queued := w.listed.n.Load(), w.r.count.ObjectsQueued.Load()
		complete, err := w.r.scan(ctx)
		if ctx.Err() != nil {
			return nil
		}
		switch {
		case err != nil:
			// A failed scan is retried at the next period or gap; the
			// events keep flowing meanwhile.
			w.r.log.Error("reconcile scan failed", "err", err)
		default:
			w.r.log.Info("reconcile scan done", "listed", w.listed.n.Load()-listed,
				"queued", w.r.count.ObjectsQueued.Load()-queued, "duration", time.Since(w.r.started).Round(time.Millisecond))
			if obs != nil {
				obs.Reconciled(w.r.job.Name, time.Now())
			}
		}
		now := w.r.count.Counts()
		w.record(since, now.Minus(before), complete, err)
		since, before = time.Now(), now
	}
}

// record appends one journal run: what the watcher did from since to now.
// It makes status's last run and last complete success (a complete scan,
// and nothing failed since the previous one) describe a watch as they do
// a sync. A journal that cannot take it is logged, not fatal: the queue
// and the index are what replication needs.
func (w *watcher) record(since time.Time, d replicator.Counts, complete bool, err error) {
	if err := w.r.jb.AddRun(d.Record(since, time.Now(), complete, err)); err != nil {
		w.r.log.Error("could not record the reconcile in the journal", "err", err)
	}
}

// reporter logs, every period, what the watcher did since its last line,
// and nothing when it did nothing: an idle watch keeps a quiet log.
func (w *watcher) reporter(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	last := w.r.count.Counts()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := w.r.count.Counts()
		d := now.Minus(last)
		last = now
		if d.Copied+d.Deleted+d.Failed == 0 {
			continue
		}
		queued, err := w.r.jb.QueueLen()
		if err != nil {
			queued = -1 // as the queue depth metric says it
		}
		w.r.log.Info("replication summary", "replicated", d.Copied, "bytes_read", d.BytesRead, "bytes_written", d.BytesWritten,
			"deleted", d.Deleted, "failed", d.Failed, "queue_depth", queued)
	}
}

// countingLister counts the objects its bucket's listings yield.
type countingLister struct {
	backends.Bucket
	n atomic.Int64
}

func (l *countingLister) List(ctx context.Context, opts backends.ListOptions) iter.Seq2[backends.ObjectInfo, error] {
	return func(yield func(backends.ObjectInfo, error) bool) {
		for o, err := range l.Bucket.List(ctx, opts) {
			if err == nil {
				l.n.Add(1)
			}
			if !yield(o, err) {
				return
			}
		}
	}
}
