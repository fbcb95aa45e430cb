// Package replicator copies the objects of a source bucket prefix to a
// destination: it diffs a streamed listing against the journal's index,
// queues every change durably, and drains the queue with bounded workers,
// using concurrent, checkpointed multipart uploads for large objects.
//
// It parses no configuration and prints nothing: the CLI hands it a Job and
// reads back a Summary.
package replicator

import (
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/voyageur-ca/voyageur/backends"
	"github.com/voyageur-ca/voyageur/crypto"
)

// DeletePolicy says what happens to replicas whose source key disappeared.
type DeletePolicy int

const (
	// DeletesKeep leaves replicas in place (the default).
	DeletesKeep DeletePolicy = iota
	// DeletesPropagate deletes replicas of keys missing from a complete
	// source listing, within the MaxDelete limit.
	DeletesPropagate
)

// Limits of S3 multipart uploads.
const (
	MinPartSize = 5 << 20
	MaxPartSize = 5 << 30
	MaxParts    = 10000
)

// Transfer tunes the copy engine.
type Transfer struct {
	// PartSize is the multipart part size and the single-PUT threshold:
	// objects larger than it are copied in parts. It grows for objects
	// that would need more than MaxParts parts.
	PartSize int64
	// Concurrency bounds the requests moving object bytes at once (single
	// PUTs and part uploads together).
	Concurrency int
	// Memory bounds the bytes buffered in flight; it must be at least
	// PartSize.
	Memory int64
	// Bandwidth limits the bytes per second sent to the destination, as
	// they go on the wire (after compression and encryption): the link to
	// the replica is the constrained, paid one, and compressed bytes are
	// what it carries. Restore limits its reads of the replica with it.
	// 0 = no limit.
	Bandwidth int64
	// ReadBandwidth limits the bytes per second read from the source; 0 =
	// no limit.
	ReadBandwidth int64
}

// Job is one replication job.
type Job struct {
	Name   string
	Source backends.Bucket
	// SourceBucket is the source bucket's name, to match event records.
	SourceBucket string
	SourcePrefix string
	Dest         backends.Bucket
	DestPrefix   string
	// Target names the source and the destination as the configuration
	// does (endpoint names, buckets, prefixes), so that a new address for
	// the same store keeps the job's journal state while another store
	// does not (see checkTarget). Empty: the buckets' names.
	Target  string
	Filter  *Filter
	Deletes DeletePolicy
	// MaxDelete caps the deletes of one run: when a run would delete more,
	// it deletes nothing and fails. A negative MaxDelete means
	// MaxDeletePercent of the indexed objects; both zero means the default
	// (the larger of 100 objects and 10 % of the replica).
	MaxDelete        int
	MaxDeletePercent float64
	Transfer         Transfer
	// Encryption, when set, stores every replica as an age-encrypted zstd
	// stream (docs/FORMAT.md); nil copies bytes as they are.
	Encryption *Encryption
	// Retention, when set, puts every replica written under object-lock
	// retention; the destination bucket must have object lock enabled.
	Retention *Retention
	// Shard, when set, limits sync to one shard's source keys: its
	// listing, copies, deletes and stale uploads.
	Shard *JobShard
}

// Retention is the object-lock retention of a job's replicas: each
// version written stays undeletable until Days days after it was written.
type Retention struct {
	Mode backends.LockMode
	Days int
}

// Encryption is a job's replica encryption.
type Encryption struct {
	Options crypto.Options
	// HashedNames hides source keys: a replica is stored under
	// crypto.HashedName(NameSecret, source key) below the destination
	// prefix, and only its META frame knows the original key.
	HashedNames bool
	// NameSecret is the key of the name hash, and (derived from it) of the
	// replica fingerprints, with plain names too. Sync and verify without an
	// identity need it; restore and ls read names from META, and use it,
	// when they have it, to check that each replica's name matches its META.
	NameSecret []byte
}

// Options are per-run settings.
type Options struct {
	// DryRun plans and reports without writing to the destination or the
	// journal.
	DryRun bool
	Logger *slog.Logger
	// Progress, when not nil, is updated as the run goes.
	Progress *Progress
	// Observer, when not nil, is told of every replicated, deleted and
	// failed object (metrics).
	Observer Observer
}

// Observer is told what replication does, for metrics. Its methods are
// called from many goroutines.
type Observer interface {
	// Replicated reports a replica made durable; eventTime is when the
	// change happened at the source (zero when not known, e.g. a scan).
	Replicated(job string, bytes int64, eventTime time.Time)
	Deleted(job string)
	Failed(job string)
	// Reconciled reports a complete reconcile scan.
	Reconciled(job string, at time.Time)
}

// Progress holds live counters a caller may read while a run goes.
type Progress struct {
	ObjectsQueued, ObjectsDone atomic.Int64
	BytesQueued, BytesDone     atomic.Int64
}

// Failure is one object that could not be replicated in this run.
type Failure struct {
	Key   string `json:"key"`
	Op    string `json:"op"`
	Error string `json:"error"`
}

// Summary reports a run.
type Summary struct {
	Job          string    `json:"job"`
	DryRun       bool      `json:"dry_run,omitempty"`
	Copied       int64     `json:"copied"`
	Skipped      int64     `json:"skipped"`
	Deleted      int64     `json:"deleted"`
	Failed       int64     `json:"failed"`
	BytesRead    int64     `json:"bytes_read"`
	BytesWritten int64     `json:"bytes_written"`
	Seconds      float64   `json:"seconds"`
	Failures     []Failure `json:"failures,omitempty"`
	Error        string    `json:"error,omitempty"`
	Started      time.Time `json:"-"`
}

// maxFailuresListed bounds the failures kept in a Summary; Failed counts all.
const maxFailuresListed = 1000
