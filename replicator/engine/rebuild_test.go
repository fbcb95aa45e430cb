package engine

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/voyageur-ca/voyageur/backends"
	"github.com/voyageur-ca/voyageur/crypto"
	"github.com/voyageur-ca/voyageur/internal/testenv"
	"github.com/voyageur-ca/voyageur/journal"
	"github.com/voyageur-ca/voyageur/replicator"
)

// loseJournal replaces the env's journal with a new, empty one.
func (e *env) loseJournal(t *testing.T) {
	t.Helper()
	j, err := journal.Open(filepath.Join(t.TempDir(), "new.db"), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	e.J = j
}

// TestRebuildLostJournal: after the journal is lost, a sync recognizes the
// replicas whose fingerprint matches the source and sends only the rest: a
// changed object, a replica without a fingerprint (an older voyageur's) and
// one whose fingerprint is wrong. An encrypted job without a name secret has
// no fingerprints and sends everything again.
func TestRebuildLostJournal(t *testing.T) {
	for _, tc := range []struct {
		name       string
		setup      func(t *testing.T, e *env)
		recognizes bool
	}{
		{"plain", func(*testing.T, *env) {}, true},
		{"encrypted hashed names", func(t *testing.T, e *env) { testenv.Encrypt(t, e.Env, true) }, true},
		{"encrypted plain names with a secret", func(t *testing.T, e *env) {
			testenv.Encrypt(t, e.Env, false)
			e.Job.Encryption.NameSecret = bytes.Repeat([]byte{9}, 32)
		}, true},
		{"encrypted without a secret", func(t *testing.T, e *env) { testenv.Encrypt(t, e.Env, false) }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			tc.setup(t, e)
			sizes := map[string]int{"a": 10, "b": 1000, "big": 2*ps + 17, "changed": 300, "nofp": 50, "badfp": 60}
			for k, n := range sizes {
				testenv.Put(t, e.Src, "in/"+k, testenv.RandBytes(n, uint64(n)), backends.PutOptions{ContentType: "text/csv"})
			}
			if s := e.sync(t, Options{}); s.Copied != int64(len(sizes)) {
				t.Fatalf("first sync: %+v", s)
			}
			e.loseJournal(t)
			testenv.Put(t, e.Src, "in/changed", []byte("new content"), backends.PutOptions{})
			// A replica an older voyageur wrote, and one with a wrong
			// fingerprint: same bytes, other metadata.
			for k, meta := range map[string]map[string]string{"nofp": nil, "badfp": {replicator.FingerprintMeta: "00000000000000000000000000000000"}} {
				data, _ := testenv.Get(t, e.Dst, e.Job.DestKey("in/"+k))
				testenv.Put(t, e.Dst, e.Job.DestKey("in/"+k), data, backends.PutOptions{Metadata: meta})
			}

			// Plain replicas sent again have the same bytes: what was
			// rewritten is what the destination was asked to write.
			writes := &writeLog{Bucket: e.Dst, keys: map[string]bool{}}
			e.Job.Dest = writes
			s := e.sync(t, Options{})
			resent := map[string]bool{"changed": true, "nofp": true, "badfp": true}
			if !tc.recognizes {
				resent = map[string]bool{"a": true, "b": true, "big": true, "changed": true, "nofp": true, "badfp": true}
			}
			if s.Copied != int64(len(resent)) || s.Skipped != int64(len(sizes)-len(resent)) || s.Failed != 0 {
				t.Errorf("sync after losing the journal: %+v, want %d copied and %d skipped", s, len(resent), len(sizes)-len(resent))
			}
			for k := range sizes {
				destKey := e.Job.DestKey("in/" + k)
				if rewritten := writes.keys[destKey]; rewritten != resent[k] {
					t.Errorf("%s: replica rewritten %v, want %v", k, rewritten, resent[k])
				}
				// Every replica now names the source state it holds; an
				// encrypted job without a secret writes no fingerprint.
				fp, ok := e.stat(t, destKey).Metadata[replicator.FingerprintMeta]
				if want := wantFingerprint(t, e, "in/"+k); ok != tc.recognizes || fp != want {
					t.Errorf("%s: replica fingerprint %q (present %v), want %q", k, fp, ok, want)
				}
			}
			if v, _ := e.J.Section("t").Value(valueRebuild); v != nil {
				t.Errorf("rebuild value still set after a complete scan")
			}
			if n, _ := e.J.Section("t").IndexCount(); n != len(sizes) {
				t.Errorf("index holds %d entries, want %d", n, len(sizes))
			}
			if s := e.sync(t, Options{}); s.Copied != 0 || s.Skipped != int64(len(sizes)) {
				t.Errorf("sync after the rebuild: %+v", s)
			}
		})
	}
}

// TestRebuildResumes: a rebuild whose scan did not finish goes on at the
// next run, although the index is no longer empty.
func TestRebuildResumes(t *testing.T) {
	e := newEnv(t)
	for _, k := range []string{"a", "b", "c"} {
		testenv.Put(t, e.Src, "in/"+k, []byte("data of "+k), backends.PutOptions{})
	}
	e.sync(t, Options{})
	e.loseJournal(t)
	jb := e.J.Section("t")
	// What a killed rebuild leaves: the value, and one key recognized.
	if err := jb.SetValue(valueRebuild, []byte{1}); err != nil {
		t.Fatal(err)
	}
	a := e.stat(t, "out/a")
	if err := jb.Complete(journal.Change{Key: "in/a"}, journal.Record{SourceETag: fmt.Sprintf("%x", md5.Sum([]byte("data of a"))), Size: 9, DestKey: "out/a", DestETag: a.ETag}); err != nil {
		t.Fatal(err)
	}
	if s := e.sync(t, Options{}); s.Copied != 0 || s.Skipped != 3 {
		t.Errorf("resumed rebuild: %+v, want nothing copied", s)
	}
}

// TestRebuildAfterRecipientChange: replicas sealed to other recipients (a
// rotation after a leaked identity, with a fresh journal and the same
// prefix) are not adopted: every object is sent again, sealed to the new
// recipients.
func TestRebuildAfterRecipientChange(t *testing.T) {
	e := newEnv(t)
	testenv.Encrypt(t, e.Env, true)
	for _, k := range []string{"a", "b"} {
		testenv.Put(t, e.Src, "in/"+k, []byte("data of "+k), backends.PutOptions{})
	}
	testenv.Put(t, e.Src, "in/big", testenv.RandBytes(2*ps+1, 3), backends.PutOptions{})
	if s := e.sync(t, Options{}); s.Copied != 3 {
		t.Fatalf("first sync: %+v", s)
	}

	e.loseJournal(t)
	rotated, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	e.Job.Encryption.Options.Recipients = []age.Recipient{rotated.Recipient()}
	if s := e.sync(t, Options{}); s.Copied != 3 || s.Skipped != 0 || s.Failed != 0 {
		t.Errorf("rebuild after a recipient change: %+v, want everything sent again", s)
	}
	for _, k := range []string{"a", "b", "big"} {
		name := e.Job.DestKey("in/" + k)
		if _, meta := testenv.Decrypt(t, e.Dst, name, rotated); meta.Key != "in/"+k {
			t.Errorf("%s: META names %q", k, meta.Key)
		}
		if fp := e.stat(t, name).Metadata[replicator.FingerprintMeta]; fp != wantFingerprint(t, e, "in/"+k) {
			t.Errorf("%s: fingerprint %q is not the new recipients'", k, fp)
		}
	}
}

// TestResumedRebuildCountsOnce: a rebuild killed after queuing its changes
// goes on at the next run; each adopted replica is counted as skipped
// once, not again by the scan that follows.
func TestResumedRebuildCountsOnce(t *testing.T) {
	e := newEnv(t)
	names := []string{"a", "b", "c"}
	for _, k := range names {
		testenv.Put(t, e.Src, "in/"+k, []byte("data of "+k), backends.PutOptions{})
	}
	e.sync(t, Options{})
	e.loseJournal(t)
	jb := e.J.Section("t")
	// What a rebuild killed after its listing leaves: the value and the
	// queued changes.
	if err := jb.SetValue(valueRebuild, []byte{1}); err != nil {
		t.Fatal(err)
	}
	var queued []journal.Change
	for _, k := range names {
		info := e.statSource(t, "in/"+k)
		queued = append(queued, journal.Change{Key: info.Key, Op: journal.OpPut, ETag: info.ETag, Size: info.Size, Reason: reasonRebuild})
	}
	if err := jb.Enqueue(queued); err != nil {
		t.Fatal(err)
	}
	if s := e.sync(t, Options{}); s.Copied != 0 || s.Skipped != int64(len(names)) {
		t.Errorf("resumed rebuild: %+v, want %d skipped and nothing copied", s, len(names))
	}
}

// TestRebuildWithoutFingerprintsWarnsOnce: an encrypted job without a name
// secret cannot rebuild; it says so once per run, however many scans the
// run makes (watch rescans), and reads one destination object to know.
func TestRebuildWithoutFingerprintsWarnsOnce(t *testing.T) {
	e := newEnv(t)
	testenv.Encrypt(t, e.Env, false)
	for _, k := range []string{"a", "b", "c"} {
		testenv.Put(t, e.Src, "in/"+k, []byte(k), backends.PutOptions{})
	}
	e.sync(t, Options{})
	e.loseJournal(t)
	listed := &listCounter{Bucket: e.Dst}
	e.Job.Dest = listed
	var logs bytes.Buffer
	r, err := newRun(e.J, e.Job, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if rebuild, err := r.rebuilding(context.Background()); err != nil || rebuild {
			t.Fatalf("rebuilding: %v, %v; want false", rebuild, err)
		}
	}
	if n := strings.Count(logs.String(), "journal rebuilt without fingerprints"); n != 1 {
		t.Errorf("warned %d times, want once:\n%s", n, logs.String())
	}
	if n := listed.n.Load(); n != 2 {
		t.Errorf("two checks read %d destination objects, want one each", n)
	}
}

// listCounter counts the objects listings hand out.
type listCounter struct {
	backends.Bucket
	n atomic.Int64
}

func (l *listCounter) List(ctx context.Context, opts backends.ListOptions) iter.Seq2[backends.ObjectInfo, error] {
	return func(yield func(backends.ObjectInfo, error) bool) {
		for o, err := range l.Bucket.List(ctx, opts) {
			l.n.Add(1)
			if !yield(o, err) {
				return
			}
		}
	}
}

// writeLog records the keys written to its bucket.
type writeLog struct {
	backends.Bucket
	mu   sync.Mutex
	keys map[string]bool
}

func (w *writeLog) note(key string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.keys[key] = true
}

func (w *writeLog) Put(ctx context.Context, key string, r io.ReadSeeker, size int64, opts backends.PutOptions) (backends.ObjectInfo, error) {
	w.note(key)
	return w.Bucket.Put(ctx, key, r, size, opts)
}

func (w *writeLog) CreateMultipart(ctx context.Context, key string, opts backends.PutOptions) (string, error) {
	w.note(key)
	return w.Bucket.CreateMultipart(ctx, key, opts)
}

// wantFingerprint computes, by FORMAT.md §7, the fingerprint a replica of
// the source object key has under the env's job; "" when the job writes
// none.
func wantFingerprint(t *testing.T, e *env, key string) string {
	t.Helper()
	var secret []byte
	format := ""
	if enc := e.Job.Encryption; enc != nil {
		if enc.NameSecret == nil {
			return ""
		}
		secret = enc.NameSecret
		var keys []string
		for _, r := range enc.Options.Recipients {
			keys = append(keys, r.(fmt.Stringer).String())
		}
		slices.Sort(keys)
		sum := sha256.Sum256([]byte(strings.Join(keys, "\n")))
		format = "age;r=" + hex.EncodeToString(sum[:])
	}
	k, err := crypto.FingerprintKey(secret)
	if err != nil {
		t.Fatal(err)
	}
	info := e.statSource(t, key)
	return crypto.Fingerprint(k, format, key, info.Size, info.ETag)
}

func (e *env) statSource(t *testing.T, key string) backends.ObjectInfo {
	t.Helper()
	info, err := e.Src.Stat(context.Background(), key, "")
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// TestNoRebuildOnEmptyDestination: a first sync into an empty destination
// is no rebuild: it does not look for replicas.
func TestNoRebuildOnEmptyDestination(t *testing.T) {
	e := newEnv(t)
	testenv.Put(t, e.Src, "in/a", []byte("a"), backends.PutOptions{})
	stats := &countingStats{Bucket: e.Dst}
	e.Job.Dest = stats
	if s := e.sync(t, Options{}); s.Copied != 1 {
		t.Fatalf("first sync: %+v", s)
	}
	if n := stats.n.Load(); n != 0 {
		t.Errorf("a first sync made %d HEAD requests at the destination", n)
	}
}

type countingStats struct {
	backends.Bucket
	n atomic.Int64
}

func (c *countingStats) Stat(ctx context.Context, key, versionID string) (backends.ObjectInfo, error) {
	c.n.Add(1)
	return c.Bucket.Stat(ctx, key, versionID)
}

func (e *env) stat(t *testing.T, key string) backends.ObjectInfo {
	t.Helper()
	info, err := e.Dst.Stat(context.Background(), key, "")
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// orphanEnv replicates in/a..in/f with deletes propagated, loses the
// journal, and deletes in/b and in/e at the source: a rebuild's orphans.
func orphanEnv(t *testing.T, setup func(t *testing.T, e *env)) *env {
	t.Helper()
	e := newEnv(t)
	setup(t, e)
	e.Job.Deletes = replicator.DeletesPropagate
	for _, k := range []string{"a", "b", "c", "d", "e", "f"} {
		testenv.Put(t, e.Src, "in/"+k, []byte("data of "+k), backends.PutOptions{})
	}
	if s := e.sync(t, Options{}); s.Copied != 6 {
		t.Fatalf("first sync: %+v", s)
	}
	e.loseJournal(t)
	for _, k := range []string{"in/b", "in/e"} {
		if err := e.Src.Delete(context.Background(), k, ""); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// replicaNamesOf returns the job's replica names of the source keys.
func replicaNamesOf(e *env, keys ...string) []string {
	var out []string
	for _, k := range keys {
		out = append(out, e.Job.DestKey(k))
	}
	slices.Sort(out)
	return out
}

// TestRebuildDeletesOrphans: a rebuild of a lost journal deletes the
// replicas of the keys deleted at the source before it, which no index
// remembers, and copies nothing again. Objects under the destination
// prefix whose source key cannot be told (not of the hashed form; the
// reserved prefix) or without a fingerprint (not written by voyageur) are
// kept.
func TestRebuildDeletesOrphans(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, e *env)
		// foreign objects at the destination that must stay.
		foreign []string
	}{
		{"plain", func(*testing.T, *env) {}, []string{"out/.voyageur/drills/x.json", "out/zz-not-a-replica"}},
		{"encrypted hashed names", func(t *testing.T, e *env) { testenv.Encrypt(t, e.Env, true) }, []string{"out/.voyageur/drills/x.json", "out/notes.txt", "out/" + strings.Repeat("A", 64) + ".age",
			"out/" + strings.Repeat("a", 64) + ".age"}},
		{"encrypted plain names", func(t *testing.T, e *env) {
			testenv.Encrypt(t, e.Env, false)
			e.Job.Encryption.NameSecret = bytes.Repeat([]byte{9}, 32)
		}, []string{"out/.voyageur/drills/x.json", "out/g/.voyageur-folderx", "out/zz-not-a-replica"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := orphanEnv(t, tc.setup)
			for _, k := range tc.foreign {
				testenv.Put(t, e.Dst, k, []byte("not a replica of this job"), backends.PutOptions{})
			}
			s := e.sync(t, Options{})
			if s.Copied != 0 || s.Skipped != 4 || s.Deleted != 2 || s.Failed != 0 {
				t.Errorf("rebuild: %+v, want 4 skipped, 2 deleted, nothing copied", s)
			}
			want := append(replicaNamesOf(e, "in/a", "in/c", "in/d", "in/f"), tc.foreign...)
			slices.Sort(want)
			if got := testenv.Keys(t, e.Dst, ""); !slices.Equal(got, want) {
				t.Errorf("destination holds %v, want %v", got, want)
			}
			if v, _ := e.J.Section("t").Value(valueRebuild); v != nil {
				t.Errorf("rebuild cursor still set after its deletes")
			}
			if s := e.sync(t, Options{}); s.Copied != 0 || s.Deleted != 0 || s.Skipped != 4 {
				t.Errorf("sync after the rebuild: %+v", s)
			}
		})
	}
}

// TestRebuildOrphansKeptWithoutPropagate: with deletes: keep, a rebuild
// does not look for orphans.
func TestRebuildOrphansKeptWithoutPropagate(t *testing.T) {
	e := orphanEnv(t, func(*testing.T, *env) {})
	e.Job.Deletes = replicator.DeletesKeep
	listed := &listCounter{Bucket: e.Dst}
	e.Job.Dest = listed
	if s := e.sync(t, Options{}); s.Deleted != 0 || s.Copied != 0 {
		t.Errorf("rebuild: %+v, want nothing deleted or copied", s)
	}
	if n := listed.n.Load(); n != 1 {
		t.Errorf("the rebuild read %d destination objects in listings, want the one that tells it to rebuild", n)
	}
	if got := testenv.Keys(t, e.Dst, "out/"); len(got) != 6 {
		t.Errorf("destination holds %v", got)
	}
}

// TestRebuildOrphansMaxDelete: the orphans count against max_delete. A
// rebuild that would delete more deletes nothing, fails, and keeps its
// cursor, so that a run with a higher limit deletes them.
func TestRebuildOrphansMaxDelete(t *testing.T) {
	for _, hashed := range []bool{false, true} {
		t.Run(fmt.Sprintf("hashed=%v", hashed), func(t *testing.T) {
			e := orphanEnv(t, func(t *testing.T, e *env) {
				if hashed {
					testenv.Encrypt(t, e.Env, true)
				}
			})
			e.Job.MaxDelete = 1
			s, err := Sync(context.Background(), e.J, e.Job, Options{})
			if !errors.Is(err, ErrTooManyDeletes) || s.Deleted != 0 || s.Copied != 0 {
				t.Fatalf("rebuild over max_delete: %+v, %v; want ErrTooManyDeletes and nothing deleted", s, err)
			}
			if got := testenv.Keys(t, e.Dst, "out/"); len(got) != 6 {
				t.Errorf("destination holds %d replicas, want all 6", len(got))
			}
			if v, _ := e.J.Section("t").Value(valueRebuild); v == nil {
				t.Errorf("rebuild cursor cleared by a refused rebuild")
			}
			e.Job.MaxDelete = 2
			if s := e.sync(t, Options{}); s.Deleted != 2 || s.Copied != 0 {
				t.Errorf("rebuild within max_delete: %+v, want 2 deleted", s)
			}
			if got, want := testenv.Keys(t, e.Dst, "out/"), replicaNamesOf(e, "in/a", "in/c", "in/d", "in/f"); !slices.Equal(got, want) {
				t.Errorf("destination holds %v, want %v", got, want)
			}
		})
	}
}

// TestRebuildOrphansPercent: with max_delete_percent, the limit is a share
// of the replicas the index would have held (those indexed by the
// rebuild, and the orphans), not of the empty index the run began with.
func TestRebuildOrphansPercent(t *testing.T) {
	e := orphanEnv(t, func(*testing.T, *env) {})
	e.Job.MaxDeletePercent = 34 // of 6 replicas: 2
	if s := e.sync(t, Options{}); s.Deleted != 2 {
		t.Errorf("rebuild: %+v, want 2 deleted", s)
	}
}

// TestRebuildShardOrphans: on fresh journals, each shard deletes the
// orphans it can place: with plain names those of its key range; with
// hashed names those of its slice of the name space, once it has listed
// the whole source. Together the shards delete exactly the orphans.
func TestRebuildShardOrphans(t *testing.T) {
	l := replicator.Layout{Bounds: []string{"in/c"}} // shard 0: a..c, shard 1: d..f
	for _, hashed := range []bool{false, true} {
		t.Run(fmt.Sprintf("hashed=%v", hashed), func(t *testing.T) {
			e := orphanEnv(t, func(t *testing.T, e *env) {
				if hashed {
					testenv.Encrypt(t, e.Env, true)
				}
			})
			var deleted int64
			for i := range 2 {
				j, err := journal.Open(filepath.Join(t.TempDir(), "shard.db"), 0)
				if err != nil {
					t.Fatal(err)
				}
				job := e.Job
				job.Shard = &replicator.JobShard{Shard: replicator.Shard{Index: i, Count: 2}, Range: l.Range(i)}
				s, err := Sync(context.Background(), j, job, Options{})
				j.Close()
				if err != nil || s.Copied != 0 {
					t.Fatalf("shard %d: %+v, %v", i, s, err)
				}
				if i == 0 && !hashed && s.Deleted != 1 {
					t.Errorf("shard 0 deleted %d, want in/b's replica alone", s.Deleted)
				}
				deleted += s.Deleted
			}
			want := replicaNamesOf(e, "in/a", "in/c", "in/d", "in/f")
			if got := testenv.Keys(t, e.Dst, "out/"); deleted != 2 || !slices.Equal(got, want) {
				t.Errorf("the shards deleted %d; destination holds %v, want %v", deleted, got, want)
			}
		})
	}
}

// youngReplica makes one replica look written after any clock object: a
// shard with hashed names must take it for another shard's fresh copy.
type youngReplica struct {
	backends.Bucket
	key string
}

func (y youngReplica) Stat(ctx context.Context, key, version string) (backends.ObjectInfo, error) {
	info, err := y.Bucket.Stat(ctx, key, version)
	if key == y.key {
		info.LastModified = time.Now().Add(time.Hour)
	}
	return info, err
}

// TestShardOrphansWrittenSinceStay: a shard with hashed names deletes only
// replicas written before it listed the source (by the destination's
// clock): one written since may be another shard's copy of a key created
// after the listing passed it. The clock object is gone after the run.
func TestShardOrphansWrittenSinceStay(t *testing.T) {
	e := orphanEnv(t, func(t *testing.T, e *env) { testenv.Encrypt(t, e.Env, true) })
	young := e.Job.DestKey("in/b")
	e.Job.Dest = youngReplica{e.Job.Dest, young}
	e.Job.Shard = &replicator.JobShard{Shard: replicator.Shard{Index: 0, Count: 1}, Range: replicator.KeyRange{After: "in/", Upto: "in/z", Bounded: true}}
	s := e.sync(t, Options{})
	want := replicaNamesOf(e, "in/a", "in/b", "in/c", "in/d", "in/f")
	if got := testenv.Keys(t, e.Dst, "out/"); s.Deleted != 1 || !slices.Equal(got, want) {
		t.Errorf("deleted %d; destination holds %v, want %v (in/b's replica kept as young)", s.Deleted, got, want)
	}
}

// TestRebuildOrphansWatchHashed: a watch copies its events' keys while its
// scan runs, so with hashed names (no source check possible before the
// delete) its rebuild looks for no orphans; with plain names it does.
func TestRebuildOrphansWatchHashed(t *testing.T) {
	for _, hashed := range []bool{false, true} {
		e := newEnv(t)
		if hashed {
			testenv.Encrypt(t, e.Env, true)
		}
		e.Job.Deletes = replicator.DeletesPropagate
		r, err := newRun(e.J, e.Job, Options{})
		if err != nil {
			t.Fatal(err)
		}
		r.kick = func() {}
		if got := r.findsOrphans(); got == hashed {
			t.Errorf("watch, hashed names %v: looks for orphans %v", hashed, got)
		}
	}
}
