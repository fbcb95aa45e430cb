package replicator

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/voyageur-ca/voyageur/backends"
	"github.com/voyageur-ca/voyageur/journal"
)

// chanSource delivers the event batches sent on its channel.
type chanSource struct {
	events chan []Event
	acked  chan error
}

func (s *chanSource) Name() string { return "test" }

func (s *chanSource) Run(ctx context.Context, intake Intake, gap func()) error {
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
	e.job.Deletes = DeletesPropagate
	put(t, e.src, "in/before", []byte("written while nobody watched"), backends.PutOptions{})
	src := &chanSource{events: make(chan []Event), acked: make(chan error)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Watch(ctx, e.j, e.job, WatchOptions{Sources: []EventSource{src}, Rescan: time.Hour}) }()

	has := func(key string) func() bool {
		return func() bool { return slices.Contains(keys(t, e.dst, ""), key) }
	}
	waitUntil(t, "the reconcile scan to copy in/before", has("out/before"))

	put(t, e.src, "in/new", []byte("fresh"), backends.PutOptions{})
	put(t, e.src, "elsewhere/x", []byte("not ours"), backends.PutOptions{})
	src.events <- []Event{
		{Key: "in/new", Op: journal.OpPut, Sequencer: "0055AED6DCD90281E5", Time: time.Now(), Source: "test"},
		{Key: "elsewhere/x", Op: journal.OpPut, Source: "test"},
	}
	if err := <-src.acked; err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the event to be replicated", has("out/new"))

	// An older event (by sequencer) of the same key is dropped; a delete
	// whose source object still exists deletes nothing.
	src.events <- []Event{{Key: "in/new", Op: journal.OpDelete, Sequencer: "0055AED6DCD90281E4", Source: "test"}}
	<-src.acked
	if err := e.src.Delete(context.Background(), "in/before", ""); err != nil {
		t.Fatal(err)
	}
	src.events <- []Event{{Key: "in/before", Op: journal.OpDelete, Source: "test"}}
	<-src.acked
	waitUntil(t, "the delete to follow", func() bool { return !has("out/before")() })
	if !has("out/new")() || has("out/x")() {
		t.Errorf("destination: %v", keys(t, e.dst, ""))
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
	fp := &failingPuts{Bucket: e.job.Dest}
	fp.n.Store(1)
	e.job.Dest = fp
	put(t, e.src, "in/a", []byte("ledger"), backends.PutOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- Watch(ctx, e.j, e.job, WatchOptions{}) }()
	waitUntil(t, "the retry to succeed", func() bool { return slices.Contains(keys(t, e.dst, ""), "out/a") })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
