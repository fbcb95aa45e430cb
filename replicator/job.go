// Package replicator holds what the replication engine and the recovery
// path share: a job (its source, destination, names, encryption, transfer
// settings and shard), how source keys map to replica names and
// fingerprints, and the counters every run reports from.
//
// The work itself is in its subpackages:
//
//   - engine: sync and watch (scan, queue, put and delete, rebuild);
//   - multipart: the one multipart upload driver;
//   - events: the change event sources watch listens to (webhook, SQS,
//     MinIO listen, S3, EventBridge and Event Grid event parsing);
//   - recovery: the disaster-recovery read path (catalog, restore and its
//     targets, verify), which needs neither the journal nor the source;
//   - serve: the replica as a read-only S3 endpoint;
//   - drill: recovery drills and their evidence report.
//
// None of them parses configuration or prints: the CLI hands them a Job
// and reads back a Summary.
package replicator

import (
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

// Job is one replication job.
type Job struct {
	Name   string
	Source backends.Bucket
	// SourceBucket is the source bucket's name, to match event records.
	SourceBucket string
	SourcePrefix string
	Dest         backends.Bucket
	DestPrefix   string
	// Route names the source and the destination as the configuration
	// does (endpoint names, buckets, prefixes), so that a new address for
	// the same store keeps the job's journal state while another store
	// does not (see RouteName). Empty: the buckets' names.
	Route   string
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
