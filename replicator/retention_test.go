package replicator

import (
	"context"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/voyageur-ca/voyageur/backends"
)

// TestRetentionNeedsObjectLock: a job with retention stops before writing
// anything when the destination has no object lock, naming the bucket.
func TestRetentionNeedsObjectLock(t *testing.T) {
	e := newEnv(t)
	put(t, e.src, "in/a", []byte("a"), backends.PutOptions{})
	e.job.Retention = &Retention{Mode: backends.LockGovernance, Days: 1}
	for _, dry := range []bool{false, true} {
		s, err := Sync(context.Background(), e.j, e.job, Options{DryRun: dry})
		if err == nil || !strings.Contains(err.Error(), "destination bucket "+e.dst.Name()+" has no object lock") || s.Copied != 0 {
			t.Errorf("dry run %v: %v (summary %+v)", dry, err, s)
		}
	}
	if got := keys(t, e.dst, ""); len(got) != 0 {
		t.Errorf("destination holds %v", got)
	}
}

// lockRecorder claims object lock and records the lock of every write,
// which it leaves out when storing (fs has no object lock).
type lockRecorder struct {
	backends.Bucket
	mu    sync.Mutex
	locks map[string]backends.PutOptions
}

func (l *lockRecorder) ObjectLockEnabled(context.Context) (bool, error) { return true, nil }

func (l *lockRecorder) record(key string, opts backends.PutOptions) backends.PutOptions {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.locks[key] = opts
	opts.LockMode, opts.LockUntil = "", time.Time{}
	return opts
}

func (l *lockRecorder) Put(ctx context.Context, key string, r io.ReadSeeker, size int64, opts backends.PutOptions) (backends.ObjectInfo, error) {
	return l.Bucket.Put(ctx, key, r, size, l.record(key, opts))
}

func (l *lockRecorder) CreateMultipart(ctx context.Context, key string, opts backends.PutOptions) (string, error) {
	return l.Bucket.CreateMultipart(ctx, key, l.record(key, opts))
}

// TestRetentionOnEveryReplica: single PUTs and multipart uploads, plain
// and encrypted, carry the job's mode and a date Days after the write.
func TestRetentionOnEveryReplica(t *testing.T) {
	for _, enc := range []bool{false, true} {
		e := newEnv(t)
		if enc {
			encrypted(t, e, true)
		}
		rec := &lockRecorder{Bucket: e.dst, locks: map[string]backends.PutOptions{}}
		e.job.Dest = rec
		e.job.Retention = &Retention{Mode: backends.LockCompliance, Days: 30}
		put(t, e.src, "in/small", []byte("small"), backends.PutOptions{})
		put(t, e.src, "in/big", randBytes(2*ps+1, 1), backends.PutOptions{})
		start := time.Now()
		if s := e.sync(t, Options{}); s.Copied != 2 {
			t.Fatalf("encrypted %v: %+v", enc, s)
		}
		for _, k := range []string{"in/small", "in/big"} {
			opts, ok := rec.locks[e.job.destKey(k)]
			want := start.AddDate(0, 0, 30)
			if !ok || opts.LockMode != backends.LockCompliance || opts.LockUntil.Before(want) || opts.LockUntil.After(want.Add(time.Minute)) {
				t.Errorf("encrypted %v: %s written with %+v (ok %v), want compliance until %s", enc, k, opts, ok, want)
			}
		}
	}
}
