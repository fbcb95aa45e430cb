package engine

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/voyageur-ca/voyageur/backends"
	"github.com/voyageur-ca/voyageur/internal/testenv"
	"github.com/voyageur-ca/voyageur/journal"
	"github.com/voyageur-ca/voyageur/replicator"
	"github.com/voyageur-ca/voyageur/replicator/events"
)

// chanSource delivers the event batches sent on its channel.
type chanSource struct {
	events chan []events.Event
	acked  chan error
}

func (s *chanSource) Name() string { return "test" }

func (s *chanSource) Run(ctx context.Context, intake events.Intake, gap func()) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case batch := <-s.events:
			s.acked <- intake(ctx, batch)
		}
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestWatch(t *testing.T) {
	e := newEnv(t)
	e.Job.Deletes = replicator.DeletesPropagate
	testenv.Put(t, e.Src, "in/before", []byte("written while nobody watched"), backends.PutOptions{})
	src := &chanSource{events: make(chan []events.Event), acked: make(chan error)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Watch(ctx, e.J, e.Job, WatchOptions{Sources: []events.EventSource{src}, Rescan: time.Hour})
	}()

	has := func(key string) func() bool {
		return func() bool { return slices.Contains(testenv.Keys(t, e.Dst, ""), key) }
	}
	waitUntil(t, "the reconcile scan to copy in/before", has("out/before"))

	testenv.Put(t, e.Src, "in/new", []byte("fresh"), backends.PutOptions{})
	testenv.Put(t, e.Src, "elsewhere/x", []byte("not ours"), backends.PutOptions{})
	src.events <- []events.Event{
		{Key: "in/new", Op: journal.OpPut, Sequencer: "0055AED6DCD90281E5", Time: time.Now(), Source: "test"},
		{Key: "elsewhere/x", Op: journal.OpPut, Source: "test"},
	}
	if err := <-src.acked; err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the event to be replicated", has("out/new"))

	// An older event (by sequencer) of the same key is dropped; a delete
	// whose source object still exists deletes nothing.
	src.events <- []events.Event{{Key: "in/new", Op: journal.OpDelete, Sequencer: "0055AED6DCD90281E4", Source: "test"}}
	<-src.acked
	if err := e.Src.Delete(context.Background(), "in/before", ""); err != nil {
		t.Fatal(err)
	}
	src.events <- []events.Event{{Key: "in/before", Op: journal.OpDelete, Source: "test"}}
	<-src.acked
	waitUntil(t, "the delete to follow", func() bool { return !has("out/before")() })
	if !has("out/new")() || has("out/x")() {
		t.Errorf("destination: %v", testenv.Keys(t, e.Dst, ""))
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Watch returned %v after cancel", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Watch did not stop")
	}
}

// failingPuts fails the first n PUTs.
type failingPuts struct {
	backends.Bucket
	n atomic.Int32
}

func (f *failingPuts) Put(ctx context.Context, key string, r io.ReadSeeker, size int64, opts backends.PutOptions) (backends.ObjectInfo, error) {
	if f.n.Add(-1) >= 0 {
		return backends.ObjectInfo{}, fmt.Errorf("put %s: injected failure", key)
	}
	return f.Bucket.Put(ctx, key, r, size, opts)
}

// A change that fails is retried after a while; the watcher goes on.
func TestWatchRetriesAFailure(t *testing.T) {
	e := newEnv(t)
	fp := &failingPuts{Bucket: e.Job.Dest}
	fp.n.Store(1)
	e.Job.Dest = fp
	testenv.Put(t, e.Src, "in/a", []byte("ledger"), backends.PutOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- Watch(ctx, e.J, e.Job, WatchOptions{}) }()
	waitUntil(t, "the retry to succeed", func() bool { return slices.Contains(testenv.Keys(t, e.Dst, ""), "out/a") })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// gapSource reports a gap, which starts a reconcile scan, for every value
// sent on its channel.
type gapSource chan struct{}

func (gapSource) Name() string { return "gaps" }

func (s gapSource) Run(ctx context.Context, _ events.Intake, gap func()) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s:
			gap()
		}
	}
}

// TestWatchRecordsRuns: every reconcile scan that ends logs its size and
// records a journal run of what the watch did since the previous one, so
// that status shows a watch's last run and last complete success.
func TestWatchRecordsRuns(t *testing.T) {
	e := newEnv(t)
	fp := &failingPuts{Bucket: e.Job.Dest}
	fp.n.Store(1)
	e.Job.Dest = fp
	for _, k := range []string{"in/a", "in/b", "in/c"} {
		testenv.Put(t, e.Src, k, []byte(k), backends.PutOptions{})
	}
	logs := &testenv.LogBuffer{}
	gaps := make(gapSource)
	obs := &countingObserver{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Watch(ctx, e.J, e.Job, WatchOptions{Sources: []events.EventSource{gaps}, Logger: slog.New(slog.NewTextHandler(logs, nil)), Observer: obs})
	}()
	runs := func() []journal.Run {
		rs, err := e.J.Section("t").Runs(10)
		if err != nil {
			t.Fatal(err)
		}
		return rs
	}
	waitUntil(t, "the first scan's run", func() bool { return len(runs()) == 1 })
	// The failed PUT is retried after 2 s.
	// Replicated means counted, not only present at the destination or
	// committed: a gap scan that ends between the commit and the count
	// would move the copy into a later run. The observer hears of a
	// replica after it is counted.
	waitUntil(t, "every object to be replicated", func() bool { return obs.replicated.Load() == 3 })
	for n := 2; n <= 3; n++ {
		gaps <- struct{}{}
		waitUntil(t, "the next scan's run", func() bool { return len(runs()) == n })
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	rs := runs() // newest first
	var copied, failed int64
	for i, r := range rs {
		copied, failed = copied+r.Copied, failed+r.Failed
		if i > 0 && r.Finished.After(rs[i-1].Started) {
			t.Errorf("runs overlap: %+v", rs)
		}
	}
	if copied != 3 || failed != 1 {
		t.Errorf("runs %+v: want 3 copies and the one failure between them", rs)
	}
	if last := rs[0]; !last.Complete || last.Failed != 0 || last.Error != "" || last.Skipped != 3 || last.Copied != 0 {
		t.Errorf("last run %+v: want a complete success that skipped the 3 replicas", last)
	}
	out := logs.String()
	if !strings.Contains(out, `msg="reconcile scan done" job=t listed=3 queued=3`) || !strings.Contains(out, `msg="reconcile scan done" job=t listed=3 queued=0`) {
		t.Errorf("logs lack the scans' sizes:\n%s", out)
	}
}

// TestWatchSummary: the watcher logs what it did once a period, and
// nothing while idle.
func TestWatchSummary(t *testing.T) {
	e := newEnv(t)
	logs := &testenv.LogBuffer{}
	r, err := newRun(e.J, e.Job, Options{Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	w := &watcher{r: r}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.reporter(ctx, 10*time.Millisecond); close(done) }()
	time.Sleep(50 * time.Millisecond)
	r.count.Copied.Add(2)
	r.count.BytesRead.Add(300)
	r.count.BytesWritten.Add(200)
	r.count.Failed.Add(1)
	r.count.Skipped.Add(5) // a scan's skips are no activity
	waitUntil(t, "the summary", func() bool { return strings.Contains(logs.String(), "replication summary") })
	time.Sleep(50 * time.Millisecond)
	cancel()
	<-done
	want := `msg="replication summary" job=t replicated=2 bytes_read=300 bytes_written=200 deleted=0 failed=1 queue_depth=0` + "\n"
	if out := logs.String(); !strings.HasSuffix(out, want) || strings.Count(out, "\n") != 1 {
		t.Errorf("log:\n%s\nwant one line ending in %s", out, want)
	}
}

// countingObserver counts the replicas a watch reports.
type countingObserver struct{ replicated atomic.Int64 }

func (o *countingObserver) Replicated(string, int64, time.Time) { o.replicated.Add(1) }
func (o *countingObserver) Deleted(string)                      {}
func (o *countingObserver) Failed(string)                       {}
func (o *countingObserver) Reconciled(string, time.Time)        {}
