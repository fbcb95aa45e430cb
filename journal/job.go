package journal

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"unicode/utf8"

	bolt "go.etcd.io/bbolt"
)

// Sub-buckets of a job bucket (see doc.go).
var (
	bucketIndex   = []byte("index")
	bucketQueue   = []byte("queue")
	bucketQKeys   = []byte("qkeys")
	bucketUploads = []byte("uploads")
	bucketValues  = []byte("cursor") // named "cursor" before the API said values
	bucketRuns    = []byte("runs")
	bucketCounts  = []byte("counts")

	jobSubBuckets = [][]byte{bucketIndex, bucketQueue, bucketQKeys, bucketUploads, bucketValues, bucketRuns, bucketCounts}

	// bucketFailed holds the changes that failed permanently. Journals
	// written before it lack it until their next write creates it.
	bucketFailed = []byte("failed")
)

// Keys of the counts sub-bucket.
var (
	countIndex = []byte("index")
	countQueue = []byte("queue")
)

const (
	// indexFillPercent is how full bbolt packs the index pages it splits.
	// Its default, one half, suits random inserts; a scan records
	// replicas in nearly ascending key order (the listing's), which with
	// that default leaves every index page half empty: a journal twice the
	// size, all of it read, and resident in the memory map, by each scan.
	indexFillPercent = 0.9
	// keepRuns is how many Run records a job keeps.
	keepRuns = 100
	// maxLastError bounds Change.LastError, in bytes.
	maxLastError = 500
)

// Section is a handle on one job's section of the journal. Its methods are safe for
// concurrent use. Every error names the operation, the job and, where there
// is one, the key.
type Section struct {
	j    *Journal
	name string
}

// jobTx holds a job's sub-buckets within one transaction.
type jobTx struct {
	index, queue, qkeys, uploads, values, runs, counts *bolt.Bucket
	failed                                             *bolt.Bucket // nil in a view of a journal without it
}

// Name returns the job name.
func (jb *Section) Name() string { return jb.name }

func (jb *Section) errorf(op, key string, err error) error {
	if key == "" {
		return fmt.Errorf("journal: %s in job %s: %w", op, jb.name, err)
	}
	return fmt.Errorf("journal: %s %s in job %s: %w", op, key, jb.name, err)
}

// view runs fn in a read-only transaction. fn is not called (and view
// returns nil) when the job has never been written to.
func (jb *Section) view(fn func(*jobTx) error) error {
	return jb.j.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketJobs).Bucket([]byte(jb.name))
		if b == nil {
			return nil
		}
		t, err := subBuckets(b, nil)
		if err != nil {
			return err
		}
		t.failed = b.Bucket(bucketFailed)
		return fn(t)
	})
}

// writeFunc returns a read-write transaction function that creates the job's
// buckets if needed and runs fn.
func (jb *Section) writeFunc(fn func(*jobTx) error) func(*bolt.Tx) error {
	return func(tx *bolt.Tx) error {
		if jb.name == "" {
			return errors.New("empty job name")
		}
		b, err := tx.Bucket(bucketJobs).CreateBucketIfNotExists([]byte(jb.name))
		if err != nil {
			return fmt.Errorf("create job bucket: %w", err)
		}
		t, err := subBuckets(b, (*bolt.Bucket).CreateBucketIfNotExists)
		if err != nil {
			return err
		}
		if t.failed, err = b.CreateBucketIfNotExists(bucketFailed); err != nil {
			return fmt.Errorf("create %s bucket: %w", bucketFailed, err)
		}
		t.index.FillPercent = indexFillPercent
		return fn(t)
	}
}

// update runs fn in one fsync'd read-write transaction.
func (jb *Section) update(fn func(*jobTx) error) error {
	return jb.j.db.Update(jb.writeFunc(fn))
}

// batch runs fn through db.Batch: concurrent calls share one transaction and
// one fsync, and each returns only after its transaction committed. fn may
// run more than once, each time in a fresh transaction.
func (jb *Section) batch(fn func(*jobTx) error) error {
	return jb.j.db.Batch(jb.writeFunc(fn))
}

// subBuckets collects a job's sub-buckets, creating them with create when
// it is not nil. A job bucket lacking one of them is reported as damaged.
func subBuckets(b *bolt.Bucket, create func(*bolt.Bucket, []byte) (*bolt.Bucket, error)) (*jobTx, error) {
	var t jobTx
	dst := []**bolt.Bucket{&t.index, &t.queue, &t.qkeys, &t.uploads, &t.values, &t.runs, &t.counts}
	for i, name := range jobSubBuckets {
		if create != nil {
			sub, err := create(b, name)
			if err != nil {
				return nil, fmt.Errorf("create %s bucket: %w", name, err)
			}
			*dst[i] = sub
			continue
		}
		if *dst[i] = b.Bucket(name); *dst[i] == nil {
			return nil, fmt.Errorf("damaged journal: job bucket has no %s bucket", name)
		}
	}
	return &t, nil
}

func (t *jobTx) count(name []byte) int {
	v := t.counts.Get(name)
	if len(v) != 8 {
		return 0
	}
	return int(binary.BigEndian.Uint64(v))
}

func (t *jobTx) addCount(name []byte, delta int) error {
	n := max(t.count(name)+delta, 0)
	return t.counts.Put(name, u64(uint64(n)))
}

// putIndex stores rec as the index entry of key, keeping the index count.
func (t *jobTx) putIndex(key []byte, rec Record) error {
	v, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode record: %w", err)
	}
	existed := t.index.Get(key) != nil
	if err := t.index.Put(key, v); err != nil {
		return err
	}
	if !existed {
		return t.addCount(countIndex, 1)
	}
	return nil
}

// deleteIndex removes the index entry of key, keeping the index count.
func (t *jobTx) deleteIndex(key []byte) error {
	if t.index.Get(key) == nil {
		return nil
	}
	if err := t.index.Delete(key); err != nil {
		return err
	}
	return t.addCount(countIndex, -1)
}

// queuedSeq returns the seq of the queue item for key, if any.
func (t *jobTx) queuedSeq(key []byte) (uint64, bool) {
	v := t.qkeys.Get(key)
	if len(v) != 8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(v), true
}

// dequeue removes queue item seq for key, but only while qkeys[key] still
// points at it: a newer change for the key, enqueued meanwhile, survives.
func (t *jobTx) dequeue(key []byte, seq uint64) error {
	if cur, ok := t.queuedSeq(key); !ok || cur != seq {
		return nil
	}
	if err := t.qkeys.Delete(key); err != nil {
		return err
	}
	if err := t.queue.Delete(u64(seq)); err != nil {
		return err
	}
	return t.addCount(countQueue, -1)
}

func decodeChange(k, v []byte) (Change, error) {
	var c Change
	if err := json.Unmarshal(v, &c); err != nil {
		return Change{}, fmt.Errorf("decode queue item %x: %w", k, err)
	}
	c.Seq = binary.BigEndian.Uint64(k)
	return c, nil
}

// Lookup returns the index entry of key; ok is false when there is none.
func (jb *Section) Lookup(key string) (rec Record, ok bool, err error) {
	err = jb.view(func(t *jobTx) error {
		v := t.index.Get([]byte(key))
		if v == nil {
			return nil
		}
		ok = true
		return json.Unmarshal(v, &rec)
	})
	if err != nil {
		return Record{}, false, jb.errorf("lookup", key, err)
	}
	return rec, ok, nil
}

// IndexRange returns up to limit index entries whose key starts with prefix
// and is strictly greater than after ("" starts at the beginning), in
// ascending byte order of the key, which is S3 listing order. Each call is
// one short read-only transaction, so a caller can page through the index
// alongside a streamed source listing with memory bounded by limit. limit
// must be positive.
func (jb *Section) IndexRange(prefix, after string, limit int) ([]IndexEntry, error) {
	if limit <= 0 {
		return nil, jb.errorf("index range", prefix, fmt.Errorf("limit %d is not positive", limit))
	}
	var out []IndexEntry
	err := jb.view(func(t *jobTx) error {
		p := []byte(prefix)
		c := t.index.Cursor()
		var k, v []byte
		if after != "" && after >= prefix {
			k, v = c.Seek([]byte(after))
			if k != nil && string(k) == after {
				k, v = c.Next()
			}
		} else {
			k, v = c.Seek(p)
		}
		for ; k != nil && bytes.HasPrefix(k, p) && len(out) < limit; k, v = c.Next() {
			e := IndexEntry{Key: string(k)}
			if err := json.Unmarshal(v, &e.Record); err != nil {
				return fmt.Errorf("decode record of %s: %w", k, err)
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, jb.errorf("index range", prefix, err)
	}
	return out, nil
}

// IndexCount returns the number of index entries. It reads a counter kept by
// every write, so it costs the same for any index size.
func (jb *Section) IndexCount() (n int, err error) {
	err = jb.view(func(t *jobTx) error {
		n = t.count(countIndex)
		return nil
	})
	if err != nil {
		return 0, jb.errorf("count index", "", err)
	}
	return n, nil
}

// Enqueue appends changes to the queue in one fsync'd transaction: when it
// returns nil, every change is durable. Each change gets the next sequence
// number, which Enqueue also stores in changes[i].Seq (only on success).
// Coalescing: a change for a key that already has a queue item (from an
// earlier call or earlier in the same slice) removes that item; the newest
// intent wins. Every change needs a key and a known Op; otherwise nothing is
// enqueued.
func (jb *Section) Enqueue(changes []Change) error {
	if len(changes) == 0 {
		return nil
	}
	for _, c := range changes {
		if c.Key == "" {
			return jb.errorf("enqueue", "", errors.New("change with empty key"))
		}
		if c.Op != OpPut && c.Op != OpDelete {
			return jb.errorf("enqueue", c.Key, fmt.Errorf("invalid %s", c.Op))
		}
	}
	seqs := make([]uint64, len(changes))
	err := jb.update(func(t *jobTx) error {
		added := 0
		for i, c := range changes {
			seq, err := t.queue.NextSequence()
			if err != nil {
				return fmt.Errorf("next sequence: %w", err)
			}
			key := []byte(c.Key)
			// A new change is a new chance: the key's permanent failure,
			// if any, is no longer what status should show.
			if err := t.failed.Delete(key); err != nil {
				return fmt.Errorf("unpark %s: %w", c.Key, err)
			}
			if old, ok := t.queuedSeq(key); ok {
				if err := t.queue.Delete(u64(old)); err != nil {
					return fmt.Errorf("coalesce %s: %w", c.Key, err)
				}
			} else {
				added++
			}
			v, err := json.Marshal(c)
			if err != nil {
				return fmt.Errorf("encode change of %s: %w", c.Key, err)
			}
			if err := t.queue.Put(u64(seq), v); err != nil {
				return fmt.Errorf("queue %s: %w", c.Key, err)
			}
			if err := t.qkeys.Put(key, u64(seq)); err != nil {
				return fmt.Errorf("queue %s: %w", c.Key, err)
			}
			seqs[i] = seq
		}
		return t.addCount(countQueue, added)
	})
	if err != nil {
		if len(changes) == 1 {
			return jb.errorf("enqueue", changes[0].Key, err)
		}
		return jb.errorf(fmt.Sprintf("enqueue %d changes", len(changes)), "", err)
	}
	for i := range changes {
		changes[i].Seq = seqs[i]
	}
	return nil
}

// Pending returns up to limit queue items with Seq > afterSeq, in ascending
// Seq order. limit must be positive.
func (jb *Section) Pending(afterSeq uint64, limit int) ([]Change, error) {
	if limit <= 0 {
		return nil, jb.errorf("pending", "", fmt.Errorf("limit %d is not positive", limit))
	}
	if afterSeq == math.MaxUint64 {
		return nil, nil
	}
	var out []Change
	err := jb.view(func(t *jobTx) error {
		c := t.queue.Cursor()
		for k, v := c.Seek(u64(afterSeq + 1)); k != nil && len(out) < limit; k, v = c.Next() {
			ch, err := decodeChange(k, v)
			if err != nil {
				return err
			}
			out = append(out, ch)
		}
		return nil
	})
	if err != nil {
		return nil, jb.errorf("pending", "", err)
	}
	return out, nil
}

// QueueLen returns the number of queued changes, from a maintained counter.
func (jb *Section) QueueLen() (n int, err error) {
	err = jb.view(func(t *jobTx) error {
		n = t.count(countQueue)
		return nil
	})
	if err != nil {
		return 0, jb.errorf("queue length", "", err)
	}
	return n, nil
}

// Complete records a finished put of c.Key, in one transaction: the index
// entry becomes rec, the queue item c.Seq is removed (only if it is still the
// key's current item: a newer change enqueued meanwhile survives), and the
// key's checkpoint is deleted. It goes through db.Batch, so concurrent calls
// share an fsync; it returns only after the transaction committed.
func (jb *Section) Complete(c Change, rec Record) error {
	if err := jb.batch(completeFunc(c, rec)); err != nil {
		return jb.errorf("complete", c.Key, err)
	}
	return nil
}

// completeFunc is Complete's transaction; it is idempotent, as Batch requires.
func completeFunc(c Change, rec Record) func(*jobTx) error {
	return func(t *jobTx) error {
		key := []byte(c.Key)
		if err := t.putIndex(key, rec); err != nil {
			return err
		}
		if err := t.dequeue(key, c.Seq); err != nil {
			return err
		}
		return t.uploads.Delete(key)
	}
}

// CompleteDelete records a propagated delete of c.Key, in one transaction:
// the index entry, the queue item c.Seq (by the same rule as Complete) and
// any checkpoint are removed. It goes through db.Batch, as Complete does.
func (jb *Section) CompleteDelete(c Change) error {
	err := jb.batch(func(t *jobTx) error {
		key := []byte(c.Key)
		if err := t.deleteIndex(key); err != nil {
			return err
		}
		if err := t.dequeue(key, c.Seq); err != nil {
			return err
		}
		return t.uploads.Delete(key)
	})
	if err != nil {
		return jb.errorf("complete delete", c.Key, err)
	}
	return nil
}

// Drop removes the queue item c.Seq (by the same rule as Complete) without
// touching the index or checkpoints, for a change that needs no action. It
// goes through db.Batch.
func (jb *Section) Drop(c Change) error {
	err := jb.batch(func(t *jobTx) error {
		return t.dequeue([]byte(c.Key), c.Seq)
	})
	if err != nil {
		return jb.errorf("drop", c.Key, err)
	}
	return nil
}

// Fail keeps the queue item c.Seq queued, increments its stored Attempts and
// records cause as its LastError (truncated to 500 bytes). A permanent cause
// (one with a Permanent method that returns true: the same request would
// fail again, such as a key the source rejects as invalid) moves the item
// out of the queue into the failed list instead, where nothing retries it
// and Failed shows it until Forget, or a new change of the key, clears it.
// When the item is no longer the key's current one (completed, dropped or
// replaced by a newer change) Fail does nothing. It goes through db.Batch.
func (jb *Section) Fail(c Change, cause error) error {
	var msg string
	if cause != nil {
		msg = truncateUTF8(cause.Error(), maxLastError)
	}
	err := jb.batch(func(t *jobTx) error {
		if cur, ok := t.queuedSeq([]byte(c.Key)); !ok || cur != c.Seq {
			return nil
		}
		k := u64(c.Seq)
		v := t.queue.Get(k)
		if v == nil {
			return fmt.Errorf("damaged journal: qkeys points at missing queue item %d", c.Seq)
		}
		stored, err := decodeChange(k, v)
		if err != nil {
			return err
		}
		stored.Attempts++
		stored.LastError = msg
		nv, err := json.Marshal(stored)
		if err != nil {
			return fmt.Errorf("encode change: %w", err)
		}
		if permanent(cause) {
			if err := t.dequeue([]byte(c.Key), c.Seq); err != nil {
				return err
			}
			return t.failed.Put([]byte(c.Key), nv)
		}
		return t.queue.Put(k, nv)
	})
	if err != nil {
		return jb.errorf("fail", c.Key, err)
	}
	return nil
}

// permanent reports whether cause says that trying again cannot help.
func permanent(cause error) bool {
	var p interface{ Permanent() bool }
	return errors.As(cause, &p) && p.Permanent()
}

// Failed returns up to limit changes that failed permanently, in key order,
// with their attempts and last error. limit must be positive.
func (jb *Section) Failed(limit int) ([]Change, error) {
	if limit <= 0 {
		return nil, jb.errorf("failed", "", fmt.Errorf("limit %d is not positive", limit))
	}
	var out []Change
	err := jb.view(func(t *jobTx) error {
		if t.failed == nil {
			return nil
		}
		c := t.failed.Cursor()
		for k, v := c.First(); k != nil && len(out) < limit; k, v = c.Next() {
			var ch Change
			if err := json.Unmarshal(v, &ch); err != nil {
				return fmt.Errorf("decode failed change of %q: %w", k, err)
			}
			out = append(out, ch)
		}
		return nil
	})
	if err != nil {
		return nil, jb.errorf("failed", "", err)
	}
	return out, nil
}

// Forget clears keys in one transaction: each one's permanent failure and
// its queued change, if any, so that nothing retries or reports it. It
// returns the keys that had neither.
func (jb *Section) Forget(keys []string) (unknown []string, err error) {
	err = jb.update(func(t *jobTx) error {
		unknown = unknown[:0]
		for _, key := range keys {
			k := []byte(key)
			found := t.failed.Get(k) != nil
			if err := t.failed.Delete(k); err != nil {
				return err
			}
			if seq, ok := t.queuedSeq(k); ok {
				found = true
				if err := t.dequeue(k, seq); err != nil {
					return err
				}
			}
			if !found {
				unknown = append(unknown, key)
			}
		}
		return nil
	})
	if err != nil {
		return nil, jb.errorf("forget", "", err)
	}
	return unknown, nil
}

// truncateUTF8 cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// Checkpoint returns the multipart checkpoint of key; ok is false when there
// is none.
func (jb *Section) Checkpoint(key string) (cp Checkpoint, ok bool, err error) {
	err = jb.view(func(t *jobTx) error {
		v := t.uploads.Get([]byte(key))
		if v == nil {
			return nil
		}
		ok = true
		return json.Unmarshal(v, &cp)
	})
	if err != nil {
		return Checkpoint{}, false, jb.errorf("read checkpoint", key, err)
	}
	return cp, ok, nil
}

// SaveCheckpoint stores cp as the checkpoint of key, in one fsync'd
// transaction (it is called after every finished part). The stored parts
// are sorted by Number; of several parts with the same Number the last one
// in cp.Parts is kept. cp itself is not modified.
func (jb *Section) SaveCheckpoint(key string, cp Checkpoint) error {
	cp.Parts = normalizeParts(cp.Parts)
	v, err := json.Marshal(cp)
	if err != nil {
		return jb.errorf("save checkpoint", key, fmt.Errorf("encode: %w", err))
	}
	err = jb.update(func(t *jobTx) error {
		return t.uploads.Put([]byte(key), v)
	})
	if err != nil {
		return jb.errorf("save checkpoint", key, err)
	}
	return nil
}

// normalizeParts returns a sorted copy of parts without duplicate numbers,
// the last occurrence of a number winning.
func normalizeParts(parts []PartState) []PartState {
	out := slices.Clone(parts)
	slices.Reverse(out) // so the stable sort puts the last occurrence first
	slices.SortStableFunc(out, func(a, b PartState) int { return int(a.Number) - int(b.Number) })
	return slices.CompactFunc(out, func(a, b PartState) bool { return a.Number == b.Number })
}

// DeleteCheckpoint removes the checkpoint of key; removing a missing one is
// not an error.
func (jb *Section) DeleteCheckpoint(key string) error {
	err := jb.update(func(t *jobTx) error {
		return t.uploads.Delete([]byte(key))
	})
	if err != nil {
		return jb.errorf("delete checkpoint", key, err)
	}
	return nil
}

// Checkpoints returns every checkpoint of the job, by source key.
func (jb *Section) Checkpoints() (map[string]Checkpoint, error) {
	out := make(map[string]Checkpoint)
	err := jb.view(func(t *jobTx) error {
		return t.uploads.ForEach(func(k, v []byte) error {
			var cp Checkpoint
			if err := json.Unmarshal(v, &cp); err != nil {
				return fmt.Errorf("decode checkpoint of %s: %w", k, err)
			}
			out[string(k)] = cp
			return nil
		})
	})
	if err != nil {
		return nil, jb.errorf("list checkpoints", "", err)
	}
	return out, nil
}

// UploadCount returns how many checkpoints (unfinished multipart uploads)
// the job holds, without decoding them.
func (jb *Section) UploadCount() (n int, err error) {
	err = jb.view(func(t *jobTx) error {
		n = t.uploads.Stats().KeyN
		return nil
	})
	if err != nil {
		return 0, jb.errorf("count checkpoints", "", err)
	}
	return n, nil
}

// SetValue stores a small named value, such as the scan generation. A nil
// or empty value removes it.
func (jb *Section) SetValue(name string, value []byte) error {
	err := jb.update(func(t *jobTx) error {
		if len(value) == 0 {
			return t.values.Delete([]byte(name))
		}
		return t.values.Put([]byte(name), value)
	})
	if err != nil {
		return jb.errorf("set value", name, err)
	}
	return nil
}

// Value returns a copy of the named value, or nil when it is unset.
func (jb *Section) Value(name string) (value []byte, err error) {
	err = jb.view(func(t *jobTx) error {
		value = bytes.Clone(t.values.Get([]byte(name)))
		return nil
	})
	if err != nil {
		return nil, jb.errorf("read value", name, err)
	}
	return value, nil
}

// AddRun appends r to the run history, keeping the newest 100 runs.
func (jb *Section) AddRun(r Run) error {
	v, err := json.Marshal(r)
	if err != nil {
		return jb.errorf("add run", "", fmt.Errorf("encode: %w", err))
	}
	err = jb.update(func(t *jobTx) error {
		seq, err := t.runs.NextSequence()
		if err != nil {
			return fmt.Errorf("next sequence: %w", err)
		}
		if err := t.runs.Put(u64(seq), v); err != nil {
			return err
		}
		if seq <= keepRuns {
			return nil
		}
		// Sequences are consecutive: drop everything at or below seq-keepRuns.
		var old [][]byte
		c := t.runs.Cursor()
		for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k) <= seq-keepRuns; k, _ = c.Next() {
			old = append(old, k)
		}
		for _, k := range old {
			if err := t.runs.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return jb.errorf("add run", "", err)
	}
	return nil
}

// Runs returns up to n runs, newest first; n <= 0 returns all that are kept.
func (jb *Section) Runs(n int) ([]Run, error) {
	var out []Run
	err := jb.view(func(t *jobTx) error {
		c := t.runs.Cursor()
		for k, v := c.Last(); k != nil && (n <= 0 || len(out) < n); k, v = c.Prev() {
			var r Run
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("decode run %d: %w", binary.BigEndian.Uint64(k), err)
			}
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		return nil, jb.errorf("list runs", "", err)
	}
	return out, nil
}
