package events

import (
	"context"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/voyageur-ca/voyageur/backends"
	"github.com/voyageur-ca/voyageur/backends/minio"
	"github.com/voyageur-ca/voyageur/integration/minioserver"
)

// cutProxy forwards loopback TCP connections to a server until cut: then it
// closes the open ones and refuses new ones (counting the attempts).
type cutProxy struct {
	ln       net.Listener
	target   string
	mu       sync.Mutex
	down     bool
	conns    []net.Conn
	refusals atomic.Int32
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target}
	t.Cleanup(func() { ln.Close(); p.cut() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			if p.down {
				p.mu.Unlock()
				p.refusals.Add(1)
				c.Close()
				continue
			}
			s, err := net.Dial("tcp", p.target)
			if err != nil {
				p.mu.Unlock()
				c.Close()
				continue
			}
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			go func() { io.Copy(s, c); s.Close() }()
			go func() { io.Copy(c, s); c.Close() }()
		}
	}()
	return p
}

func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *cutProxy) restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = false
}

// recorder is a fake watcher: it records gaps and events in order.
type recorder struct {
	mu     sync.Mutex
	log    []string // "gap" or "op key"
	events []Event
}

func (r *recorder) gap() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.log = append(r.log, "gap")
}

func (r *recorder) intake(_ context.Context, evs []Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ev := range evs {
		r.log = append(r.log, ev.Op.String()+" "+ev.Key)
		r.events = append(r.events, ev)
	}
	return nil
}

func (r *recorder) snapshot() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.log...)
}

func count(log []string, s string) int {
	n := 0
	for _, l := range log {
		if l == s {
			n++
		}
	}
	return n
}

// waitFor polls cond for up to 15s, calling poke between polls. Waits for
// events (poke != nil) that time out are a failure under CI=true and a
// skip otherwise: the pinned MinIO server does not flush its listen stream
// (see minio.Bucket.Listen).
func waitFor(t *testing.T, what string, cond func() bool, poke func()) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			if poke != nil && os.Getenv("CI") != "true" {
				t.Skipf("timed out waiting for %s: the MinIO server does not flush its listen stream", what)
			}
			t.Fatalf("timed out waiting for %s", what)
		}
		if poke != nil {
			poke()
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestListenSource(t *testing.T) {
	srv := minioserver.Start(t)
	bucket := srv.CreateBucket(t, false)
	proxy := newCutProxy(t, srv.Host)
	src, err := minio.New(minio.Config{Bucket: bucket, Region: "us-east-1", URL: "http://" + proxy.ln.Addr().String(), AccessKey: srv.AccessKey, SecretKey: srv.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	direct, err := minio.New(minio.Config{Bucket: bucket, Region: "us-east-1", URL: srv.URL, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	put := func(key string) {
		if _, err := direct.Put(t.Context(), key, strings.NewReader("data"), 4, backends.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	rec := &recorder{}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	l := &Listen{Bucket: src, Backoff: 20 * time.Millisecond}
	if l.Name() != "listen" {
		t.Errorf("name %q", l.Name())
	}
	go func() { done <- l.Run(ctx, rec.intake, rec.gap) }()

	// The first connect is a gap.
	waitFor(t, "a gap at connect", func() bool { return count(rec.snapshot(), "gap") == 1 }, nil)

	// Cut the network: Run retries with backoff and does not return.
	proxy.cut()
	waitFor(t, "reconnect attempts", func() bool { return proxy.refusals.Load() >= 3 }, nil)
	select {
	case err := <-done:
		t.Fatalf("Run returned %v while the source was down", err)
	default:
	}

	// Back up: another gap.
	gaps := count(rec.snapshot(), "gap")
	proxy.restore()
	waitFor(t, "a gap after reconnecting", func() bool { return count(rec.snapshot(), "gap") > gaps }, nil)

	// Events arrive after the gaps, converted. The pinned server sends
	// the stream in blocks of about 4 KiB: fillers push it through. A
	// subtest, so that a skip leaves the rest of the test running.
	t.Run("Events", func(t *testing.T) {
		put("k one+two")
		if err := direct.Delete(t.Context(), "k one+two", ""); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the events", func() bool {
			log := rec.snapshot()
			return count(log, "put k one+two") >= 1 && count(log, "delete k one+two") >= 1
		}, func() { put("filler") })
		log := rec.snapshot()
		if log[0] != "gap" {
			t.Errorf("log %q does not start with the gap", log)
		}
		rec.mu.Lock()
		for _, ev := range rec.events {
			if ev.Source != "listen" || (ev.Op.String() == "put" && ev.Size != 4) {
				t.Errorf("event %+v: want source listen and size 4 for puts", ev)
			}
		}
		rec.mu.Unlock()
	})

	// The server stops: Run keeps retrying until ctx is done, then nil.
	srv.Stop()
	time.Sleep(500 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("Run returned %v after the server stopped", err)
	default:
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run returned %v after cancel, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return within 5s of cancel")
	}
}

func TestListenNoBucket(t *testing.T) {
	if err := (&Listen{}).Run(t.Context(), nil, nil); err == nil {
		t.Error("Run without a bucket returned nil")
	}
}
