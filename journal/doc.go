// Package journal is voyageur's local, durable record of replication state,
// kept in one bbolt file. It does no network I/O.
//
// # Schema (version 1)
//
// All integers used as keys or counters are 8-byte big-endian unsigned
// integers, so byte order is numeric order. Values are compact JSON of the
// exported types (short field names given by their struct tags). Source keys
// are stored as raw bytes, so bucket order is byte order, which is S3
// listing order.
//
//	meta                         top-level bucket
//	  "schema"  → uint64         layout version; Open refuses a newer one
//	jobs                         top-level bucket
//	  <job name>                 one bucket per job, created by its first write,
//	                             together with all of its sub-buckets:
//	    index   source key → Record       what the replica of the key is
//	    queue   seq        → Change      pending changes; Seq is the key, not in the value;
//	                                     seq comes from the queue bucket's sequence
//	    qkeys   source key → seq         the key's current queue item (coalescing)
//	    uploads source key → Checkpoint  multipart upload state, Parts sorted by Number
//	    cursor  name       → raw bytes   small named values (Section.Value), e.g.
//	                                     "generation"; the bucket name is older than the API
//	    runs    seq        → Run         run history, the newest 100 kept
//	    counts  "index"    → uint64      number of index entries
//	            "queue"    → uint64      number of queue items
//	    failed  source key → Change      changes that failed permanently (Fail with a
//	                                     permanent cause), out of the queue; absent in
//	                                     journals not written since it was added
//
// # Invariants
//
//   - A change is durable in the queue before it is acted on: Enqueue commits
//     (and fsyncs) one transaction before it returns, and a change source
//     acknowledges an event only after Enqueue returned nil.
//   - A key has at most one queue item, and qkeys points at it: Enqueue
//     replaces an older item for the same key (the newest intent wins).
//   - Index update and queue removal happen in one transaction (Complete,
//     CompleteDelete), after the destination confirmed the write. The queue
//     item is removed only while qkeys still points at its seq, so a change
//     enqueued during the transfer survives the completion of an older one.
//   - The counts bucket always equals the number of keys in index and queue.
//   - bbolt writes happen only inside Update, or Batch for the per-object
//     calls (Complete, CompleteDelete, Drop, Fail), which return only after
//     their transaction committed.
//   - One process per journal: Open takes bbolt's exclusive file lock with a
//     bounded wait and fails with ErrLocked rather than waiting forever.
package journal
