// Package backends defines Bucket, the one interface voyageur uses to talk to
// object storage, and the error classification every implementation shares.
//
// Implementations live in sub-packages (s3, minio, fs). They know nothing
// about jobs, journals or encryption. Retries are not their concern either:
// the retry sub-package wraps any Bucket and is the only place that retries.
package backends

import (
	"context"
	"io"
	"iter"
	"time"
)

// ObjectInfo describes one object (or one version of it, or a delete marker).
type ObjectInfo struct {
	Key  string
	Size int64
	// ETag is the entity tag without surrounding quotes.
	ETag string
	// VersionID is empty when the bucket is not versioned (S3's "null"
	// version is reported as empty too).
	VersionID    string
	LastModified time.Time
	// ContentType and Metadata are filled by Stat and Get; List leaves them
	// empty because S3 listings do not carry them.
	ContentType string
	// Metadata holds user metadata (x-amz-meta-*) with lower-case keys and
	// without the prefix.
	Metadata map[string]string
	// IsLatest and DeleteMarker are meaningful only in version listings.
	IsLatest     bool
	DeleteMarker bool
}

// ListOptions selects what List returns.
type ListOptions struct {
	// Prefix restricts the listing to keys that start with it.
	Prefix string
	// StartAfter lists only keys strictly greater than it (ignored when
	// Versions is set).
	StartAfter string
	// Versions lists every version and delete marker, newest first within a
	// key, keys in ascending order.
	Versions bool
}

// GetOptions selects the bytes and the version Get reads.
type GetOptions struct {
	// Offset is the first byte to read; Length is the number of bytes, or
	// -1 (or 0 with Offset 0) for everything up to the end.
	Offset int64
	Length int64
	// VersionID pins the read to one version. IfMatch pins it to an ETag:
	// when the object's current ETag differs, Get fails with an error that
	// satisfies errors.Is(err, ErrPreconditionFailed).
	VersionID string
	IfMatch   string
}

// LockMode is an object-lock retention mode.
type LockMode string

// The retention modes of S3 object lock. Under governance, a principal
// with the s3:BypassGovernanceRetention permission can still delete a
// locked version; under compliance, nobody can until the date passes.
const (
	LockGovernance LockMode = "GOVERNANCE"
	LockCompliance LockMode = "COMPLIANCE"
)

// PutOptions carries what is stored alongside the bytes.
type PutOptions struct {
	ContentType string
	// Metadata is user metadata; keys are stored lower-cased.
	Metadata map[string]string
	// LockMode, when set, puts the object version the write creates under
	// object-lock retention until LockUntil: the version cannot be deleted
	// or overwritten before then (a new version can still be added). The
	// bucket must have object lock enabled, or the write fails and stores
	// nothing. Such a write (Put, and each part of the upload, see
	// PartOptions) carries its Content-MD5, which stores that enforce object
	// lock require.
	LockMode  LockMode
	LockUntil time.Time
}

// PartOptions carries what UploadPart needs to know about the upload.
type PartOptions struct {
	// Locked must be set for the parts of an upload created with a
	// PutOptions.LockMode: stores that enforce object lock (AWS, Backblaze)
	// refuse such a part without an integrity header, so it is sent with
	// its Content-MD5. Unlocked parts are not hashed: that would cost CPU on
	// every byte replicated.
	Locked bool
}

// Part is one uploaded part of a multipart upload.
type Part struct {
	Number int32
	ETag   string
	Size   int64
}

// Upload is an incomplete multipart upload.
type Upload struct {
	Key       string
	UploadID  string
	Initiated time.Time
}

// Bucket is one bucket (or directory) of an object store.
//
// Every method honours ctx cancellation. Errors name the operation and the
// key, wrap the cause with %w, and are classified by the helpers in this
// package: a missing object or version satisfies IsNotExist, a failed
// If-Match satisfies errors.Is(err, ErrPreconditionFailed), an unknown upload
// ID satisfies errors.Is(err, ErrNoSuchUpload), and transient failures
// (throttling, 5xx, resets, timeouts) satisfy IsRetryable. Implementations
// never retry by themselves.
type Bucket interface {
	// Name is a short human description, such as "s3://bucket", used in
	// logs and errors. It never contains credentials.
	Name() string

	// List yields objects under opts.Prefix in ascending byte order of
	// their keys, as it pages through the store: memory does not grow with
	// the number of objects. Iteration stops at the first error, which is
	// yielded with a zero ObjectInfo. A listing that ends without an error
	// is complete.
	List(ctx context.Context, opts ListOptions) iter.Seq2[ObjectInfo, error]

	// Stat returns the metadata of key (of versionID when it is not empty).
	Stat(ctx context.Context, key, versionID string) (ObjectInfo, error)

	// Get opens key for reading. The returned ObjectInfo describes the
	// whole object (Size is the full size, not the range length). The
	// caller closes the reader.
	Get(ctx context.Context, key string, opts GetOptions) (io.ReadCloser, ObjectInfo, error)

	// Put stores size bytes from r under key in one request and returns
	// the new object's info (at least ETag and VersionID). r is a
	// ReadSeeker so that a retry can rewind it.
	Put(ctx context.Context, key string, r io.ReadSeeker, size int64, opts PutOptions) (ObjectInfo, error)

	// CreateMultipart starts a multipart upload and returns its ID.
	CreateMultipart(ctx context.Context, key string, opts PutOptions) (string, error)
	// UploadPart uploads part number (1..10000) and returns its ETag.
	UploadPart(ctx context.Context, key, uploadID string, number int32, r io.ReadSeeker, size int64, opts PartOptions) (string, error)
	// ListParts returns the parts the store holds for the upload, in
	// ascending part number.
	ListParts(ctx context.Context, key, uploadID string) ([]Part, error)
	// CompleteMultipart assembles parts (ascending part numbers) into the
	// object and returns its info (at least ETag and VersionID).
	CompleteMultipart(ctx context.Context, key, uploadID string, parts []Part) (ObjectInfo, error)
	// AbortMultipart discards the upload and its parts. Aborting an upload
	// that no longer exists returns an error satisfying ErrNoSuchUpload.
	AbortMultipart(ctx context.Context, key, uploadID string) error
	// ListMultipartUploads yields incomplete uploads under prefix.
	ListMultipartUploads(ctx context.Context, prefix string) iter.Seq2[Upload, error]

	// Delete removes key (one version when versionID is set). Deleting a
	// missing key is not an error.
	Delete(ctx context.Context, key, versionID string) error

	// ObjectLockEnabled reports whether the bucket has object lock
	// enabled, so that writes with PutOptions.LockMode can succeed.
	ObjectLockEnabled(ctx context.Context) (bool, error)

	// ExtendRetention puts one version of key (the latest when versionID
	// is empty) under object-lock retention in mode until the given date.
	// On a version already locked, the date may only move later: the store
	// refuses an earlier one (governance without a bypass, compliance
	// always). A store without object lock fails.
	ExtendRetention(ctx context.Context, key, versionID string, mode LockMode, until time.Time) error
}
