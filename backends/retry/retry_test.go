package retry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/voyageur-ca/voyageur/backends"
	"github.com/voyageur-ca/voyageur/backends/fs"
)

// fake is a real local bucket with scripted failures. Each hook gets the
// 1-based number of the call and returns the error to fail it with (nil:
// pass it to the local bucket).
type fake struct {
	backends.Bucket
	mu    sync.Mutex
	calls map[string]int

	put   func(n int, r io.ReadSeeker) error
	part  func(n int, r io.ReadSeeker) error
	stat  func(ctx context.Context, n int) error
	get   func(ctx context.Context, n int, opts backends.GetOptions) error
	body  func(n int, body io.ReadCloser) io.ReadCloser // wraps the body of open n
	list  func(n int, opts backends.ListOptions) (failAfter int, err error)
	uplds func(n int) (failAfter int, err error)

	opens []backends.GetOptions
	lists []backends.ListOptions
}

func newFake(t *testing.T) *fake {
	b, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return &fake{Bucket: b, calls: map[string]int{}}
}

func (f *fake) count(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[op]++
	return f.calls[op]
}

func (f *fake) Put(ctx context.Context, key string, r io.ReadSeeker, size int64, opts backends.PutOptions) (backends.ObjectInfo, error) {
	if n := f.count("put"); f.put != nil {
		if err := f.put(n, r); err != nil {
			return backends.ObjectInfo{}, fmt.Errorf("put %s: %w", key, err)
		}
	}
	return f.Bucket.Put(ctx, key, r, size, opts)
}

func (f *fake) UploadPart(ctx context.Context, key, id string, number int32, r io.ReadSeeker, size int64, opts backends.PartOptions) (string, error) {
	if n := f.count("part"); f.part != nil {
		if err := f.part(n, r); err != nil {
			return "", fmt.Errorf("upload part %d of %s: %w", number, key, err)
		}
	}
	return f.Bucket.UploadPart(ctx, key, id, number, r, size, opts)
}

func (f *fake) Stat(ctx context.Context, key, versionID string) (backends.ObjectInfo, error) {
	if n := f.count("stat"); f.stat != nil {
		if err := f.stat(ctx, n); err != nil {
			return backends.ObjectInfo{}, fmt.Errorf("stat %s: %w", key, err)
		}
	}
	return f.Bucket.Stat(ctx, key, versionID)
}

func (f *fake) Get(ctx context.Context, key string, opts backends.GetOptions) (io.ReadCloser, backends.ObjectInfo, error) {
	n := f.count("get")
	f.mu.Lock()
	f.opens = append(f.opens, opts)
	f.mu.Unlock()
	if f.get != nil {
		if err := f.get(ctx, n, opts); err != nil {
			return nil, backends.ObjectInfo{}, fmt.Errorf("get %s: %w", key, err)
		}
	}
	rc, oi, err := f.Bucket.Get(ctx, key, opts)
	if err == nil && f.body != nil {
		rc = f.body(n, rc)
	}
	return rc, oi, err
}

// failing yields failAfter entries of seq and then err (no error: all).
func failing[T any](seq iter.Seq2[T, error], failAfter int, err error) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		i := 0
		for v, e := range seq {
			if err != nil && i == failAfter {
				break
			}
			i++
			if !yield(v, e) || e != nil {
				return
			}
		}
		if err != nil {
			var zero T
			yield(zero, err)
		}
	}
}

func (f *fake) List(ctx context.Context, opts backends.ListOptions) iter.Seq2[backends.ObjectInfo, error] {
	n := f.count("list")
	f.mu.Lock()
	f.lists = append(f.lists, opts)
	f.mu.Unlock()
	var after int
	var err error
	if f.list != nil {
		after, err = f.list(n, opts)
	}
	return failing(f.Bucket.List(ctx, opts), after, err)
}

func (f *fake) ListMultipartUploads(ctx context.Context, prefix string) iter.Seq2[backends.Upload, error] {
	n := f.count("uploads")
	var after int
	var err error
	if f.uplds != nil {
		after, err = f.uplds(n)
	}
	return failing(f.Bucket.ListMultipartUploads(ctx, prefix), after, err)
}

var (
	slowDown = &backends.HTTPError{Status: 503, Code: "SlowDown", Message: "please reduce your request rate"}
	internal = &backends.HTTPError{Status: 500, Code: "InternalError"}
	denied   = &backends.HTTPError{Status: 403, Code: "AccessDenied"}
	badReq   = &backends.HTTPError{Status: 400, Code: "InvalidArgument"}
	reset    = &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
)

// sleeps records backoffs without waiting.
type sleeps struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *sleeps) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.d = append(s.d, d)
	s.mu.Unlock()
	return ctx.Err()
}

func wrap(f *fake, s *sleeps) backends.Bucket {
	return Wrap(f, Policy{Base: 100 * time.Millisecond, Max: time.Second, Sleep: s.sleep})
}

func seed(t *testing.T, f *fake, key string, data []byte) backends.ObjectInfo {
	t.Helper()
	oi, err := f.Bucket.Put(context.Background(), key, bytes.NewReader(data), int64(len(data)), backends.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return oi
}

func readAll(t *testing.T, b backends.Bucket, key string, opts backends.GetOptions) ([]byte, error) {
	t.Helper()
	rc, _, err := b.Get(context.Background(), key, opts)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func TestPutRewindsBeforeEachTry(t *testing.T) {
	f := newFake(t)
	var seen []string
	f.put = func(n int, r io.ReadSeeker) error {
		buf := make([]byte, 3)
		io.ReadFull(r, buf) // a failing try consumes part of the body
		seen = append(seen, string(buf))
		r.Seek(-3, io.SeekCurrent)
		if n <= 2 {
			io.ReadFull(r, buf)
			return slowDown
		}
		return nil
	}
	s := &sleeps{}
	body := strings.NewReader("XXhello")
	body.Seek(2, io.SeekStart) // the payload starts mid-stream
	oi, err := wrap(f, s).Put(context.Background(), "a", body, 5, backends.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if f.calls["put"] != 3 || len(s.d) != 2 {
		t.Errorf("%d tries and %d sleeps, want 3 and 2", f.calls["put"], len(s.d))
	}
	if !slices.Equal(seen, []string{"hel", "hel", "hel"}) {
		t.Errorf("each try started with %q, want the payload's start every time", seen)
	}
	if got, _ := readAll(t, f.Bucket, "a", backends.GetOptions{}); string(got) != "hello" || oi.Size != 5 {
		t.Errorf("stored %q (size %d), want hello", got, oi.Size)
	}
}

func TestUploadPartRewinds(t *testing.T) {
	f := newFake(t)
	f.part = func(n int, r io.ReadSeeker) error {
		if n == 1 {
			io.Copy(io.Discard, r)
			return reset
		}
		return nil
	}
	b := wrap(f, &sleeps{})
	ctx := context.Background()
	id, err := b.CreateMultipart(ctx, "m", backends.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	etag, err := b.UploadPart(ctx, "m", id, 1, strings.NewReader("part one"), 8, backends.PartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	parts, err := b.ListParts(ctx, "m", id)
	if err != nil || len(parts) != 1 || parts[0].Size != 8 || parts[0].ETag != etag || f.calls["part"] != 2 {
		t.Errorf("parts %+v (%v) after %d tries, want one 8-byte part after 2", parts, err, f.calls["part"])
	}
}

func TestGiveUp(t *testing.T) {
	f := newFake(t)
	f.put = func(int, io.ReadSeeker) error { return slowDown }
	s := &sleeps{}
	var logs bytes.Buffer
	b := Wrap(f, Policy{Base: 100 * time.Millisecond, Max: time.Second, Sleep: s.sleep,
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	_, err := b.Put(context.Background(), "ledgers/a.csv", strings.NewReader("x"), 1, backends.PutOptions{})
	const want = "put ledgers/a.csv: giving up after 5 tries: SlowDown (503): please reduce your request rate"
	if err == nil || err.Error() != want {
		t.Fatalf("error %q, want %q", err, want)
	}
	var he *backends.HTTPError
	if !errors.As(err, &he) || he.Status != 503 || !backends.IsRetryable(err) {
		t.Errorf("final error does not wrap the last cause: %#v", err)
	}
	if f.calls["put"] != 5 || len(s.d) != 4 {
		t.Errorf("%d tries and %d sleeps, want 5 and 4", f.calls["put"], len(s.d))
	}
	for i, d := range s.d {
		ceil := min(time.Second, 100*time.Millisecond<<i)
		if d < ceil/2 || d > ceil {
			t.Errorf("backoff %d is %v, want in [%v, %v]", i+1, d, ceil/2, ceil)
		}
	}
	if n := strings.Count(logs.String(), "retrying storage request"); n != 4 {
		t.Errorf("%d retry log records, want 4:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "op=put key=ledgers/a.csv") {
		t.Errorf("retry log does not name the operation and key:\n%s", logs.String())
	}
}

func TestBackoffIsCapped(t *testing.T) {
	for _, tc := range []struct {
		name      string
		base, max time.Duration
		doublings int // after which the cap holds
	}{
		{"storage", 200 * time.Millisecond, 10 * time.Second, 6},
		{"listen", time.Second, 32 * time.Second, 5},
		{"queue", 2 * time.Second, 5 * time.Minute, 8},
	} {
		for n := 1; n <= 200; n++ {
			want := min(tc.base<<min(n-1, tc.doublings), tc.max)
			for range 20 {
				if d := Backoff(tc.base, tc.max, n); d < want/2 || d > want {
					t.Fatalf("%s: Backoff(%d) = %v, want in [%v, %v]", tc.name, n, d, want/2, want)
				}
			}
		}
	}
}

func TestNoRetryForClientErrors(t *testing.T) {
	for _, cause := range []error{backends.ErrNotExist, denied, badReq, backends.ErrPreconditionFailed} {
		f := newFake(t)
		f.stat = func(context.Context, int) error { return cause }
		s := &sleeps{}
		_, err := wrap(f, s).Stat(context.Background(), "k", "")
		if !errors.Is(err, cause) || f.calls["stat"] != 1 || len(s.d) != 0 {
			t.Errorf("%v: error %v after %d tries and %d sleeps, want the cause after 1 try", cause, err, f.calls["stat"], len(s.d))
		}
		if want := "stat k: " + cause.Error(); err.Error() != want {
			t.Errorf("error %q, want it unchanged: %q", err, want)
		}
	}
}

func TestRetriesServerErrorsAndResets(t *testing.T) {
	f := newFake(t)
	seed(t, f, "k", []byte("v"))
	script := []error{internal, reset, &backends.HTTPError{Status: 429}, &backends.HTTPError{Status: 502}}
	f.stat = func(_ context.Context, n int) error {
		if n <= len(script) {
			return script[n-1]
		}
		return nil
	}
	oi, err := wrap(f, &sleeps{}).Stat(context.Background(), "k", "")
	if err != nil || oi.Size != 1 || f.calls["stat"] != 5 {
		t.Errorf("stat: %+v %v after %d tries, want success on try 5", oi, err, f.calls["stat"])
	}
}

func TestStopsAtAClientErrorAfterRetries(t *testing.T) {
	f := newFake(t)
	f.stat = func(_ context.Context, n int) error {
		if n == 1 {
			return slowDown
		}
		return backends.ErrNotExist
	}
	_, err := wrap(f, &sleeps{}).Stat(context.Background(), "k", "")
	if !backends.IsNotExist(err) || f.calls["stat"] != 2 {
		t.Fatalf("error %v after %d tries, want not-exist after 2", err, f.calls["stat"])
	}
	if want := "stat k: failed on try 2: object does not exist"; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
}

func TestCancelStopsRetrying(t *testing.T) {
	f := newFake(t)
	f.stat = func(context.Context, int) error { return slowDown }
	ctx, cancel := context.WithCancel(context.Background())
	b := Wrap(f, Policy{Sleep: func(ctx context.Context, d time.Duration) error {
		cancel()
		return ctx.Err()
	}})
	_, err := b.Stat(ctx, "k", "")
	if !errors.Is(err, context.Canceled) || backends.IsRetryable(err) || f.calls["stat"] != 1 {
		t.Errorf("error %v after %d tries, want a non-retryable cancellation after 1", err, f.calls["stat"])
	}
	if !strings.Contains(err.Error(), "SlowDown") {
		t.Errorf("error %q does not carry the last cause", err)
	}
}

func TestAttemptTimeout(t *testing.T) {
	f := newFake(t)
	seed(t, f, "k", []byte("v"))
	f.stat = func(ctx context.Context, n int) error {
		if n == 1 {
			<-ctx.Done() // a hung request
			return ctx.Err()
		}
		return nil
	}
	b := Wrap(f, Policy{AttemptTimeout: 20 * time.Millisecond, Sleep: (&sleeps{}).sleep})
	if _, err := b.Stat(context.Background(), "k", ""); err != nil || f.calls["stat"] != 2 {
		t.Errorf("stat: %v after %d tries, want success on try 2", err, f.calls["stat"])
	}
}

// cutBody delivers at most n bytes and then fails with err.
type cutBody struct {
	io.ReadCloser
	n   int
	err error
}

func (c *cutBody) Read(p []byte) (int, error) {
	if c.n <= 0 {
		return 0, c.err
	}
	if len(p) > c.n {
		p = p[:c.n]
	}
	n, err := c.ReadCloser.Read(p)
	c.n -= n
	return n, err
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

func TestGetResumesACutBody(t *testing.T) {
	f := newFake(t)
	data := pattern(100)
	oi := seed(t, f, "obj", data)
	f.get = func(_ context.Context, n int, _ backends.GetOptions) error {
		if n == 1 {
			return slowDown // opening is retried too
		}
		return nil
	}
	f.body = func(n int, rc io.ReadCloser) io.ReadCloser {
		switch n {
		case 2:
			return &cutBody{rc, 30, reset}
		case 3:
			return &cutBody{rc, 40, io.EOF} // ends early: a cut body
		}
		return rc
	}
	got, err := readAll(t, wrap(f, &sleeps{}), "obj", backends.GetOptions{Offset: 0, Length: -1})
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes (%v), want the 100 bytes", len(got), err)
	}
	var offs []string
	for _, o := range f.opens {
		offs = append(offs, fmt.Sprintf("%d+%d", o.Offset, o.Length))
		if o.IfMatch != "" && o.IfMatch != oi.ETag {
			t.Errorf("reopen pinned to %q, want %q", o.IfMatch, oi.ETag)
		}
	}
	if want := []string{"0+-1", "0+-1", "30+70", "70+30"}; !slices.Equal(offs, want) {
		t.Errorf("opens at %q, want %q", offs, want)
	}
	if f.opens[2].IfMatch != oi.ETag || f.opens[3].IfMatch != oi.ETag {
		t.Errorf("reopens not pinned to the ETag: %+v", f.opens)
	}
}

func TestGetRangeResumes(t *testing.T) {
	f := newFake(t)
	data := pattern(100)
	seed(t, f, "obj", data)
	f.body = func(n int, rc io.ReadCloser) io.ReadCloser {
		if n == 1 {
			return &cutBody{rc, 5, reset}
		}
		return rc
	}
	got, err := readAll(t, wrap(f, &sleeps{}), "obj", backends.GetOptions{Offset: 10, Length: 20})
	if err != nil || !bytes.Equal(got, data[10:30]) {
		t.Fatalf("read %v (%v), want bytes 10..29", got, err)
	}
	if o := f.opens[1]; o.Offset != 15 || o.Length != 15 {
		t.Errorf("reopened at %d+%d, want 15+15", o.Offset, o.Length)
	}
}

func TestGetObjectReplacedDuringResume(t *testing.T) {
	f := newFake(t)
	seed(t, f, "obj", pattern(100))
	f.body = func(n int, rc io.ReadCloser) io.ReadCloser {
		if n == 1 {
			seed(t, f, "obj", []byte("a different object")) // replaced meanwhile
			return &cutBody{rc, 10, reset}
		}
		return rc
	}
	_, err := readAll(t, wrap(f, &sleeps{}), "obj", backends.GetOptions{})
	if !errors.Is(err, backends.ErrPreconditionFailed) {
		t.Errorf("read error %v, want ErrPreconditionFailed: bytes of two objects must never be spliced", err)
	}
}

func TestGetGivesUpWithoutProgress(t *testing.T) {
	f := newFake(t)
	seed(t, f, "obj", pattern(100))
	f.body = func(n int, rc io.ReadCloser) io.ReadCloser { return &cutBody{rc, 0, reset} }
	_, err := readAll(t, wrap(f, &sleeps{}), "obj", backends.GetOptions{})
	if err == nil || !strings.HasPrefix(err.Error(), "get obj: giving up after 5 tries: ") || !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("read error %v, want giving up after 5 tries with the reset as cause", err)
	}
	if f.calls["get"] != 5 {
		t.Errorf("%d opens, want 5", f.calls["get"])
	}
}

// stallBody blocks until its request's context is done.
type stallBody struct {
	io.ReadCloser
	ctx context.Context
}

func (s *stallBody) Read([]byte) (int, error) {
	<-s.ctx.Done()
	return 0, s.ctx.Err()
}

func TestGetStalledBodyIsReopened(t *testing.T) {
	f := newFake(t)
	data := pattern(50)
	seed(t, f, "obj", data)
	var stallCtx context.Context
	f.get = func(ctx context.Context, n int, _ backends.GetOptions) error {
		if n == 1 {
			stallCtx = ctx
		}
		return nil
	}
	f.body = func(n int, rc io.ReadCloser) io.ReadCloser {
		if n == 1 {
			return &stallBody{rc, stallCtx}
		}
		return rc
	}
	b := Wrap(f, Policy{AttemptTimeout: 20 * time.Millisecond, Sleep: (&sleeps{}).sleep})
	got, err := readAll(t, b, "obj", backends.GetOptions{})
	if err != nil || !bytes.Equal(got, data) || f.calls["get"] != 2 {
		t.Errorf("read %d bytes (%v) with %d opens, want all after 2", len(got), err, f.calls["get"])
	}
}

func seedKeys(t *testing.T, f *fake, n int) []string {
	t.Helper()
	var keys []string
	for i := range n {
		k := fmt.Sprintf("k%02d", i)
		seed(t, f, k, []byte(k))
		keys = append(keys, k)
	}
	return keys
}

func collect[T any](seq iter.Seq2[T, error]) ([]T, error) {
	var out []T
	for v, err := range seq {
		if err != nil {
			return out, err
		}
		out = append(out, v)
	}
	return out, nil
}

func TestListResumesAfterLastKey(t *testing.T) {
	f := newFake(t)
	keys := seedKeys(t, f, 10)
	f.list = func(n int, _ backends.ListOptions) (int, error) {
		switch n {
		case 1:
			return 4, slowDown
		case 2:
			return 0, reset // a failure before any entry: no progress
		case 3:
			return 3, internal
		}
		return 0, nil
	}
	objs, err := collect(wrap(f, &sleeps{}).List(context.Background(), backends.ListOptions{Prefix: "k"}))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range objs {
		got = append(got, o.Key)
	}
	if !slices.Equal(got, keys) {
		t.Errorf("listed %q, want each key once: %q", got, keys)
	}
	var after []string
	for _, o := range f.lists {
		after = append(after, o.StartAfter)
		if o.Prefix != "k" {
			t.Errorf("resumed with prefix %q", o.Prefix)
		}
	}
	if want := []string{"", "k03", "k03", "k06"}; !slices.Equal(after, want) {
		t.Errorf("listings started after %q, want %q", after, want)
	}
}

func TestListGivesUp(t *testing.T) {
	f := newFake(t)
	seedKeys(t, f, 3)
	f.list = func(int, backends.ListOptions) (int, error) { return 0, slowDown }
	_, err := collect(wrap(f, &sleeps{}).List(context.Background(), backends.ListOptions{Prefix: "k"}))
	if err == nil || !strings.Contains(err.Error(), "giving up after 5 tries") || f.calls["list"] != 5 {
		t.Errorf("error %v after %d listings, want giving up after 5", err, f.calls["list"])
	}
	f.list = func(int, backends.ListOptions) (int, error) { return 1, denied }
	f.calls = map[string]int{}
	objs, err := collect(wrap(f, &sleeps{}).List(context.Background(), backends.ListOptions{}))
	if !errors.Is(err, denied) || len(objs) != 1 || f.calls["list"] != 1 {
		t.Errorf("client error: %v after %d entries and %d listings, want it at once", err, len(objs), f.calls["list"])
	}
}

func TestVersionListing(t *testing.T) {
	f := newFake(t)
	keys := seedKeys(t, f, 5)
	// Before anything was yielded, a version listing starts over.
	f.list = func(n int, _ backends.ListOptions) (int, error) {
		if n == 1 {
			return 0, slowDown
		}
		return 0, nil
	}
	objs, err := collect(wrap(f, &sleeps{}).List(context.Background(), backends.ListOptions{Versions: true}))
	if err != nil || len(objs) != len(keys) || f.calls["list"] != 2 {
		t.Errorf("%d entries (%v) after %d listings, want all after 2", len(objs), err, f.calls["list"])
	}
	// After entries were yielded it cannot resume: the error is yielded.
	f.calls = map[string]int{}
	f.list = func(n int, _ backends.ListOptions) (int, error) { return 2, slowDown }
	objs, err = collect(wrap(f, &sleeps{}).List(context.Background(), backends.ListOptions{Versions: true}))
	if !errors.Is(err, slowDown) || len(objs) != 2 || f.calls["list"] != 1 {
		t.Errorf("%d entries, error %v, %d listings; want 2 entries, then the error, from one listing", len(objs), err, f.calls["list"])
	}
}

func TestListStopsEarly(t *testing.T) {
	f := newFake(t)
	seedKeys(t, f, 5)
	n := 0
	for _, err := range wrap(f, &sleeps{}).List(context.Background(), backends.ListOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		if n++; n == 2 {
			break
		}
	}
	if n != 2 || f.calls["list"] != 1 {
		t.Errorf("stopped after %d entries and %d listings", n, f.calls["list"])
	}
}

func TestListMultipartUploads(t *testing.T) {
	f := newFake(t)
	ctx := context.Background()
	for _, k := range []string{"u1", "u2"} {
		if _, err := f.Bucket.CreateMultipart(ctx, k, backends.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	f.uplds = func(n int) (int, error) {
		if n == 1 {
			return 0, internal
		}
		return 0, nil
	}
	ups, err := collect(wrap(f, &sleeps{}).ListMultipartUploads(ctx, "u"))
	if err != nil || len(ups) != 2 || f.calls["uploads"] != 2 {
		t.Errorf("%+v (%v) after %d listings, want 2 uploads after 2", ups, err, f.calls["uploads"])
	}
	f.calls = map[string]int{}
	f.uplds = func(int) (int, error) { return 1, internal }
	ups, err = collect(wrap(f, &sleeps{}).ListMultipartUploads(ctx, "u"))
	if !errors.Is(err, internal) || len(ups) != 1 || f.calls["uploads"] != 1 {
		t.Errorf("%d uploads, error %v, %d listings; want 1, then the error, from one listing", len(ups), err, f.calls["uploads"])
	}
}

func TestListStalledPageIsRetried(t *testing.T) {
	f := newFake(t)
	keys := seedKeys(t, f, 4)
	stalled := &stallList{fake: f}
	b := Wrap(stalled, Policy{AttemptTimeout: 20 * time.Millisecond, Sleep: (&sleeps{}).sleep})
	objs, err := collect(b.List(context.Background(), backends.ListOptions{}))
	if err != nil || len(objs) != len(keys) || stalled.calls != 2 {
		t.Errorf("%d entries (%v) after %d listings, want all after 2", len(objs), err, stalled.calls)
	}
	if stalled.after != "k01" {
		t.Errorf("resumed after %q, want k01", stalled.after)
	}
}

// stallList hangs after two entries on its first listing, as a store whose
// next page never comes.
type stallList struct {
	*fake
	calls int
	after string
}

func (s *stallList) List(ctx context.Context, opts backends.ListOptions) iter.Seq2[backends.ObjectInfo, error] {
	s.calls++
	first := s.calls == 1
	s.after = opts.StartAfter
	return func(yield func(backends.ObjectInfo, error) bool) {
		i := 0
		for oi, err := range s.fake.Bucket.List(ctx, opts) {
			if first && i == 2 {
				<-ctx.Done()
				yield(backends.ObjectInfo{}, ctx.Err())
				return
			}
			i++
			if !yield(oi, err) {
				return
			}
		}
	}
}
