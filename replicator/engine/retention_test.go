package engine

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/voyageur-ca/voyageur/backends"
	"github.com/voyageur-ca/voyageur/internal/testenv"
	"github.com/voyageur-ca/voyageur/replicator"
)

// TestRetentionNeedsObjectLock: a job with retention stops before writing
// anything when the destination has no object lock, naming the bucket.
func TestRetentionNeedsObjectLock(t *testing.T) {
	e := newEnv(t)
	testenv.Put(t, e.Src, "in/a", []byte("a"), backends.PutOptions{})
	e.Job.Retention = &replicator.Retention{Mode: backends.LockGovernance, Days: 1}
	for _, dry := range []bool{false, true} {
		s, err := Sync(context.Background(), e.J, e.Job, Options{DryRun: dry})
		if err == nil || !strings.Contains(err.Error(), "destination bucket "+e.Dst.Name()+" has no object lock") || s.Copied != 0 {
			t.Errorf("dry run %v: %v (summary %+v)", dry, err, s)
		}
	}
	if got := testenv.Keys(t, e.Dst, ""); len(got) != 0 {
		t.Errorf("destination holds %v", got)
	}
}

// lockRecorder claims object lock and records the lock of every write,
// part and retention extension, which it leaves out when storing (fs has
// no object lock).
type lockRecorder struct {
	backends.Bucket
	mu    sync.Mutex
	locks map[string]backends.PutOptions
	// parts records, per key, whether each part was sent as locked.
	parts map[string][]bool
	// extended holds the last ExtendRetention of each key.
	extended map[string]backends.PutOptions
}

func newLockRecorder(b backends.Bucket) *lockRecorder {
	return &lockRecorder{Bucket: b, locks: map[string]backends.PutOptions{}, parts: map[string][]bool{}, extended: map[string]backends.PutOptions{}}
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

func (l *lockRecorder) UploadPart(ctx context.Context, key, id string, n int32, r io.ReadSeeker, size int64, opts backends.PartOptions) (string, error) {
	l.mu.Lock()
	l.parts[key] = append(l.parts[key], opts.Locked)
	l.mu.Unlock()
	return l.Bucket.UploadPart(ctx, key, id, n, r, size, opts)
}

func (l *lockRecorder) ExtendRetention(_ context.Context, key, _ string, mode backends.LockMode, until time.Time) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.extended[key] = backends.PutOptions{LockMode: mode, LockUntil: until}
	return nil
}

// checkLock reports a lock that is not mode until days after start (the
// code dates locks in UTC: so does the test, or DST would shift it by an
// hour).
func checkLock(t *testing.T, what string, opts backends.PutOptions, mode backends.LockMode, start time.Time, days int) {
	t.Helper()
	want := start.UTC().AddDate(0, 0, days)
	if opts.LockMode != mode || opts.LockUntil.Before(want) || opts.LockUntil.After(want.Add(time.Minute)) {
		t.Errorf("%s: lock %+v, want %s until %s", what, opts, mode, want)
	}
}

// TestRetentionOnEveryReplica: single PUTs and multipart uploads, plain
// and encrypted, carry the job's mode and a date Days after the write.
func TestRetentionOnEveryReplica(t *testing.T) {
	for _, enc := range []bool{false, true} {
		e := newEnv(t)
		if enc {
			testenv.Encrypt(t, e.Env, true)
		}
		rec := newLockRecorder(e.Dst)
		e.Job.Dest = rec
		e.Job.Retention = &replicator.Retention{Mode: backends.LockCompliance, Days: 30}
		testenv.Put(t, e.Src, "in/small", []byte("small"), backends.PutOptions{})
		testenv.Put(t, e.Src, "in/big", testenv.RandBytes(2*ps+1, 1), backends.PutOptions{})
		start := time.Now().UTC()
		if s := e.sync(t, Options{}); s.Copied != 2 {
			t.Fatalf("encrypted %v: %+v", enc, s)
		}
		for _, k := range []string{"in/small", "in/big"} {
			opts, ok := rec.locks[e.Job.DestKey(k)]
			if !ok {
				t.Errorf("encrypted %v: %s written without a lock", enc, k)
			}
			checkLock(t, fmt.Sprintf("encrypted %v: %s", enc, k), opts, backends.LockCompliance, start, 30)
		}
		// Parts of a locked upload carry their Content-MD5.
		parts := rec.parts[e.Job.DestKey("in/big")]
		if len(parts) == 0 || slices.Contains(parts, false) {
			t.Errorf("encrypted %v: parts sent as locked: %v, want all", enc, parts)
		}
		// An upload completed in one go keeps the date it was created with.
		if len(rec.extended) != 0 {
			t.Errorf("encrypted %v: retention extended: %v", enc, rec.extended)
		}
	}
}

// TestRetentionRenewedOnResume: a multipart upload resumed long after it
// started would keep the retention dated from its start; at completion,
// its date is moved to Days after the replica was written.
func TestRetentionRenewedOnResume(t *testing.T) {
	for _, enc := range []bool{false, true} {
		e := newEnv(t)
		if enc {
			testenv.Encrypt(t, e.Env, true)
		}
		e.Job.Transfer.Concurrency = 1
		e.Job.Retention = &replicator.Retention{Mode: backends.LockGovernance, Days: 30}
		rec := newLockRecorder(e.Dst)
		testenv.Put(t, e.Src, "in/big", testenv.RandBytes(3*ps+1, 5), backends.PutOptions{})

		e.Job.Dest = &failingParts{Bucket: rec, from: 2}
		if s, err := Sync(context.Background(), e.J, e.Job, Options{}); err != nil || s.Failed != 1 {
			t.Fatalf("encrypted %v: interrupted run: %+v, %v", enc, s, err)
		}
		// The run resumes two days after the upload began.
		jb := e.J.Section("t")
		cp, ok, err := jb.Checkpoint("in/big")
		if err != nil || !ok || !cp.Locked {
			t.Fatalf("encrypted %v: checkpoint %+v, %v, %v; want a locked upload", enc, cp, ok, err)
		}
		cp.Created = cp.Created.AddDate(0, 0, -2)
		if err := jb.SaveCheckpoint("in/big", cp); err != nil {
			t.Fatal(err)
		}

		e.Job.Dest = rec
		start := time.Now().UTC()
		if s := e.sync(t, Options{}); s.Copied != 1 {
			t.Fatalf("encrypted %v: resume: %+v", enc, s)
		}
		opts, ok := rec.extended[e.Job.DestKey("in/big")]
		if !ok {
			t.Fatalf("encrypted %v: retention not extended at completion", enc)
		}
		checkLock(t, fmt.Sprintf("encrypted %v: extended retention", enc), opts, backends.LockGovernance, start, 30)
	}
}
