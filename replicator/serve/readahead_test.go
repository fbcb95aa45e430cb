package serve

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/voyageur-ca/voyageur/backends"
	"github.com/voyageur-ca/voyageur/backends/retry"
)

// jaggedReader returns its data in reads of varying size, then err.
type jaggedReader struct {
	data []byte
	r    *rand.Rand
	err  error
	read atomic.Int64
}

func (j *jaggedReader) Read(p []byte) (int, error) {
	if len(j.data) == 0 {
		return 0, j.err
	}
	n := min(len(p), len(j.data), 1+j.r.IntN(100_000))
	copy(p, j.data[:n])
	j.data = j.data[n:]
	j.read.Add(int64(n))
	return n, nil
}

// TestReadAhead: the bytes come out as they went in, and the reader's own
// error after them, unchanged (a truncation stays one).
func TestReadAhead(t *testing.T) {
	data := make([]byte, 5*readAheadBlock+12345)
	r := rand.New(rand.NewPCG(3, 4))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	for _, final := range []error{io.EOF, io.ErrUnexpectedEOF, errors.New("connection reset")} {
		t.Run(final.Error(), func(t *testing.T) {
			src := &jaggedReader{data: data, r: rand.New(rand.NewPCG(5, 6)), err: final}
			ra := newReadAhead(src, nil, func() {}, int64(len(data)), readAheadBlock)
			defer ra.Close()
			var got bytes.Buffer
			_, err := io.CopyBuffer(&got, struct{ io.Reader }{ra}, make([]byte, 7000))
			if final == io.EOF && err != nil || final != io.EOF && err != final {
				t.Fatalf("copy ended with %v, want the reader's %v", err, final)
			}
			if sha256.Sum256(got.Bytes()) != sha256.Sum256(data) {
				t.Fatalf("%d bytes out, not the %d that went in", got.Len(), len(data))
			}
			if _, err := ra.Read(make([]byte, 1)); err != final {
				t.Fatalf("read after the end: %v, want %v again", err, final)
			}
		})
	}
}

// endless reads zeros forever, counting them.
type endless struct{ read atomic.Int64 }

func (e *endless) Read(p []byte) (int, error) {
	clear(p)
	e.read.Add(int64(len(p)))
	return len(p), nil
}

// TestReadAheadBounded: a consumer that stops reading stops the reading
// of the source after at most readAheadDepth+2 blocks.
func TestReadAheadBounded(t *testing.T) {
	src := &endless{}
	ra := newReadAhead(src, nil, func() {}, 0, readAheadBlock)
	if _, err := ra.Read(make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	bound := int64((readAheadDepth + 2) * readAheadBlock)
	for deadline := time.Now().Add(time.Minute); src.read.Load() < bound-readAheadBlock; {
		if time.Now().After(deadline) {
			t.Fatalf("the read-ahead read only %d bytes ahead", src.read.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // room to overrun, if it would
	if n := src.read.Load(); n > bound {
		t.Fatalf("read %d bytes ahead of a stalled consumer, bound %d", n, bound)
	}
	ra.Close()
	if _, err := ra.Read(make([]byte, 1)); err == nil {
		t.Fatal("read after Close succeeded")
	}
}

// blockedBody blocks in Read until closed, as a network body does.
type blockedBody struct {
	once   sync.Once
	closed chan struct{}
}

func (b *blockedBody) Read([]byte) (int, error) {
	<-b.closed
	return 0, errors.New("read on closed body")
}

func (b *blockedBody) Close() error {
	b.once.Do(func() { close(b.closed) })
	return nil
}

// TestReadAheadCloseUnblocks: Close ends a read in progress through its
// cancel function, and returns once the reading goroutine closed the body.
func TestReadAheadCloseUnblocks(t *testing.T) {
	b := &blockedBody{closed: make(chan struct{})}
	closed := &closeCounter{}
	ra := newReadAhead(b, closed, func() { b.Close() }, 0, readAheadBlock)
	done := make(chan struct{})
	go func() { ra.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("Close did not return while the source read blocked")
	}
	if closed.n.Load() != 1 {
		t.Fatalf("the body was closed %d times, want once", closed.n.Load())
	}
}

type closeCounter struct{ n atomic.Int64 }

func (c *closeCounter) Close() error {
	c.n.Add(1)
	return nil
}

// failingBucket cuts the body of GETs of one key after some bytes.
type failingBucket struct {
	backends.Bucket
	key   string
	after int64
}

func (f *failingBucket) Get(ctx context.Context, key string, opts backends.GetOptions) (io.ReadCloser, backends.ObjectInfo, error) {
	rc, info, err := f.Bucket.Get(ctx, key, opts)
	if err != nil || key != f.key {
		return rc, info, err
	}
	return struct {
		io.Reader
		io.Closer
	}{io.MultiReader(io.LimitReader(rc, f.after), &jaggedReader{err: errors.New("connection reset by peer")}), rc}, info, nil
}

// TestServeStreaming reads a many-block object through the read-aheads:
// whole and ranged GETs give the source's bytes (by SHA-256), and a
// replica read that fails mid-body cuts the client's connection, with
// only correct bytes before the cut.
func TestServeStreaming(t *testing.T) {
	for _, encrypted := range []bool{true, false} {
		t.Run(fmt.Sprintf("encrypted=%v", encrypted), func(t *testing.T) {
			f := newFixture(t, encrypted)
			s, hs := f.start(t)
			ctx := context.Background()
			if err := s.load(ctx, s.buckets["ledgers"]); err != nil {
				t.Fatal(err)
			}
			c := client(hs.URL, "serve-access", "serve-secret-key")
			big := f.data["big.bin"]
			size := int64(len(big))
			get := func(rng string) ([]byte, error) {
				in := &s3.GetObjectInput{Bucket: aws.String("ledgers"), Key: aws.String("big.bin")}
				if rng != "" {
					in.Range = aws.String(rng)
				}
				o, err := c.GetObject(ctx, in)
				if err != nil {
					return nil, err
				}
				defer o.Body.Close()
				return io.ReadAll(o.Body)
			}
			for _, tc := range []struct {
				rng      string
				from, to int64 // the plaintext expected: big[from:to]
			}{
				{"", 0, size},
				{"bytes=0-", 0, size},
				{fmt.Sprintf("bytes=%d-%d", partSize-1, 2*partSize), partSize - 1, 2*partSize + 1},
				{fmt.Sprintf("bytes=%d-", readAheadBlock+1), readAheadBlock + 1, size},
				{"bytes=-300000", size - 300000, size},
				{"bytes=5-5", 5, 6},
			} {
				b, err := get(tc.rng)
				if err != nil {
					t.Fatalf("GET %q: %v", tc.rng, err)
				}
				if sha256.Sum256(b) != sha256.Sum256(big[tc.from:tc.to]) {
					t.Fatalf("GET %q: %d bytes, not the source's %d", tc.rng, len(b), tc.to-tc.from)
				}
			}

			e, _, err := s.buckets["ledgers"].cat.find("big.bin")
			if err != nil {
				t.Fatal(err)
			}
			f.job.Dest = &failingBucket{Bucket: f.dst, key: e.rep.DestKey, after: 2 * partSize}
			s, hs = f.start(t)
			if err := s.load(ctx, s.buckets["ledgers"]); err != nil {
				t.Fatal(err)
			}
			c = client(hs.URL, "serve-access", "serve-secret-key")
			b, err := get("")
			if err == nil {
				t.Fatalf("GET with the replica cut after %d bytes: %d bytes and no error", 2*partSize, len(b))
			}
			if int64(len(b)) >= size || !bytes.Equal(b, big[:len(b)]) {
				t.Fatalf("GET cut mid-body gave %d bytes, not a prefix of the object", len(b))
			}
			t.Logf("cut after %d of %d bytes: %v", len(b), size, err)
		})
	}
}

// TestServeClientGoesAway: clients that stop reading mid-body and hang up
// end their GETs cleanly: the read-aheads stop, the replica bodies (here
// behind the retrying wrapper every real destination has, which is not
// safe for a Close during a Read) are closed by the goroutine reading
// them, and the object then still serves whole. Run with -race.
func TestServeClientGoesAway(t *testing.T) {
	for _, encrypted := range []bool{true, false} {
		t.Run(fmt.Sprintf("encrypted=%v", encrypted), func(t *testing.T) {
			f := newFixture(t, encrypted)
			f.job.Dest = retry.Wrap(f.dst, retry.Policy{})
			s, hs := f.start(t)
			ctx := context.Background()
			if err := s.load(ctx, s.buckets["ledgers"]); err != nil {
				t.Fatal(err)
			}
			c := client(hs.URL, "serve-access", "serve-secret-key")
			big := f.data["big.bin"]
			for i := range 6 {
				o, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("ledgers"), Key: aws.String("big.bin")})
				if err != nil {
					t.Fatal(err)
				}
				head := make([]byte, 1+i*300_000)
				if _, err := io.ReadFull(o.Body, head); err != nil || !bytes.Equal(head, big[:len(head)]) {
					t.Fatalf("first %d bytes: %v", len(head), err)
				}
				o.Body.Close()
			}
			o, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("ledgers"), Key: aws.String("big.bin")})
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(o.Body)
			o.Body.Close()
			if err != nil || sha256.Sum256(b) != sha256.Sum256(big) {
				t.Fatalf("whole GET after the hang-ups: %d bytes, %v", len(b), err)
			}
		})
	}
}

// TestBodyEnds reads a body both ways a response can (Read, and WriteTo
// as io.Copy does): all of it when it holds what was announced; a body
// that ends short is an error recorded for the front handler to cut the
// connection, and so is the read-ahead's error.
func TestBodyEnds(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789"), 100_000)
	for _, tc := range []struct {
		name string
		want int64
		err  error // of the source after data
		ok   bool
	}{
		{"complete", int64(len(data)), nil, true},
		{"short", int64(len(data)) + 1, nil, false},
		{"failed", int64(len(data)), errors.New("replica cut"), false},
	} {
		for _, way := range []string{"Read", "WriteTo"} {
			t.Run(tc.name+"/"+way, func(t *testing.T) {
				var src io.Reader = bytes.NewReader(data[100:])
				if tc.err != nil {
					src = io.MultiReader(src, iotest.ErrReader(tc.err))
				}
				st := &reqState{}
				b := &body{head: data[:100], rest: newReadAhead(src, nil, func() {}, 0, readAheadBlock), want: tc.want, st: st}
				defer b.rest.Close()
				var out bytes.Buffer
				var err error
				if way == "Read" {
					_, err = io.Copy(&out, struct{ io.Reader }{b}) // hides WriteTo
				} else {
					_, err = b.WriteTo(&out)
				}
				if tc.ok != (err == nil) || tc.ok != (st.bodyErr == nil) {
					t.Fatalf("error %v, recorded %v; want success %v", err, st.bodyErr, tc.ok)
				}
				if !bytes.Equal(out.Bytes(), data) {
					t.Fatalf("%d bytes out, not the %d of the source", out.Len(), len(data))
				}
			})
		}
	}
}
