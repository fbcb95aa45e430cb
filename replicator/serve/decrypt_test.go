package serve

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/voyageur-ca/voyageur/crypto"
)

// sealedReplica encrypts n random bytes with age and returns them, the
// age file, its payload opener and where its payload starts.
func sealedReplica(t *testing.T, n int) ([]byte, []byte, *crypto.Payload, int64) {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	plain := make([]byte, n)
	r := rand.New(rand.NewPCG(uint64(n), 3))
	for i := range plain {
		plain[i] = byte(r.Uint32())
	}
	var file bytes.Buffer
	w, err := age.Encrypt(&file, id.Recipient())
	if err != nil {
		t.Fatal(err)
	}
	w.Write(plain)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	hdr, err := age.ExtractHeader(bytes.NewReader(file.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	key, err := age.DecryptHeader(hdr, id)
	if err != nil {
		t.Fatal(err)
	}
	off := int64(len(hdr)) + 16
	p, err := crypto.NewPayload(key, file.Bytes()[len(hdr):off], int64(file.Len())-off)
	if err != nil {
		t.Fatal(err)
	}
	return plain, file.Bytes(), p, off
}

// memFetch serves a replica from memory, counting the GETs.
func memFetch(file []byte, gets *atomic.Int64) fetchFunc {
	return func(_ context.Context, off, n int64) (io.ReadCloser, error) {
		gets.Add(1)
		return io.NopCloser(bytes.NewReader(file[off : off+n])), nil
	}
}

// TestDecrypterOrder reads chunk spans with segments decrypted in parallel:
// the plaintext comes out whole and in order, from one fetch.
func TestDecrypterOrder(t *testing.T) {
	plain, file, p, off := sealedReplica(t, 37*crypto.ChunkSize+1000)
	for _, c := range []struct{ first, end, seg int64 }{{0, 38, 4}, {3, 38, 16}, {5, 9, 4}, {37, 38, 4}, {0, 1, 1}} {
		var gets, fetched atomic.Int64
		d, err := newDecrypter(context.Background(), "r", p, off, c.first, c.end, c.seg, memFetch(file, &gets), &fetched)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(d)
		d.Close()
		want := plain[c.first*crypto.ChunkSize : min(c.end*crypto.ChunkSize, int64(len(plain)))]
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("chunks [%d, %d): %d bytes, %v; want %d bytes", c.first, c.end, len(got), err, len(want))
		}
		sealed := min(c.end*crypto.EncChunkSize, p.SealedSize()) - c.first*crypto.EncChunkSize
		if gets.Load() != 1 || fetched.Load() != sealed {
			t.Fatalf("chunks [%d, %d): %d fetches of %d bytes, want one of %d", c.first, c.end, gets.Load(), fetched.Load(), sealed)
		}
	}
}

// TestDecrypterError: a chunk altered in a middle segment fails the read
// there, with all segments before it handed over and nothing of it or
// after it; so does a replica cut short.
func TestDecrypterError(t *testing.T) {
	plain, file, p, off := sealedReplica(t, 40*crypto.ChunkSize)
	bad := bytes.Clone(file)
	bad[off+18*crypto.EncChunkSize+100] ^= 1 // chunk 18: the segment from 16
	var gets, fetched atomic.Int64
	d, err := newDecrypter(context.Background(), "r", p, off, 0, 40, 4, memFetch(bad, &gets), &fetched)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(d)
	d.Close()
	if err == nil || !bytes.Equal(got, plain[:16*crypto.ChunkSize]) {
		t.Fatalf("altered chunk 18: %d bytes, %v; want the 16 chunks before its segment and an error", len(got), err)
	}
	t.Logf("altered chunk: %v", err)

	cut := func(_ context.Context, off, n int64) (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(file[off : off+n/2])), nil
	}
	d, err = newDecrypter(context.Background(), "r", p, off, 0, 40, 4, cut, &fetched)
	if err != nil {
		t.Fatal(err)
	}
	got, err = io.ReadAll(d)
	d.Close()
	if !errors.Is(err, io.ErrUnexpectedEOF) || !bytes.Equal(got, plain[:len(got)]) || len(got) > 20*crypto.ChunkSize {
		t.Fatalf("replica cut in half: %d bytes, %v", len(got), err)
	}
}

// stallingBody gives its bytes, then blocks until its context ends, as a
// GET whose server stalls does; it records being closed.
type stallingBody struct {
	ctx    context.Context
	r      io.Reader
	closed *atomic.Int64
}

func (s *stallingBody) Read(p []byte) (int, error) {
	if n, err := s.r.Read(p); err != io.EOF {
		return n, err
	}
	<-s.ctx.Done()
	return 0, s.ctx.Err()
}

func (s *stallingBody) Close() error {
	s.closed.Add(1)
	return nil
}

// TestDecrypterClose: Close mid-stream, with the fetch stalled and the
// window full, cancels the fetch, closes its body once, and ends every
// goroutine; reads after it fail.
func TestDecrypterClose(t *testing.T) {
	plain, file, p, off := sealedReplica(t, 64*crypto.ChunkSize)
	before := runtime.NumGoroutine()
	for _, stall := range []bool{true, false} {
		var closed, fetched atomic.Int64
		var fetchCtx context.Context
		fetch := func(ctx context.Context, off, n int64) (io.ReadCloser, error) {
			fetchCtx = ctx
			k := n
			if stall {
				k = n / 2
			}
			return &stallingBody{ctx: ctx, r: bytes.NewReader(file[off : off+k]), closed: &closed}, nil
		}
		d, err := newDecrypter(context.Background(), "r", p, off, 0, 64, 4, fetch, &fetched)
		if err != nil {
			t.Fatal(err)
		}
		head := make([]byte, 5*crypto.ChunkSize)
		if _, err := io.ReadFull(d, head); err != nil || !bytes.Equal(head, plain[:len(head)]) {
			t.Fatalf("first bytes: %v", err)
		}
		// Let the reading goroutine fill the window or stall.
		time.Sleep(50 * time.Millisecond)
		if !stall && fetched.Load() > (5/4+1+segmentWindow)*4*crypto.EncChunkSize {
			t.Errorf("read %d replica bytes ahead of 5 chunks consumed, more than the window", fetched.Load())
		}
		done := make(chan struct{})
		go func() { d.Close(); close(done) }()
		select {
		case <-done:
		case <-time.After(time.Minute):
			t.Fatal("Close did not return")
		}
		if fetchCtx.Err() == nil || closed.Load() != 1 {
			t.Fatalf("after Close: fetch context %v, body closed %d times", fetchCtx.Err(), closed.Load())
		}
		if _, err := d.Read(head); err == nil {
			t.Fatal("a read after Close succeeded")
		}
	}
	for deadline := time.Now().Add(time.Minute); runtime.NumGoroutine() > before; {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines after Close, %d before", runtime.NumGoroutine(), before)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
