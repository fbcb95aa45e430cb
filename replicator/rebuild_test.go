package replicator

import (
	"bytes"
	"context"
	"crypto/md5"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/voyageur-ca/voyageur/backends"
	"github.com/voyageur-ca/voyageur/journal"
)

// loseJournal replaces the env's journal with a new, empty one.
func (e *env) loseJournal(t *testing.T) {
	t.Helper()
	j, err := journal.Open(filepath.Join(t.TempDir(), "new.db"), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	e.j = j
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
		{"encrypted hashed names", func(t *testing.T, e *env) { encrypted(t, e, true) }, true},
		{"encrypted plain names with a secret", func(t *testing.T, e *env) {
			encrypted(t, e, false)
			e.job.Encryption.NameSecret = bytes.Repeat([]byte{9}, 32)
		}, true},
		{"encrypted without a secret", func(t *testing.T, e *env) { encrypted(t, e, false) }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			tc.setup(t, e)
			sizes := map[string]int{"a": 10, "b": 1000, "big": 2*ps + 17, "changed": 300, "nofp": 50, "badfp": 60}
			for k, n := range sizes {
				put(t, e.src, "in/"+k, randBytes(n, uint64(n)), backends.PutOptions{ContentType: "text/csv"})
			}
			if s := e.sync(t, Options{}); s.Copied != int64(len(sizes)) {
				t.Fatalf("first sync: %+v", s)
			}
			before := map[string]backends.ObjectInfo{}
			for k := range sizes {
				before[k] = e.stat(t, e.job.destKey("in/"+k))
			}

			e.loseJournal(t)
			put(t, e.src, "in/changed", []byte("new content"), backends.PutOptions{})
			// A replica an older voyageur wrote, and one with a wrong
			// fingerprint: same bytes, other metadata.
			for k, meta := range map[string]map[string]string{"nofp": nil, "badfp": {fingerprintMeta: "00000000000000000000000000000000"}} {
				data, _ := get(t, e.dst, e.job.destKey("in/"+k))
				put(t, e.dst, e.job.destKey("in/"+k), data, backends.PutOptions{Metadata: meta})
				before[k] = e.stat(t, e.job.destKey("in/"+k))
			}

			s := e.sync(t, Options{})
			resent := map[string]bool{"changed": true, "nofp": true, "badfp": true}
			if !tc.recognizes {
				resent = map[string]bool{"a": true, "b": true, "big": true, "changed": true, "nofp": true, "badfp": true}
			}
			if s.Copied != int64(len(resent)) || s.Skipped != int64(len(sizes)-len(resent)) || s.Failed != 0 {
				t.Errorf("sync after losing the journal: %+v, want %d copied and %d skipped", s, len(resent), len(sizes)-len(resent))
			}
			for k := range sizes {
				after := e.stat(t, e.job.destKey("in/"+k))
				if rewritten := !after.LastModified.Equal(before[k].LastModified) || after.ETag != before[k].ETag; rewritten != resent[k] {
					t.Errorf("%s: replica rewritten %v, want %v", k, rewritten, resent[k])
				}
			}
			if v, _ := e.j.Job("t").Cursor(cursorRebuild); v != nil {
				t.Errorf("rebuild cursor still set after a complete scan")
			}
			if n, _ := e.j.Job("t").IndexCount(); n != len(sizes) {
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
		put(t, e.src, "in/"+k, []byte("data of "+k), backends.PutOptions{})
	}
	e.sync(t, Options{})
	e.loseJournal(t)
	jb := e.j.Job("t")
	// What a killed rebuild leaves: the cursor, and one key recognized.
	if err := jb.SetCursor(cursorRebuild, []byte{1}); err != nil {
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

// TestNoRebuildOnEmptyDestination: a first sync into an empty destination
// is no rebuild: it does not look for replicas.
func TestNoRebuildOnEmptyDestination(t *testing.T) {
	e := newEnv(t)
	put(t, e.src, "in/a", []byte("a"), backends.PutOptions{})
	stats := &countingStats{Bucket: e.dst}
	e.job.Dest = stats
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
	info, err := e.dst.Stat(context.Background(), key, "")
	if err != nil {
		t.Fatal(err)
	}
	return info
}
