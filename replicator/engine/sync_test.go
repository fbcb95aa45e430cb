package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/voyageur-ca/voyageur/backends"
	"github.com/voyageur-ca/voyageur/internal/testenv"
	"github.com/voyageur-ca/voyageur/replicator"
)

const ps = testenv.PS

// env is the test job with the engine's helpers.
type env struct{ *testenv.Env }

func newEnv(t *testing.T) *env { return &env{testenv.New(t)} }

func (e *env) sync(t *testing.T, opts Options) replicator.Summary {
	t.Helper()
	s, err := Sync(context.Background(), e.J, e.Job, opts)
	if err != nil {
		t.Fatalf("sync: %v (summary %+v)", err, s)
	}
	return s
}

func TestSyncCopiesThenSkips(t *testing.T) {
	e := newEnv(t)
	sizes := map[string]int{"empty": 0, "one": 1, "below": ps - 1, "exact": ps, "above": ps + 1, "multi/three-parts": 2*ps + 12345}
	var total int64
	for k, n := range sizes {
		testenv.Put(t, e.Src, "in/"+k, testenv.RandBytes(n, uint64(n)), backends.PutOptions{ContentType: "text/csv", Metadata: map[string]string{"origin": k}})
		total += int64(n)
	}
	testenv.Put(t, e.Src, "outside/x", []byte("not in the prefix"), backends.PutOptions{})

	s := e.sync(t, Options{})
	if s.Copied != int64(len(sizes)) || s.Failed != 0 || s.BytesWritten != total || s.BytesRead != total {
		t.Fatalf("first run: %+v, want %d copied, %d bytes", s, len(sizes), total)
	}
	for k, n := range sizes {
		data, info := testenv.Get(t, e.Dst, "out/"+k)
		if !bytes.Equal(data, testenv.RandBytes(n, uint64(n))) {
			t.Errorf("%s: replica bytes differ", k)
		}
		if info.ContentType != "text/csv" || info.Metadata["origin"] != k {
			t.Errorf("%s: content type %q metadata %v", k, info.ContentType, info.Metadata)
		}
	}
	if got := testenv.Keys(t, e.Dst, ""); len(got) != len(sizes) {
		t.Errorf("destination holds %v", got)
	}
	s = e.sync(t, Options{})
	if s.Copied != 0 || s.Skipped != int64(len(sizes)) || s.BytesWritten != 0 {
		t.Errorf("second run copied again: %+v", s)
	}
	if n, _ := e.J.Section("t").QueueLen(); n != 0 {
		t.Errorf("queue holds %d items after a clean run", n)
	}
}

func TestSyncFollowsChangesAndDeletes(t *testing.T) {
	e := newEnv(t)
	e.Job.Deletes = replicator.DeletesPropagate
	for _, k := range []string{"a", "b", "c", "d"} {
		testenv.Put(t, e.Src, "in/"+k, []byte("v1 "+k), backends.PutOptions{})
	}
	e.sync(t, Options{})
	testenv.Put(t, e.Src, "in/a", []byte("v2 a, longer"), backends.PutOptions{})
	if err := e.Src.Delete(context.Background(), "in/b", ""); err != nil {
		t.Fatal(err)
	}
	testenv.Put(t, e.Src, "in/e", []byte("new"), backends.PutOptions{})

	dry := e.sync(t, Options{DryRun: true})
	if dry.Copied != 2 || dry.Deleted != 1 {
		t.Errorf("dry run plan: %+v, want 2 copies and 1 delete", dry)
	}
	if got := testenv.Keys(t, e.Dst, ""); strings.Join(got, ",") != "out/a,out/b,out/c,out/d" {
		t.Fatalf("dry run changed the destination: %v", got)
	}
	if data, _ := testenv.Get(t, e.Dst, "out/a"); string(data) != "v1 a" {
		t.Fatalf("dry run overwrote a: %q", data)
	}

	s := e.sync(t, Options{})
	if s.Copied != 2 || s.Deleted != 1 || s.Skipped != 2 {
		t.Errorf("summary %+v, want 2 copied, 1 deleted, 2 skipped", s)
	}
	if got := testenv.Keys(t, e.Dst, ""); strings.Join(got, ",") != "out/a,out/c,out/d,out/e" {
		t.Errorf("destination: %v", got)
	}
	if data, _ := testenv.Get(t, e.Dst, "out/a"); string(data) != "v2 a, longer" {
		t.Errorf("a not updated: %q", data)
	}
}

func TestDeletesKeepLeavesReplicas(t *testing.T) {
	e := newEnv(t)
	testenv.Put(t, e.Src, "in/a", []byte("a"), backends.PutOptions{})
	e.sync(t, Options{})
	if err := e.Src.Delete(context.Background(), "in/a", ""); err != nil {
		t.Fatal(err)
	}
	if s := e.sync(t, Options{}); s.Deleted != 0 {
		t.Errorf("deletes: keep deleted %d", s.Deleted)
	}
	if got := testenv.Keys(t, e.Dst, ""); len(got) != 1 {
		t.Errorf("replica gone: %v", got)
	}
}

func TestMaxDeleteRefusesAndDeletesNothing(t *testing.T) {
	e := newEnv(t)
	e.Job.Deletes = replicator.DeletesPropagate
	e.Job.MaxDelete = 3
	for i := range 10 {
		testenv.Put(t, e.Src, "in/"+string(rune('a'+i)), []byte{byte(i)}, backends.PutOptions{})
	}
	e.sync(t, Options{})
	for _, k := range testenv.Keys(t, e.Src, "in/") {
		if err := e.Src.Delete(context.Background(), k, ""); err != nil {
			t.Fatal(err)
		}
	}
	_, err := Sync(context.Background(), e.J, e.Job, Options{})
	if !errors.Is(err, ErrTooManyDeletes) || !strings.Contains(err.Error(), "max_delete (3)") {
		t.Fatalf("err = %v, want a max_delete refusal", err)
	}
	if got := testenv.Keys(t, e.Dst, ""); len(got) != 10 {
		t.Errorf("replicas deleted despite the refusal: %d left", len(got))
	}
	// An emptied source is refused under the default limit too.
	e.Job.MaxDelete = 0
	if _, err := Sync(context.Background(), e.J, e.Job, Options{}); !errors.Is(err, ErrTooManyDeletes) {
		t.Fatalf("empty source with default limit: err = %v", err)
	}
	if got := testenv.Keys(t, e.Dst, ""); len(got) != 10 {
		t.Errorf("replicas deleted by an empty listing: %d left", len(got))
	}
}

func TestFilterSelectsKeys(t *testing.T) {
	e := newEnv(t)
	var err error
	if e.Job.Filter, err = replicator.NewFilter([]string{"**/*.csv"}, []string{"tmp/**"}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"in/a.csv", "in/d/b.csv", "in/tmp/c.csv", "in/e.txt"} {
		testenv.Put(t, e.Src, k, []byte(k), backends.PutOptions{})
	}
	e.sync(t, Options{})
	if got := testenv.Keys(t, e.Dst, ""); strings.Join(got, ",") != "out/a.csv,out/d/b.csv" {
		t.Errorf("destination: %v", got)
	}
}

// failingParts makes UploadPart fail for parts numbered from `from` on,
// standing in for a run that dies mid-object. A failing part first waits
// for the parts before it, so that what was stored is predictable even
// though parts upload concurrently.
type failingParts struct {
	backends.Bucket
	from int32
	done atomic.Int32
}

func (f *failingParts) UploadPart(ctx context.Context, key, id string, n int32, r io.ReadSeeker, size int64, opts backends.PartOptions) (string, error) {
	if n >= f.from {
		for deadline := time.Now().Add(10 * time.Second); f.done.Load() < f.from-1 && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
		return "", fmt.Errorf("upload part %d of %s: injected failure", n, key)
	}
	etag, err := f.Bucket.UploadPart(ctx, key, id, n, r, size, opts)
	if err == nil {
		f.done.Add(1)
	}
	return etag, err
}

func TestInterruptedMultipartResumes(t *testing.T) {
	e := newEnv(t)
	e.Job.Transfer.Concurrency = 1
	data := testenv.RandBytes(5*ps+100, 7)
	testenv.Put(t, e.Src, "in/big", data, backends.PutOptions{ContentType: "application/octet-stream"})

	dst := e.Job.Dest
	e.Job.Dest = &failingParts{Bucket: dst, from: 4}
	s, err := Sync(context.Background(), e.J, e.Job, Options{})
	if err != nil || s.Failed != 1 || len(s.Failures) != 1 || !strings.Contains(s.Failures[0].Error, "upload part 4 of out/big") {
		t.Fatalf("interrupted run: %+v, %v", s, err)
	}
	cp, ok, err := e.J.Section("t").Checkpoint("in/big")
	if err != nil || !ok || len(cp.Parts) != 3 {
		t.Fatalf("checkpoint after 3 parts: %+v %v %v", cp, ok, err)
	}

	e.Job.Dest = dst
	s = e.sync(t, Options{})
	// The scan after the resume finds the object up to date: it was
	// copied by this run, not skipped.
	if s.Copied != 1 || s.Skipped != 0 || s.BytesWritten != int64(len(data))-3*ps {
		t.Fatalf("resume: %+v, want one copy, no skip, only the last %d bytes sent", s, int64(len(data))-3*ps)
	}
	got, _ := testenv.Get(t, e.Dst, "out/big")
	if !bytes.Equal(got, data) {
		t.Fatal("resumed replica differs from the source")
	}
	for up, err := range e.Dst.ListMultipartUploads(context.Background(), "") {
		t.Errorf("upload left behind: %+v %v", up, err)
	}
	if _, ok, _ := e.J.Section("t").Checkpoint("in/big"); ok {
		t.Error("checkpoint kept after completion")
	}
}

func TestStaleUploadsAreAborted(t *testing.T) {
	e := newEnv(t)
	if _, err := e.Dst.CreateMultipart(context.Background(), "out/orphan", backends.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	e.sync(t, Options{})
	for up, err := range e.Dst.ListMultipartUploads(context.Background(), "") {
		t.Errorf("stale upload not aborted: %+v %v", up, err)
	}
}

func TestSourceChangedSinceCheckpointStartsOver(t *testing.T) {
	e := newEnv(t)
	e.Job.Transfer.Concurrency = 1
	testenv.Put(t, e.Src, "in/big", testenv.RandBytes(3*ps, 1), backends.PutOptions{})
	dst := e.Job.Dest
	e.Job.Dest = &failingParts{Bucket: dst, from: 2}
	if s, _ := Sync(context.Background(), e.J, e.Job, Options{}); s.Failed != 1 {
		t.Fatalf("interrupted run: %+v", s)
	}
	changed := testenv.RandBytes(3*ps, 2)
	testenv.Put(t, e.Src, "in/big", changed, backends.PutOptions{})
	e.Job.Dest = dst
	if s := e.sync(t, Options{}); s.Copied != 1 || s.BytesWritten != int64(len(changed)) {
		t.Fatalf("run after change: %+v", s)
	}
	if got, _ := testenv.Get(t, e.Dst, "out/big"); !bytes.Equal(got, changed) {
		t.Fatal("replica is not the changed source")
	}
	for up, err := range e.Dst.ListMultipartUploads(context.Background(), "") {
		t.Errorf("upload left behind: %+v %v", up, err)
	}
}

func TestPartSizeGrowsForHugeObjects(t *testing.T) {
	if got := replicator.PartSizeFor(10<<30, ps); got != ps {
		t.Errorf("10 GiB: part size %d", got)
	}
	huge := int64(5) << 40 // 5 TiB
	got := replicator.PartSizeFor(huge, ps)
	if (huge+got-1)/got > replicator.MaxParts || got%(1<<20) != 0 {
		t.Errorf("5 TiB: part size %d gives %d parts", got, (huge+got-1)/got)
	}
}

// syntheticSource lists n generated keys without storing them.
type syntheticSource struct {
	backends.Bucket // nil: the scan must only list
	n               int
}

func (s syntheticSource) Name() string { return "synthetic" }

func (s syntheticSource) List(ctx context.Context, opts backends.ListOptions) iter.Seq2[backends.ObjectInfo, error] {
	return func(yield func(backends.ObjectInfo, error) bool) {
		for i := range s.n {
			o := backends.ObjectInfo{Key: fmt.Sprintf("in/%09d/ledger.tmp", i), Size: 1 << 20, ETag: fmt.Sprintf("%032x", i)}
			if !yield(o, nil) {
				return
			}
		}
	}
}

// TestScanMemoryDoesNotGrowWithListing lists a million keys and checks the
// heap stays small: the listing is streamed, never collected.
func TestScanMemoryDoesNotGrowWithListing(t *testing.T) {
	if testing.Short() {
		t.Skip("lists a million keys")
	}
	e := newEnv(t)
	e.Job.Source = syntheticSource{n: 1_000_000}
	var err error
	if e.Job.Filter, err = replicator.NewFilter(nil, []string{"*.tmp"}); err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	var peak atomic.Uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > peak.Load() {
				peak.Store(ms.HeapAlloc)
			}
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	})
	s := e.sync(t, Options{})
	close(done)
	wg.Wait()
	if s.Copied != 0 || s.Failed != 0 {
		t.Fatalf("summary %+v", s)
	}
	// A million collected ObjectInfos would take well over 200 MiB.
	if p := peak.Load(); p > 64<<20 {
		t.Errorf("heap peaked at %d MiB while listing a million keys", p>>20)
	} else {
		t.Logf("heap peaked at %.1f MiB while listing a million keys", float64(p)/(1<<20))
	}
}

// An object that shrank below the part size while its upload was
// interrupted is copied in one PUT, not as an empty multipart upload.
func TestObjectShrunkSinceTheCheckpoint(t *testing.T) {
	e := newEnv(t)
	e.Job.Transfer.Concurrency = 1
	testenv.Put(t, e.Src, "in/big", testenv.RandBytes(3*ps, 5), backends.PutOptions{})
	dst := e.Job.Dest
	e.Job.Dest = &failingParts{Bucket: dst, from: 2}
	Sync(context.Background(), e.J, e.Job, Options{})
	testenv.Put(t, e.Src, "in/big", nil, backends.PutOptions{})
	e.Job.Dest = dst
	if s := e.sync(t, Options{}); s.Copied != 1 || s.Failed != 0 {
		t.Fatalf("summary %+v", s)
	}
	if got, _ := testenv.Get(t, e.Dst, "out/big"); len(got) != 0 {
		t.Errorf("replica holds %d bytes, want 0", len(got))
	}
	for up, err := range e.Dst.ListMultipartUploads(context.Background(), "") {
		t.Errorf("upload left behind: %+v %v", up, err)
	}
}

// A sync interrupted after its listing reports the interruption, and its
// run is not recorded as complete.
func TestInterruptedSyncSaysSo(t *testing.T) {
	e := newEnv(t)
	e.Job.Transfer.Bandwidth = 1 << 20
	testenv.Put(t, e.Src, "in/big", testenv.RandBytes(2*ps, 6), backends.PutOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	time.AfterFunc(500*time.Millisecond, cancel) // as SIGTERM would
	if s, err := Sync(ctx, e.J, e.Job, Options{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted sync returned %v (%+v)", err, s)
	}
	runs, _ := e.J.Section("t").Runs(1)
	if len(runs) != 1 || runs[0].Complete {
		t.Errorf("run record %+v", runs)
	}
}
