package multipart

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"weak"

	"golang.org/x/time/rate"

	"github.com/voyageur-ca/voyageur/backends"
	"github.com/voyageur-ca/voyageur/backends/fs"
	"github.com/voyageur-ca/voyageur/journal"
)

const partSize = fs.MinPartSize

// memSource serves data in parts of partSize, one read per part, and
// records how far reads run ahead of Gather.
type memSource struct {
	data    []byte
	budget  Budget
	failAt  int // Read fails at this index; -1: never
	mu      sync.Mutex
	started int // reads begun
	gathered,
	ahead int // most reads begun and not gathered at once
	held atomic.Int64 // buffers handed out and not yet given back
}

func (s *memSource) Reads() int { return (len(s.data) + partSize - 1) / partSize }

func (s *memSource) bounds(i int) (int, int) {
	off := i * partSize
	return off, min(off+partSize, len(s.data))
}

func (s *memSource) Need(i int) []int64 {
	off, end := s.bounds(i)
	return []int64{int64(end - off)}
}

func (s *memSource) Read(_ context.Context, i int, bufs [][]byte) ([]byte, error) {
	s.held.Add(1)
	s.mu.Lock()
	s.started++
	s.ahead = max(s.ahead, s.started-s.gathered)
	s.mu.Unlock()
	if i == s.failAt {
		s.free(bufs[0])
		return nil, errors.New("read failed")
	}
	off, end := s.bounds(i)
	copy(bufs[0], s.data[off:end])
	// Reads take a while, so that later ones could run ahead.
	time.Sleep(time.Millisecond)
	return bufs[0], nil
}

func (s *memSource) free(b []byte) {
	s.held.Add(-1)
	s.budget.Free(b)
}

func (s *memSource) Gather(i int, buf []byte) ([]Part, error) {
	s.mu.Lock()
	s.gathered++
	s.mu.Unlock()
	off, _ := s.bounds(i)
	return []Part{{
		Body: bytes.NewReader(buf), Size: int64(len(buf)),
		State: journal.PartState{End: int64(off + len(buf))},
		Done:  func() { s.free(buf) },
	}}, nil
}

func (s *memSource) Drop(buf []byte) { s.free(buf) }

func newBucket(t *testing.T) *fs.Bucket {
	t.Helper()
	b, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func randomData(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSendWindowAndComplete: reads never run more than the window ahead of
// Gather, every part is checkpointed once, the memory of every part is
// given back, and the completed object holds the source bytes.
func TestSendWindowAndComplete(t *testing.T) {
	ctx := context.Background()
	b := newBucket(t)
	data := randomData(t, 12*partSize+1234)
	lim := NewLimits(64*partSize, 2, nil, partSize)
	src := &memSource{data: data, budget: lim, failAt: -1}
	id, err := b.CreateMultipart(ctx, "obj", backends.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var saved []int32
	up := Upload{Bucket: b, Key: "obj", ID: id, Budget: lim, Window: 3, First: 1,
		Saved: func(p journal.PartState) error { saved = append(saved, p.Number); return nil }}
	parts, err := Send(ctx, up, src)
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) != 13 || len(saved) != 13 {
		t.Fatalf("%d parts sent, %d saved; want 13", len(parts), len(saved))
	}
	if src.ahead > 3 {
		t.Errorf("reads ran %d ahead of Gather; the window is 3", src.ahead)
	}
	if n := src.held.Load(); n != 0 {
		t.Errorf("%d buffers not given back", n)
	}
	obj, err := Complete(ctx, b, "obj", id, parts)
	if err != nil {
		t.Fatal(err)
	}
	got := read(t, b, "obj")
	if !bytes.Equal(got, data) {
		t.Fatalf("completed object differs from the source (%d bytes, want %d)", len(got), len(data))
	}
	// The answer of a completion was lost: the upload is gone, and the
	// object is recognized as the one the parts assemble to.
	again, err := Complete(ctx, b, "obj", id, parts)
	if err != nil || again.ETag != obj.ETag {
		t.Fatalf("second Complete: %+v, %v; want the object %s recognized", again, err, obj.ETag)
	}
	other := append([]journal.PartState(nil), parts...)
	other[0].ETag = "00000000000000000000000000000000"
	if _, ok := Completed(ctx, b, "obj", other); ok {
		t.Error("Completed recognized an object that other parts assemble to")
	}
}

func read(t *testing.T, b backends.Bucket, key string) []byte {
	t.Helper()
	rc, _, err := b.Get(context.Background(), key, backends.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestSendFailureGivesMemoryBack: a failed read stops the upload, and
// every buffer taken, gathered or not, is back in the budget.
func TestSendFailureGivesMemoryBack(t *testing.T) {
	ctx := context.Background()
	b := newBucket(t)
	lim := NewLimits(4*partSize, 2, nil, partSize)
	src := &memSource{data: randomData(t, 10*partSize), budget: lim, failAt: 5}
	id, err := b.CreateMultipart(ctx, "obj", backends.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = Send(ctx, Upload{Bucket: b, Key: "obj", ID: id, Budget: lim, Window: 4, First: 1}, src)
	if err == nil || err.Error() != "read failed" {
		t.Fatalf("Send: %v, want the read's error", err)
	}
	if n := src.held.Load(); n != 0 {
		t.Errorf("%d buffers not given back", n)
	}
	// The whole budget is free again.
	short, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := lim.Alloc(short, partSize, partSize, partSize, partSize); err != nil {
		t.Errorf("the budget is not whole again: %v", err)
	}
	if err := Abort(ctx, b, "obj", id); err != nil {
		t.Fatal(err)
	}
	if err := Abort(ctx, b, "obj", id); err != nil {
		t.Errorf("aborting an upload already gone: %v", err)
	}
}

// TestResume keeps the parts the destination confirms: all of them for
// plain uploads, only the leading run for sealed ones.
func TestResume(t *testing.T) {
	ctx := context.Background()
	b := newBucket(t)
	lim := NewLimits(16*partSize, 4, nil, partSize)
	src := &memSource{data: randomData(t, 4*partSize), budget: lim, failAt: -1}
	id, err := b.CreateMultipart(ctx, "obj", backends.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	parts, err := Send(ctx, Upload{Bucket: b, Key: "obj", ID: id, Budget: lim, Window: 4, First: 1}, src)
	if err != nil {
		t.Fatal(err)
	}
	done := append([]journal.PartState(nil), parts...)
	done[1].ETag = "ffffffffffffffffffffffffffffffff" // part 2 as the store does not hold it
	numbers := func(ps []journal.PartState) (ns []int32) {
		for _, p := range ps {
			ns = append(ns, p.Number)
		}
		return ns
	}
	kept, err := Resume(ctx, b, "obj", id, done, false)
	if err != nil || len(kept) != 3 || kept[1].Number != 3 {
		t.Errorf("plain resume kept %v (%v), want parts 1, 3, 4", numbers(kept), err)
	}
	kept, err = Resume(ctx, b, "obj", id, done, true)
	if err != nil || len(kept) != 1 || kept[0].Number != 1 {
		t.Errorf("sealed resume kept %v (%v), want part 1", numbers(kept), err)
	}
	if err := Abort(ctx, b, "obj", id); err != nil {
		t.Fatal(err)
	}
	if _, err := Resume(ctx, b, "obj", id, done, true); !errors.Is(err, backends.ErrNoSuchUpload) {
		t.Errorf("resume of an aborted upload: %v, want ErrNoSuchUpload", err)
	}
}

// TestLimits: the budget blocks what does not fit, reuses freed buffers of
// its classes, and shrinks what turned out small.
func TestLimits(t *testing.T) {
	ctx := context.Background()
	lim := NewLimits(3<<20, 1, nil, 1<<20)
	bufs, err := lim.Alloc(ctx, 1<<20, 1<<20, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := lim.Alloc(short, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Alloc over the budget: %v, want it to wait", err)
	}
	lim.Free(bufs[0])
	again, err := lim.Alloc(ctx, 900<<10)
	if err != nil {
		t.Fatal(err)
	}
	if &again[0][:1][0] != &bufs[0][:1][0] || len(again[0]) != 900<<10 {
		t.Error("a freed buffer of the class was not reused")
	}
	small := lim.Shrink(again[0][:10])
	if cap(small) > 16 {
		t.Errorf("Shrink kept %d bytes of room", cap(small))
	}
	lim.Free(small)
	lim.Free(bufs[1])
	lim.Free(bufs[2])
	// A request larger than the budget goes through when nothing is held.
	big, err := lim.Alloc(ctx, 8<<20)
	if err != nil || len(big[0]) != 8<<20 {
		t.Fatalf("Alloc larger than the budget: %v", err)
	}
	lim.Free(big[0])
	if _, err := lim.Alloc(ctx, 1<<20, 1<<20, 1<<20); err != nil {
		t.Fatalf("the budget is not whole again: %v", err)
	}
}

// TestLimitsLetGoOfDroppedBuffers: a buffer the free list gives up, to
// make room or to a caller that then frees it as an odd size, is left to
// the collector; nothing but the budget's count remembers it.
func TestLimitsLetGoOfDroppedBuffers(t *testing.T) {
	ctx := context.Background()
	lim := NewLimits(2<<20, 1, nil, 1<<20, 2<<20)
	bufs, err := lim.Alloc(ctx, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	dropped := weak.Make(&bufs[0][:1][0])
	lim.Free(bufs[0]) // on the free list of its class
	// The other class needs all the room: the free 1 MiB buffer gives it.
	other, err := lim.Alloc(ctx, 2<<20)
	if err != nil {
		t.Fatal(err)
	}
	bufs = nil
	runtime.GC()
	if dropped.Value() != nil {
		t.Error("a buffer dropped from the free list is still reachable")
	}
	// Taken off the list, then freed as a slice of another capacity.
	lim.Free(other[0])
	again, err := lim.Alloc(ctx, 2<<20)
	if err != nil {
		t.Fatal(err)
	}
	taken := weak.Make(&again[0][:1][0])
	lim.Free(again[0][:1:1])
	other, again = nil, nil
	runtime.GC()
	if taken.Value() != nil {
		t.Error("a buffer taken off the free list is still reachable through it")
	}
	runtime.KeepAlive(lim) // the free list is what must not hold them
}

// gatedSource holds every read but the first until released, so that a
// part can only go out while later reads are still running.
type gatedSource struct {
	memSource
	gate chan struct{}
}

func (s *gatedSource) Read(ctx context.Context, i int, bufs [][]byte) ([]byte, error) {
	if i > 0 {
		select {
		case <-s.gate:
		case <-ctx.Done():
			s.free(bufs[0])
			return nil, ctx.Err()
		}
	}
	return s.memSource.Read(ctx, i, bufs)
}

// sendInBackground starts an upload of src to "obj" in b (window 4) and
// returns its ID and where Send's error will come.
func sendInBackground[R any](t *testing.T, b *fs.Bucket, budget Budget, src Source[R]) (string, chan error) {
	t.Helper()
	ctx := context.Background()
	id, err := b.CreateMultipart(ctx, "obj", backends.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := Send(ctx, Upload{Bucket: b, Key: "obj", ID: id, Budget: budget, Window: 4, First: 1}, src)
		errc <- err
	}()
	return id, errc
}

// TestFirstPartLeavesWhileReading: from the first finished read on, bytes
// leave for the destination while later reads are still in flight; the
// upload of part 1 waits for none of them.
func TestFirstPartLeavesWhileReading(t *testing.T) {
	ctx := context.Background()
	b := newBucket(t)
	lim := NewLimits(16*partSize, 4, nil, partSize)
	src := &gatedSource{memSource{data: randomData(t, 6*partSize), budget: lim, failAt: -1}, make(chan struct{})}
	id, errc := sendInBackground(t, b, lim, src)
	deadline := time.Now().Add(30 * time.Second)
	for {
		parts, err := b.ListParts(ctx, "obj", id)
		if err != nil {
			t.Fatal(err)
		}
		if len(parts) == 1 && parts[0].Number == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("part 1 was not uploaded while the later reads were held (parts %v)", parts)
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(src.gate)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// TestBandwidthWaitHoldsNoSlot: a request waiting for the wire limit's
// tokens holds no transfer slot, so a small request behind it gets the
// only slot first.
func TestBandwidthWaitHoldsNoSlot(t *testing.T) {
	ctx := context.Background()
	lim := NewLimits(1<<20, 1, rate.NewLimiter(rate.Limit(1<<20), 64<<10))
	big := make(chan struct{})
	go func() {
		release, err := lim.Slot(ctx, 4<<20) // four seconds of tokens
		if err == nil {
			release()
		}
		close(big)
	}()
	time.Sleep(100 * time.Millisecond) // let the big request start waiting
	release, err := lim.Slot(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-big:
		t.Error("the small request got its slot only after the big one was done")
	default:
	}
	release()
	<-big
}

// heldSlots is a Budget whose first Slot waits until open is closed, as a
// part waiting for the wire limit does.
type heldSlots struct {
	*Limits
	open  chan struct{}
	first atomic.Bool
}

func (h *heldSlots) Slot(ctx context.Context, n int64) (func(), error) {
	if h.first.CompareAndSwap(false, true) {
		select {
		case <-h.open:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return h.Limits.Slot(ctx, n)
}

// TestGatherGoesOnWhileAPartWaits: while part 1 waits for the wire limit,
// the reads and Gather of the later parts go on (they free their read
// buffers and, in sync, compress: a wire wait must not stop the CPU work
// behind it); the parts then leave in order.
func TestGatherGoesOnWhileAPartWaits(t *testing.T) {
	ctx := context.Background()
	b := newBucket(t)
	lim := &heldSlots{Limits: NewLimits(16*partSize, 4, nil, partSize), open: make(chan struct{})}
	src := &memSource{data: randomData(t, 6*partSize), budget: lim, failAt: -1}
	id, errc := sendInBackground(t, b, lim, src)
	deadline := time.Now().Add(30 * time.Second)
	for {
		src.mu.Lock()
		gathered := src.gathered
		src.mu.Unlock()
		// Part 1 waiting, part 2 queued for the pacer, part 3 gathered
		// and waiting its turn (before, gathering stopped at part 1).
		if gathered >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d parts gathered while part 1 waited for the wire, want 3", gathered)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if parts, err := b.ListParts(ctx, "obj", id); err != nil || len(parts) != 0 {
		t.Fatalf("parts %v (%v) uploaded before part 1 had its turn", parts, err)
	}
	close(lim.open)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	parts, err := b.ListParts(ctx, "obj", id)
	if err != nil || len(parts) != 6 {
		t.Fatalf("parts %v, %v; want 6", parts, err)
	}
}
