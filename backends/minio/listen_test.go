package minio

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/voyageur-ca/voyageur/backends"
	"github.com/voyageur-ca/voyageur/integration/minioserver"
)

// listenResult is one item of a Listen sequence.
type listenResult struct {
	ev  ListenEvent
	err error
}

// startListen ranges over b.Listen in a goroutine and returns its items,
// closed when the sequence ends, and a channel closed when connected is
// called.
func startListen(ctx context.Context, b *Bucket, prefix string) (<-chan listenResult, <-chan struct{}) {
	items := make(chan listenResult, 1000)
	up := make(chan struct{})
	go func() {
		defer close(items)
		for ev, err := range b.Listen(ctx, prefix, func() { close(up) }) {
			items <- listenResult{ev, err}
		}
	}()
	return items, up
}

// filler is the key collect writes to push events through.
const filler = "filler"

// collect returns the next n events whose keys are not filler. The pinned
// MinIO server sends the stream in blocks of about 4 KiB (see Listen), so
// collect keeps writing filler objects until the events it waits for have
// come through; a server that flushes each event needs none.
func collect(t *testing.T, b *Bucket, items <-chan listenResult, n int) []ListenEvent {
	t.Helper()
	var got []ListenEvent
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(15 * time.Second)
	for len(got) < n {
		select {
		case it, ok := <-items:
			if !ok || it.err != nil {
				t.Fatalf("listen ended after %d of %d events: %v", len(got), n, it.err)
			}
			if it.ev.Key != filler {
				got = append(got, it.ev)
			}
		case <-tick.C:
			put(t, b, filler, "f")
		case <-deadline:
			t.Fatalf("got %d of %d events within 15s", len(got), n)
		}
	}
	return got
}

// drain discards the items that arrive within a moment.
func drain(items <-chan listenResult) {
	for {
		select {
		case <-items:
		case <-time.After(300 * time.Millisecond):
			return
		}
	}
}

func put(t *testing.T, b *Bucket, key, data string) backends.ObjectInfo {
	t.Helper()
	info, err := b.Put(t.Context(), key, strings.NewReader(data), int64(len(data)), backends.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// TestListen runs against its own MinIO server, which it stops at the end.
func TestListen(t *testing.T) {
	srv := minioserver.Start(t)
	bucket := srv.CreateBucket(t, true)
	b, err := New(Config{Bucket: bucket, URL: srv.URL, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()

	t.Run("MissingBucket", func(t *testing.T) {
		other, err := New(Config{Bucket: "no-such-bucket", URL: srv.URL, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, err := range other.Listen(ctx, "", nil) {
			n++
			if err == nil || !strings.Contains(err.Error(), "bucket does not exist") {
				t.Errorf("got %v, want a missing-bucket error", err)
			}
		}
		if n != 1 {
			t.Errorf("got %d items, want 1 error", n)
		}
	})

	items, up := startListen(ctx, b, "")
	select {
	case <-up:
	case <-time.After(5 * time.Second):
		t.Fatal("connected not called within 5s")
	}

	// Keys that URL-encoding would change: spaces, "+", "%", "&", unicode.
	const viaGo = "dir one/a b+c%20 été ü.txt"
	const viaAWS = "aws dir/x+y ñ & z.bin"
	created := put(t, b, viaGo, "hello")
	file := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(file, bytes.Repeat([]byte("x"), 1234), 0o644); err != nil {
		t.Fatal(err)
	}
	srv.AWS(t, "s3", "cp", "--quiet", file, "s3://"+bucket+"/"+viaAWS)
	if err := b.Delete(ctx, viaGo, ""); err != nil {
		t.Fatal(err)
	}

	got := collect(t, b, items, 3)
	ev := got[0]
	if ev.Key != viaGo || ev.Removed || ev.Size != 5 || ev.ETag != created.ETag || ev.VersionID != created.VersionID || ev.Sequencer == "" {
		t.Errorf("put event %+v, want key %q, size 5, etag %s, version %s, a sequencer", ev, viaGo, created.ETag, created.VersionID)
	}
	if d := time.Since(ev.Time); d < 0 || d > time.Minute {
		t.Errorf("event time %v is not about now", ev.Time)
	}
	if ev := got[1]; ev.Key != viaAWS || ev.Removed || ev.Size != 1234 || ev.ETag == "" || ev.VersionID == "" {
		t.Errorf("aws cp event %+v, want key %q, size 1234, an etag and a version", ev, viaAWS)
	}
	if ev := got[2]; ev.Key != viaGo || !ev.Removed || ev.Size != 0 || ev.VersionID == "" || ev.VersionID == created.VersionID {
		t.Errorf("delete event %+v, want a removal of %q with a delete marker version", ev, viaGo)
	}

	t.Run("Prefix", func(t *testing.T) {
		pctx, pcancel := context.WithCancel(ctx)
		defer pcancel()
		pitems, pup := startListen(pctx, b, "sub/")
		<-pup
		put(t, b, "other", "o")
		put(t, b, "sub/k", "kk")
		// collect's fillers are outside the prefix: push with more keys
		// under it.
		got := collectUnder(t, b, pitems, "sub/pad")
		if got.Key != "sub/k" || got.Size != 2 {
			t.Errorf("first event %+v, want sub/k of 2 bytes", got)
		}
	})

	drain(items) // the prefix test's events

	// A stopped server ends the sequence with one error. A server that
	// does not flush sends the events it still holds as it stops: those
	// come first.
	srv.Stop()
	deadline := time.After(15 * time.Second)
	for stopped := false; !stopped; {
		select {
		case it, ok := <-items:
			if !ok {
				t.Fatal("the sequence ended without an error after the server stopped")
			}
			if it.err == nil {
				continue
			}
			t.Logf("after stop: %v", it.err)
			stopped = true
		case <-deadline:
			t.Fatal("no error within 15s of stopping the server")
		}
	}
	if _, ok := <-items; ok {
		t.Error("the sequence went on after its error")
	}
}

// collectUnder returns the first event, writing pad objects to push it
// through (see collect).
func collectUnder(t *testing.T, b *Bucket, items <-chan listenResult, pad string) ListenEvent {
	t.Helper()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(15 * time.Second)
	for {
		select {
		case it, ok := <-items:
			if !ok || it.err != nil {
				t.Fatalf("listen ended: %v", it.err)
			}
			return it.ev
		case <-tick.C:
			put(t, b, pad, "p")
		case <-deadline:
			t.Fatal("no event within 15s")
		}
	}
}
