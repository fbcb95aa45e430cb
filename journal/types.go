package journal

import (
	"fmt"
	"time"
)

// Record is the index entry for one source key: what its replica is.
type Record struct {
	SourceETag    string    `json:"se,omitempty"`
	SourceVersion string    `json:"sv,omitempty"`
	Size          int64     `json:"sz"`
	MTime         time.Time `json:"mt,omitzero"` // source LastModified
	DestKey       string    `json:"dk,omitempty"`
	DestETag      string    `json:"de,omitempty"`
	DestVersion   string    `json:"dv,omitempty"`
	ReplicatedAt  time.Time `json:"ra,omitzero"`
	// Format is how the replica is stored: "" for the source bytes as they
	// are, "age" for the encrypted replica format.
	Format string `json:"f,omitempty"`
}

// IndexEntry is a Record together with its source key, as returned by IndexRange.
type IndexEntry struct {
	Key string
	Record
}

// Op is what a queued change asks for.
type Op uint8

// The operations a Change can carry.
const (
	OpPut    Op = 1
	OpDelete Op = 2
)

// String returns "put" or "delete" ("op(N)" for an unknown value).
func (o Op) String() string {
	switch o {
	case OpPut:
		return "put"
	case OpDelete:
		return "delete"
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// Change is one queued intent for a source key. The listing or event fields
// (VersionID, ETag, Size) are hints: the source stays the truth.
type Change struct {
	Seq       uint64    `json:"-"` // assigned by Enqueue; the queue key, not stored in the value
	Key       string    `json:"k"`
	Op        Op        `json:"op"`
	VersionID string    `json:"v,omitempty"`
	ETag      string    `json:"e,omitempty"`
	Size      int64     `json:"sz,omitempty"`
	Reason    string    `json:"r,omitempty"` // "scan", "event", ...
	EventTime time.Time `json:"t,omitzero"`
	Attempts  int       `json:"n,omitempty"`
	LastError string    `json:"err,omitempty"`
}

// PartState is one finished part of a multipart upload.
type PartState struct {
	Number int32  `json:"n"`
	ETag   string `json:"e"`
	Size   int64  `json:"sz"`           // bytes uploaded for this part
	End    int64  `json:"end"`          // source (plaintext) offset at the end of this part
	Chunk  uint64 `json:"ch,omitempty"` // encryption chunk counter at its end (0 in plain mode)
	Hash   []byte `json:"h,omitempty"`  // serialized hash state at its end (may be nil)
}

// Checkpoint is the resumable state of one multipart upload.
type Checkpoint struct {
	UploadID      string      `json:"u"`
	DestKey       string      `json:"dk"`
	SourceETag    string      `json:"se,omitempty"`
	SourceVersion string      `json:"sv,omitempty"`
	Size          int64       `json:"sz"`
	PartSize      int64       `json:"ps"`
	Created       time.Time   `json:"c,omitzero"`
	Parts         []PartState `json:"p,omitempty"` // sorted by Number, no duplicates
	// Writer is the replica writer's state (crypto.Writer.State) of an
	// encrypted upload: it holds the object's file key, so that a resumed
	// part is byte-identical to the one it replaces. It lives only as long
	// as the upload is unfinished.
	Writer []byte `json:"w,omitempty"`
	// Locked records that the upload was created with object-lock
	// retention: its parts must carry their Content-MD5.
	Locked bool `json:"l,omitempty"`
}

// Run is the summary of one replication run, kept for status.
type Run struct {
	Started      time.Time `json:"s,omitzero"`
	Finished     time.Time `json:"f,omitzero"`
	Copied       int64     `json:"c,omitempty"`
	Skipped      int64     `json:"k,omitempty"`
	Deleted      int64     `json:"d,omitempty"`
	Failed       int64     `json:"x,omitempty"`
	BytesRead    int64     `json:"br,omitempty"`
	BytesWritten int64     `json:"bw,omitempty"`
	Complete     bool      `json:"ok,omitempty"` // the listing completed
	Error        string    `json:"err,omitempty"`
}
