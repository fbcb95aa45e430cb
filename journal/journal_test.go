package journal

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	bolt "go.etcd.io/bbolt"
)

var t0 = time.Date(2026, 11, 24, 13, 45, 30, 123456789, time.UTC)

func openTemp(t testing.TB) *Journal {
	t.Helper()
	j, err := Open(filepath.Join(t.TempDir(), "journal.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = j.Close() })
	return j
}

func record(key string) Record {
	return Record{
		SourceETag:    `"etag-` + key + `"`,
		SourceVersion: "v-" + key,
		Size:          int64(len(key)) * 1000,
		MTime:         t0,
		DestKey:       "dst/" + key,
		DestETag:      `"d-` + key + `"`,
		DestVersion:   "dv-" + key,
		ReplicatedAt:  t0.Add(time.Minute),
	}
}

func put(key string) Change {
	return Change{Key: key, Op: OpPut, VersionID: "v1", ETag: `"e"`, Size: 42, Reason: "scan", EventTime: t0}
}

func enqueue(t testing.TB, jb *Section, changes ...Change) []Change {
	t.Helper()
	if err := jb.Enqueue(changes); err != nil {
		t.Fatal(err)
	}
	return changes
}

func pendingAll(t testing.TB, jb *Section) []Change {
	t.Helper()
	got, err := jb.Pending(0, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func mustLen(t testing.TB, jb *Section, wantIndex, wantQueue int) {
	t.Helper()
	if n, err := jb.IndexCount(); err != nil || n != wantIndex {
		t.Errorf("IndexCount = %d, %v; want %d", n, err, wantIndex)
	}
	if n, err := jb.QueueLen(); err != nil || n != wantQueue {
		t.Errorf("QueueLen = %d, %v; want %d", n, err, wantQueue)
	}
}

func TestOpenCreatesPrivateFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "sub", "journal.db")
	j, err := Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if j.Path() != path {
		t.Errorf("Path() = %q, want %q", j.Path(), path)
	}
	for p, want := range map[string]os.FileMode{filepath.Dir(path): 0o700, path: 0o600} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode().Perm(), want)
		}
	}
}

func TestEmptyJobReads(t *testing.T) {
	j := openTemp(t)
	jb := j.Section("nothing")
	if jb.Name() != "nothing" {
		t.Errorf("Name() = %q", jb.Name())
	}
	if _, ok, err := jb.Lookup("k"); ok || err != nil {
		t.Errorf("Lookup = %v, %v", ok, err)
	}
	if got, err := jb.IndexRange("", "", 10); len(got) != 0 || err != nil {
		t.Errorf("IndexRange = %v, %v", got, err)
	}
	if got, err := jb.Pending(0, 10); len(got) != 0 || err != nil {
		t.Errorf("Pending = %v, %v", got, err)
	}
	mustLen(t, jb, 0, 0)
	if _, ok, err := jb.Checkpoint("k"); ok || err != nil {
		t.Errorf("Checkpoint = %v, %v", ok, err)
	}
	if got, err := jb.Checkpoints(); len(got) != 0 || err != nil {
		t.Errorf("Checkpoints = %v, %v", got, err)
	}
	if got, err := jb.Value("generation"); got != nil || err != nil {
		t.Errorf("Cursor = %v, %v", got, err)
	}
	if got, err := jb.Runs(10); len(got) != 0 || err != nil {
		t.Errorf("Runs = %v, %v", got, err)
	}
	if got, err := j.Jobs(); len(got) != 0 || err != nil {
		t.Errorf("Jobs after reads = %v, %v; reads must not create buckets", got, err)
	}
}

func TestOpString(t *testing.T) {
	for op, want := range map[Op]string{OpPut: "put", OpDelete: "delete", 9: "op(9)"} {
		if got := op.String(); got != want {
			t.Errorf("Op(%d).String() = %q, want %q", op, got, want)
		}
	}
}

func TestEnqueuePendingComplete(t *testing.T) {
	j := openTemp(t)
	jb := j.Section("daily")
	in := enqueue(t, jb, put("a"), put("b"), Change{Key: "c", Op: OpDelete, Reason: "event"})
	for i, c := range in {
		if c.Seq != uint64(i+1) {
			t.Errorf("changes[%d].Seq = %d, want %d", i, c.Seq, i+1)
		}
	}
	if got := pendingAll(t, jb); !reflect.DeepEqual(got, in) {
		t.Fatalf("Pending = %+v\nwant %+v", got, in)
	}
	if got, err := jb.Pending(1, 1); err != nil || len(got) != 1 || got[0].Key != "b" {
		t.Errorf("Pending(1, 1) = %+v, %v; want b", got, err)
	}
	if got, err := jb.Pending(3, 10); err != nil || len(got) != 0 {
		t.Errorf("Pending(3, 10) = %+v, %v; want none", got, err)
	}
	mustLen(t, jb, 0, 3)

	if err := jb.Complete(in[0], record("a")); err != nil {
		t.Fatal(err)
	}
	if got, ok, err := jb.Lookup("a"); err != nil || !ok || !reflect.DeepEqual(got, record("a")) {
		t.Errorf("Lookup(a) = %+v, %v, %v; want %+v", got, ok, err, record("a"))
	}
	mustLen(t, jb, 1, 2)

	// Replacing an index entry keeps the count.
	again := enqueue(t, jb, put("a"))
	rec := record("a")
	rec.DestETag = `"new"`
	if err := jb.Complete(again[0], rec); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := jb.Lookup("a"); got.DestETag != `"new"` {
		t.Errorf("Lookup(a).DestETag = %q after second Complete", got.DestETag)
	}
	mustLen(t, jb, 1, 2)

	// CompleteDelete of a key with an index entry, and of one without.
	del := enqueue(t, jb, Change{Key: "a", Op: OpDelete})
	if err := jb.CompleteDelete(del[0]); err != nil {
		t.Fatal(err)
	}
	if err := jb.CompleteDelete(in[2]); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := jb.Lookup("a"); ok {
		t.Error("Lookup(a) found an entry after CompleteDelete")
	}
	mustLen(t, jb, 0, 1)
	if got := pendingAll(t, jb); len(got) != 1 || got[0].Key != "b" {
		t.Errorf("Pending = %+v, want only b", got)
	}
	if got, err := j.Jobs(); err != nil || !slices.Equal(got, []string{"daily"}) {
		t.Errorf("Jobs = %v, %v", got, err)
	}
}

func TestEnqueueCoalesces(t *testing.T) {
	j := openTemp(t)
	jb := j.Section("daily")
	old := enqueue(t, jb, put("k"), put("other"))
	newer := enqueue(t, jb, Change{Key: "k", Op: OpDelete, Reason: "event"})
	got := pendingAll(t, jb)
	if len(got) != 2 || got[0].Key != "other" || got[1].Key != "k" || got[1].Op != OpDelete || got[1].Seq != newer[0].Seq {
		t.Fatalf("Pending = %+v; want other, then k as delete with seq %d", got, newer[0].Seq)
	}
	mustLen(t, jb, 0, 2)

	// Completing the superseded change updates the index but leaves the newer item.
	if err := jb.Complete(old[0], record("k")); err != nil {
		t.Fatal(err)
	}
	if err := jb.Drop(old[0]); err != nil {
		t.Fatal(err)
	}
	if err := jb.Fail(old[0], errors.New("stale")); err != nil {
		t.Fatal(err)
	}
	if got := pendingAll(t, jb); len(got) != 2 || !reflect.DeepEqual(got[1], newer[0]) {
		t.Fatalf("Pending = %+v; the newer change %+v must survive untouched", got, newer[0])
	}
	mustLen(t, jb, 1, 2)
	if err := jb.CompleteDelete(newer[0]); err != nil {
		t.Fatal(err)
	}
	mustLen(t, jb, 0, 1)

	// Duplicates within one call: the last one wins.
	dup := enqueue(t, jb, put("d"), Change{Key: "d", Op: OpDelete})
	got = pendingAll(t, jb)
	if len(got) != 2 || got[1].Seq != dup[1].Seq || got[1].Op != OpDelete {
		t.Errorf("Pending = %+v; want d as delete with seq %d", got, dup[1].Seq)
	}
	mustLen(t, jb, 0, 2)
}

func TestEnqueueRejectsInvalid(t *testing.T) {
	jb := openTemp(t).Section("daily")
	bad := []Change{put("ok"), {Key: "a.csv", Op: 9}}
	err := jb.Enqueue(bad)
	if err == nil || err.Error() != "journal: enqueue a.csv in job daily: invalid op(9)" {
		t.Errorf("Enqueue(bad op) = %v", err)
	}
	if err := jb.Enqueue([]Change{{Op: OpPut}}); err == nil {
		t.Error("Enqueue(empty key) succeeded")
	}
	if bad[0].Seq != 0 {
		t.Errorf("Seq set to %d by a failed Enqueue", bad[0].Seq)
	}
	mustLen(t, jb, 0, 0)
	if _, err := jb.Pending(0, 0); err == nil {
		t.Error("Pending with limit 0 succeeded")
	}
	if _, err := jb.IndexRange("", "", 0); err == nil {
		t.Error("IndexRange with limit 0 succeeded")
	}
	if err := openTemp(t).Section("").Enqueue([]Change{put("k")}); err == nil {
		t.Error("Enqueue in a job with an empty name succeeded")
	}
}

func TestFailAndDrop(t *testing.T) {
	jb := openTemp(t).Section("daily")
	in := enqueue(t, jb, put("k"), put("j"))
	long := strings.Repeat("é", 400) // 800 bytes
	for i := range 3 {
		if err := jb.Fail(in[0], fmt.Errorf("attempt %d: %s", i, long)); err != nil {
			t.Fatal(err)
		}
	}
	got := pendingAll(t, jb)
	if got[0].Attempts != 3 {
		t.Errorf("Attempts = %d, want 3", got[0].Attempts)
	}
	if e := got[0].LastError; len(e) > 500 || !utf8.ValidString(e) || !strings.HasPrefix(e, "attempt 2: éé") {
		t.Errorf("LastError is %d bytes, valid UTF-8 %v, starts %.20q", len(e), utf8.ValidString(e), e)
	}
	if err := jb.Drop(in[0]); err != nil {
		t.Fatal(err)
	}
	if got := pendingAll(t, jb); len(got) != 1 || got[0].Key != "j" {
		t.Errorf("Pending after Drop = %+v", got)
	}
	if err := jb.Fail(in[0], errors.New("late")); err != nil {
		t.Errorf("Fail of a dropped change = %v, want nil", err)
	}
	mustLen(t, jb, 0, 1)
}

func TestCheckpoints(t *testing.T) {
	jb := openTemp(t).Section("daily")
	parts := []PartState{
		{Number: 3, ETag: "e3", Size: 5 << 20, End: 15 << 20, Chunk: 240, Hash: []byte{3}},
		{Number: 1, ETag: "e1", Size: 5 << 20, End: 5 << 20, Chunk: 80, Hash: []byte{1}},
		{Number: 2, ETag: "old", Size: 5 << 20, End: 10 << 20},
		{Number: 2, ETag: "e2", Size: 5 << 20, End: 10 << 20, Chunk: 160},
	}
	cp := Checkpoint{UploadID: "up-1", DestKey: "dst/big", SourceETag: `"s"`, SourceVersion: "v9",
		Size: 20 << 20, PartSize: 5 << 20, Created: t0, Parts: parts}
	saved := slices.Clone(parts)
	if err := jb.SaveCheckpoint("big", cp); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cp.Parts, saved) {
		t.Error("SaveCheckpoint modified the caller's parts")
	}
	want := cp
	want.Parts = []PartState{parts[1], parts[3], parts[0]}
	if got, ok, err := jb.Checkpoint("big"); err != nil || !ok || !reflect.DeepEqual(got, want) {
		t.Errorf("Checkpoint = %+v, %v, %v\nwant %+v", got, ok, err, want)
	}
	for _, k := range []string{"put", "del", "gone"} {
		if err := jb.SaveCheckpoint(k, Checkpoint{UploadID: "u-" + k, Parts: parts[:1]}); err != nil {
			t.Fatal(err)
		}
	}
	all, err := jb.Checkpoints()
	if err != nil || len(all) != 4 || all["put"].UploadID != "u-put" || !reflect.DeepEqual(all["big"], want) {
		t.Fatalf("Checkpoints = %+v, %v", all, err)
	}
	if n, err := jb.UploadCount(); n != 4 || err != nil {
		t.Errorf("UploadCount = %d, %v; want 4", n, err)
	}
	ch := enqueue(t, jb, put("put"), Change{Key: "del", Op: OpDelete})
	if err := jb.Complete(ch[0], record("put")); err != nil {
		t.Fatal(err)
	}
	if err := jb.CompleteDelete(ch[1]); err != nil {
		t.Fatal(err)
	}
	if err := jb.DeleteCheckpoint("gone"); err != nil {
		t.Fatal(err)
	}
	if err := jb.DeleteCheckpoint("never-existed"); err != nil {
		t.Fatal(err)
	}
	all, err = jb.Checkpoints()
	if err != nil || len(all) != 1 || all["big"].UploadID != "up-1" {
		t.Errorf("Checkpoints after completions = %+v, %v; want only big", all, err)
	}
	if n, err := jb.UploadCount(); n != 1 || err != nil {
		t.Errorf("UploadCount after completions = %d, %v; want 1", n, err)
	}
}

func TestCursor(t *testing.T) {
	jb := openTemp(t).Section("daily")
	if err := jb.SetValue("generation", []byte{0, 7}); err != nil {
		t.Fatal(err)
	}
	if err := jb.SetValue("continuation", []byte("a/b")); err != nil {
		t.Fatal(err)
	}
	if got, err := jb.Value("generation"); err != nil || !slices.Equal(got, []byte{0, 7}) {
		t.Errorf("Cursor(generation) = %v, %v", got, err)
	}
	if err := jb.SetValue("generation", nil); err != nil {
		t.Fatal(err)
	}
	if got, err := jb.Value("generation"); err != nil || got != nil {
		t.Errorf("Cursor(generation) after clearing = %v, %v; want nil", got, err)
	}
	if got, err := jb.Value("continuation"); err != nil || string(got) != "a/b" {
		t.Errorf("Cursor(continuation) = %q, %v", got, err)
	}
}

func TestRunsKeepsNewest100(t *testing.T) {
	jb := openTemp(t).Section("daily")
	for i := range 103 {
		r := Run{Started: t0.Add(time.Duration(i) * time.Hour), Finished: t0.Add(time.Duration(i)*time.Hour + time.Minute),
			Copied: int64(i), Skipped: 2, Deleted: 3, Failed: 4, BytesRead: 5, BytesWritten: 6, Complete: i%2 == 0, Error: "e"}
		if err := jb.AddRun(r); err != nil {
			t.Fatal(err)
		}
	}
	all, err := jb.Runs(0)
	if err != nil || len(all) != 100 {
		t.Fatalf("Runs(0) = %d runs, %v; want 100", len(all), err)
	}
	for i, r := range all {
		if want := int64(102 - i); r.Copied != want {
			t.Fatalf("Runs(0)[%d].Copied = %d, want %d (newest first)", i, r.Copied, want)
		}
	}
	want := Run{Started: t0.Add(102 * time.Hour), Finished: t0.Add(102*time.Hour + time.Minute),
		Copied: 102, Skipped: 2, Deleted: 3, Failed: 4, BytesRead: 5, BytesWritten: 6, Complete: true, Error: "e"}
	if got, err := jb.Runs(2); err != nil || len(got) != 2 || !reflect.DeepEqual(got[0], want) {
		t.Errorf("Runs(2) = %+v, %v; want newest %+v first", got, err, want)
	}
}

func TestIndexRange(t *testing.T) {
	jb := openTemp(t).Section("daily")
	keys := []string{"b", "a/b/c", "日本/x", "a", "a/b", "é", "a0", "Z", "a/", "a/\u00ff", "a/~", "\x7f"}
	changes := make([]Change, len(keys))
	for i, k := range keys {
		changes[i] = put(k)
	}
	enqueue(t, jb, changes...)
	for _, c := range changes {
		if err := jb.Complete(c, record(c.Key)); err != nil {
			t.Fatal(err)
		}
	}
	// Byte order of UTF-8, which is what S3 lists.
	sorted := slices.Sorted(slices.Values(keys))

	page := func(prefix string, limit int) []string {
		t.Helper()
		var out []string
		after := ""
		for {
			got, err := jb.IndexRange(prefix, after, limit)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) > limit {
				t.Fatalf("IndexRange returned %d entries, limit %d", len(got), limit)
			}
			for _, e := range got {
				if !reflect.DeepEqual(e.Record, record(e.Key)) {
					t.Errorf("entry %q has record %+v", e.Key, e.Record)
				}
				out = append(out, e.Key)
			}
			if len(got) < limit {
				return out
			}
			after = got[len(got)-1].Key
		}
	}
	if got := page("", 5); !slices.Equal(got, sorted) {
		t.Errorf("all keys paged by 5 = %q\nwant %q", got, sorted)
	}
	want := []string{"a/", "a/b", "a/b/c", "a/~", "a/\u00ff"}
	if got := page("a/", 2); !slices.Equal(got, want) {
		t.Errorf("prefix a/ paged by 2 = %q, want %q", got, want)
	}
	if got := page("日", 1); !slices.Equal(got, []string{"日本/x"}) {
		t.Errorf("prefix 日 = %q", got)
	}
	for _, tc := range []struct {
		prefix, after string
		want          []string
	}{
		{"a/", "", want},
		{"a/", "Z", want},                   // after sorts before the prefix
		{"a/", "a/b", want[2:]},             // strictly greater
		{"a/", "a/a", want[1:]},             // after need not exist
		{"a/", "a0", nil},                   // after sorts beyond the prefix
		{"", "é", []string{"日本/x"}},         // multi-byte keys by bytes
		{"", "\x7f", []string{"é", "日本/x"}}, // 0x7f < 0xc3
		{"zzz", "", nil},
	} {
		got, err := jb.IndexRange(tc.prefix, tc.after, 100)
		keys := make([]string, len(got))
		for i, e := range got {
			keys[i] = e.Key
		}
		if err != nil || !slices.Equal(keys, tc.want) {
			t.Errorf("IndexRange(%q, %q) = %q, %v; want %q", tc.prefix, tc.after, keys, err, tc.want)
		}
	}
}

func TestConcurrentComplete(t *testing.T) {
	jb := openTemp(t).Section("daily")
	const workers, each = 32, 10
	changes := make([]Change, workers*each)
	for i := range changes {
		changes[i] = put(fmt.Sprintf("obj/%04d", i))
	}
	enqueue(t, jb, changes...)
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for _, c := range changes[w*each : (w+1)*each] {
				if err := jb.Complete(c, record(c.Key)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	mustLen(t, jb, len(changes), 0)
	if got := pendingAll(t, jb); len(got) != 0 {
		t.Errorf("Pending has %d items, want none", len(got))
	}
	got, err := jb.IndexRange("", "", len(changes)+1)
	if err != nil || len(got) != len(changes) {
		t.Errorf("IndexRange = %d entries, %v; want %d", len(got), err, len(changes))
	}
}

func TestReopenPersists(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.db")
	j, err := Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	jb := j.Section("daily")
	in := enqueue(t, jb, put("done"), put("queued"), put("failing"))
	if err := jb.Complete(in[0], record("done")); err != nil {
		t.Fatal(err)
	}
	if err := jb.Fail(in[2], errors.New("slow down")); err != nil {
		t.Fatal(err)
	}
	cp := Checkpoint{UploadID: "u", DestKey: "d", Size: 1, PartSize: 1, Created: t0,
		Parts: []PartState{{Number: 1, ETag: "e", Size: 1, End: 1, Hash: []byte("state")}}}
	if err := jb.SaveCheckpoint("queued", cp); err != nil {
		t.Fatal(err)
	}
	if err := jb.SetValue("generation", []byte{9}); err != nil {
		t.Fatal(err)
	}
	run := Run{Started: t0, Finished: t0.Add(time.Second), Copied: 1, Complete: true}
	if err := jb.AddRun(run); err != nil {
		t.Fatal(err)
	}
	if err := j.Section("weekly").SetValue("generation", []byte{1}); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}

	j, err = Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	jb = j.Section("daily")
	if got, err := j.Jobs(); err != nil || !slices.Equal(got, []string{"daily", "weekly"}) {
		t.Errorf("Jobs = %v, %v", got, err)
	}
	if got, ok, err := jb.Lookup("done"); err != nil || !ok || !reflect.DeepEqual(got, record("done")) {
		t.Errorf("Lookup(done) = %+v, %v, %v", got, ok, err)
	}
	mustLen(t, jb, 1, 2)
	want := []Change{in[1], in[2]}
	want[1].Attempts, want[1].LastError = 1, "slow down"
	if got := pendingAll(t, jb); !reflect.DeepEqual(got, want) {
		t.Errorf("Pending = %+v\nwant %+v", got, want)
	}
	if got, ok, err := jb.Checkpoint("queued"); err != nil || !ok || !reflect.DeepEqual(got, cp) {
		t.Errorf("Checkpoint = %+v, %v, %v", got, ok, err)
	}
	if got, err := jb.Value("generation"); err != nil || !slices.Equal(got, []byte{9}) {
		t.Errorf("Cursor = %v, %v", got, err)
	}
	if got, err := jb.Runs(10); err != nil || !reflect.DeepEqual(got, []Run{run}) {
		t.Errorf("Runs = %+v, %v", got, err)
	}
	// Sequences continue after a reopen.
	next := enqueue(t, jb, put("new"))
	if next[0].Seq != 4 {
		t.Errorf("Seq after reopen = %d, want 4", next[0].Seq)
	}
	// The counters match the buckets.
	err = j.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketJobs).Bucket([]byte("daily"))
		if n := b.Bucket(bucketIndex).Stats().KeyN; n != 1 {
			t.Errorf("index holds %d keys, want 1", n)
		}
		if q, k := b.Bucket(bucketQueue).Stats().KeyN, b.Bucket(bucketQKeys).Stats().KeyN; q != 3 || k != 3 {
			t.Errorf("queue holds %d keys and qkeys %d, want 3", q, k)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// writeJournal creates a journal with some content at path and closes it.
func writeJournal(t *testing.T, path string) {
	t.Helper()
	j, err := Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	jb := j.Section("daily")
	changes := make([]Change, 2000)
	for i := range changes {
		changes[i] = put(fmt.Sprintf("some/longish/prefix/%06d.parquet", i))
	}
	enqueue(t, jb, changes...)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
}

// usedSize returns the bytes of the bbolt file at path that hold pages.
func usedSize(t *testing.T, path string) int64 {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int64
	_ = db.View(func(tx *bolt.Tx) error {
		n = tx.Size()
		return nil
	})
	return n
}

func TestOpenBadFile(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "good.db")
	writeJournal(t, src)
	good, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	random := make([]byte, 64<<10)
	_, _ = rand.Read(random)
	used := usedSize(t, src)

	cases := map[string][]byte{
		"random":        random,
		"tiny":          []byte("not a journal"),
		"one page":      good[:4096],
		"meta pages":    good[:8192],
		"half":          good[:len(good)/2],
		"last page cut": good[:used-4096],
		"bad meta page": append(slices.Clone(random[:8192]), good[8192:]...),
		// Valid meta pages, every other page zeroed: bbolt panics on the
		// freelist page inside bolt.Open, which leaves the lock held.
		"zeroed pages": append(slices.Clone(good[:8192]), make([]byte, len(good)-8192)...),
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".db")
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			j, err := Open(path, time.Second)
			if err == nil {
				j.Close()
				t.Fatalf("Open of a %d-byte %s file succeeded", len(data), name)
			}
			if !strings.Contains(err.Error(), path) || !strings.HasPrefix(err.Error(), "journal: open ") {
				t.Errorf("error does not name the operation and path: %v", err)
			}
			if errors.Is(err, ErrLocked) {
				t.Errorf("error wraps ErrLocked: %v", err)
			}
			t.Log(err)
			if name == "zeroed pages" {
				return
			}
			// The failed Open released the lock.
			if _, err := Open(path, 0); errors.Is(err, ErrLocked) {
				t.Errorf("second Open: %v", err)
			}
		})
	}
}

func TestOpenNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.db")
	writeJournal(t, path)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keySchema, binary.BigEndian.AppendUint64(nil, schemaVersion+1))
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	_, err = Open(path, time.Second)
	if err == nil || !strings.Contains(err.Error(), "schema version 2 is newer") || !strings.Contains(err.Error(), path) {
		t.Errorf("Open of a newer schema = %v", err)
	}
}

func TestOpenLockedInProcess(t *testing.T) {
	j := openTemp(t)
	start := time.Now()
	_, err := Open(j.Path(), 200*time.Millisecond)
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), j.Path()) {
		t.Fatalf("second Open in the same process = %v; want ErrLocked naming the path", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("second Open took %v", d)
	}
	if _, err := Open(j.Path(), 0); !errors.Is(err, ErrLocked) {
		t.Errorf("Open with no wait = %v; want ErrLocked", err)
	}
}

const helperEnv = "VOYAGEUR_JOURNAL_TEST_HOLD"

// TestHelperProcess is not a test: TestOpenLockedBySubprocess runs the test
// binary again with helperEnv set, and this holds the journal open until its
// stdin closes.
func TestHelperProcess(t *testing.T) {
	path := os.Getenv(helperEnv)
	if path == "" {
		t.Skip("helper process for TestOpenLockedBySubprocess")
	}
	j, err := Open(path, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestOpenLockedBySubprocess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+path)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var waited atomic.Bool
	t.Cleanup(func() {
		if !waited.Load() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		ready <- line
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case line := <-ready:
		if line != "ready\n" {
			t.Fatalf("helper said %q; stderr: %s", line, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("helper not ready after 30s; stderr: %s", stderr.String())
	}

	start := time.Now()
	_, err = Open(path, 500*time.Millisecond)
	elapsed := time.Since(start)
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), path) {
		t.Errorf("Open while another process holds the journal = %v; want ErrLocked naming the path", err)
	}
	if elapsed > 3*time.Second {
		t.Errorf("Open took %v to give up", elapsed)
	}
	t.Logf("gave up after %v: %v", elapsed.Round(time.Millisecond), err)

	_ = stdin.Close()
	waited.Store(true)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper: %v; stderr: %s", err, stderr.String())
	}
	j, err := Open(path, time.Second)
	if err != nil {
		t.Fatalf("Open after the helper exited: %v", err)
	}
	_ = j.Close()
}

// BenchmarkComplete measures Complete from many goroutines: "batch" is
// Complete itself (db.Batch, one fsync per batch), "update" the same
// transaction with one db.Update (one fsync) per call.
func BenchmarkComplete(b *testing.B) {
	for _, mode := range []string{"batch", "update"} {
		b.Run(mode, func(b *testing.B) {
			jb := openTemp(b).Section("bench")
			changes := make([]Change, b.N)
			for i := range changes {
				changes[i] = put(fmt.Sprintf("obj/%09d", i))
			}
			for chunk := range slices.Chunk(changes, 10000) {
				enqueue(b, jb, chunk...)
			}
			rec := record("obj")
			var next atomic.Int64
			b.SetParallelism(16)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					c := changes[next.Add(1)-1]
					var err error
					if mode == "batch" {
						err = jb.Complete(c, rec)
					} else {
						err = jb.j.db.Update(jb.writeFunc(completeFunc(c, rec)))
					}
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			if n, err := jb.QueueLen(); err != nil || n != 0 {
				b.Errorf("QueueLen = %d, %v after the benchmark", n, err)
			}
		})
	}
}

func TestOpenMakesTheFilePrivate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.db")
	j, err := Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	j.Close()
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if j, err = Open(path, time.Second); err != nil {
		t.Fatal(err)
	}
	j.Close()
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("journal mode %v, want 0600", st.Mode().Perm())
	}
}

// TestOpenReadOnly: a read-only open needs an existing journal, changes no
// byte, shares the file with other readers, waits out a writer like Open,
// and refuses writes.
func TestOpenReadOnly(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "none", "journal.db")
	if _, err := OpenReadOnly(missing, 0); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("OpenReadOnly of a missing journal = %v; want fs.ErrNotExist", err)
	}
	if _, err := os.Stat(filepath.Dir(missing)); !os.IsNotExist(err) {
		t.Errorf("OpenReadOnly created the directory: %v", err)
	}

	j := openTemp(t)
	if err := j.Section("ledgers").Enqueue([]Change{{Key: "a.csv", Op: OpPut, Size: 1}}); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenReadOnly(j.Path(), 0); !errors.Is(err, ErrLocked) {
		t.Errorf("OpenReadOnly while a writer holds the journal = %v; want ErrLocked", err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(j.Path())
	if err != nil {
		t.Fatal(err)
	}
	r1, err := OpenReadOnly(j.Path(), 0)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := OpenReadOnly(j.Path(), 0)
	if err != nil {
		t.Fatalf("a second reader: %v", err)
	}
	if n, err := r2.Section("ledgers").QueueLen(); err != nil || n != 1 {
		t.Errorf("QueueLen = %d, %v; want 1", n, err)
	}
	if err := r1.Section("ledgers").Enqueue([]Change{{Key: "b.csv", Op: OpPut, Size: 1}}); err == nil {
		t.Error("a read-only journal accepted a write")
	}
	if _, err := Open(j.Path(), 0); !errors.Is(err, ErrLocked) {
		t.Errorf("Open while readers hold the journal = %v; want ErrLocked", err)
	}
	r1.Close()
	r2.Close()
	after, err := os.ReadFile(j.Path())
	if err != nil || !bytes.Equal(before, after) {
		t.Errorf("read-only opens changed the journal (%v)", err)
	}
}

// permanentError is a cause that says trying again cannot help.
type permanentError struct{}

func (permanentError) Error() string   { return "InvalidObjectName (400)" }
func (permanentError) Permanent() bool { return true }

// TestFailPermanently: a permanent cause takes the change out of the queue
// (nothing retries it) into the failed list; a new change of the key, or
// Forget, clears it.
func TestFailPermanently(t *testing.T) {
	jb := openTemp(t).Section("daily")
	in := enqueue(t, jb, put("in/../secret.txt"), put("ok"))
	if err := jb.Fail(in[0], fmt.Errorf("stat in/../secret.txt: %w", permanentError{})); err != nil {
		t.Fatal(err)
	}
	if got := pendingAll(t, jb); len(got) != 1 || got[0].Key != "ok" {
		t.Errorf("Pending after a permanent failure = %+v, want only ok", got)
	}
	mustLen(t, jb, 0, 1)
	failed, err := jb.Failed(10)
	if err != nil || len(failed) != 1 || failed[0].Key != "in/../secret.txt" || failed[0].Attempts != 1 ||
		!strings.Contains(failed[0].LastError, "InvalidObjectName") {
		t.Fatalf("Failed = %+v, %v", failed, err)
	}
	// A new change of the key is a new chance.
	enqueue(t, jb, put("in/../secret.txt"))
	if failed, _ := jb.Failed(10); len(failed) != 0 {
		t.Errorf("Failed after a new change = %+v, want none", failed)
	}
	cur := pendingAll(t, jb)
	if err := jb.Fail(cur[len(cur)-1], permanentError{}); err != nil {
		t.Fatal(err)
	}
	unknown, err := jb.Forget([]string{"in/../secret.txt", "ok", "never-seen"})
	if err != nil || len(unknown) != 1 || unknown[0] != "never-seen" {
		t.Errorf("Forget = %v, %v; want never-seen unknown", unknown, err)
	}
	if failed, _ := jb.Failed(10); len(failed) != 0 {
		t.Errorf("Failed after Forget = %+v", failed)
	}
	mustLen(t, jb, 0, 0)
}
