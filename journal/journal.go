package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// ErrLocked is returned (wrapped) by Open when another process holds the journal.
var ErrLocked = errors.New("journal is locked by another voyageur run")

// schemaVersion is the layout this package reads and writes; see doc.go.
const schemaVersion = 1

var (
	bucketMeta = []byte("meta")
	bucketJobs = []byte("jobs")
	keySchema  = []byte("schema")

	// errInvalidFile marks a file bbolt cannot read as a database.
	errInvalidFile = errors.New("not a valid journal (corrupt, truncated or not a bbolt database)")
)

// Journal is an open journal file. Its methods are safe for concurrent use.
type Journal struct {
	db   *bolt.DB
	path string
}

// Open opens or creates the journal file at path. A missing parent directory
// is created with mode 0700, a new file with mode 0600.
//
// Open takes bbolt's exclusive file lock, waiting at most lockTimeout (a
// non-positive timeout tries once). If another process holds the lock, Open
// returns an error that wraps ErrLocked and names the path. A file that is not
// a bbolt database, is corrupt or truncated, or was written by a newer schema
// yields an error naming the path; Open never panics on a bad file.
func Open(path string, lockTimeout time.Duration) (*Journal, error) {
	if path == "" {
		return nil, errors.New("journal: open: empty path")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("journal: open %s: create directory: %w", path, err)
	}
	if lockTimeout <= 0 {
		// bbolt waits forever on a zero timeout: one nanosecond means one attempt.
		lockTimeout = time.Nanosecond
	}
	db, err := openDB(path, lockTimeout)
	switch {
	case errors.Is(err, bolterrors.ErrTimeout):
		return nil, fmt.Errorf("journal: open %s: %w (gave up after %s)", path, ErrLocked, lockTimeout)
	case errors.Is(err, bolterrors.ErrInvalid), errors.Is(err, bolterrors.ErrChecksum),
		errors.Is(err, bolterrors.ErrVersionMismatch):
		return nil, fmt.Errorf("journal: open %s: %w: %w", path, errInvalidFile, err)
	case err != nil:
		return nil, fmt.Errorf("journal: open %s: %w", path, err)
	}
	return &Journal{db: db, path: path}, nil
}

// openDB opens the bbolt file and checks it. bbolt panics (or faults on the
// memory map) on some damaged files, for example one truncated below its
// freelist page; openDB turns that into errInvalidFile. A fault inside
// bolt.Open leaves its memory map behind; the file is closed, which releases
// the lock.
func openDB(path string, lockTimeout time.Duration) (db *bolt.DB, err error) {
	var file *os.File
	opts := &bolt.Options{
		Timeout: lockTimeout,
		OpenFile: func(name string, flag int, perm os.FileMode) (*os.File, error) {
			f, err := os.OpenFile(name, flag, perm)
			file = f
			return f, err
		},
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		if db != nil {
			_ = db.Close()
		} else if file != nil {
			_ = file.Close()
		}
		db, err = nil, fmt.Errorf("%w: %v", errInvalidFile, r)
	}()

	db, err = bolt.Open(path, 0o600, opts)
	if err != nil {
		return nil, err
	}
	if err := checkDB(db, file); err != nil {
		_ = db.Close()
		return nil, err
	}
	return db, nil
}

// checkDB verifies that the file holds every page its meta page refers to
// (so no later read faults past the end of a truncated file), then creates
// the top-level buckets and checks or records the schema version.
func checkDB(db *bolt.DB, file *os.File) error {
	info, err := file.Stat()
	if err != nil {
		return err
	}
	err = db.View(func(tx *bolt.Tx) error {
		if tx.Size() > info.Size() {
			return fmt.Errorf("%w: file is %d bytes, its pages need %d", errInvalidFile, info.Size(), tx.Size())
		}
		return nil
	})
	if err != nil {
		return err
	}
	return db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return fmt.Errorf("create meta bucket: %w", err)
		}
		if v := meta.Get(keySchema); v != nil {
			if len(v) != 8 {
				return fmt.Errorf("%w: schema version is %d bytes, want 8", errInvalidFile, len(v))
			}
			if got := binary.BigEndian.Uint64(v); got > schemaVersion {
				return fmt.Errorf("journal schema version %d is newer than this voyageur supports (%d): upgrade voyageur", got, schemaVersion)
			}
		} else if err := meta.Put(keySchema, u64(schemaVersion)); err != nil {
			return fmt.Errorf("record schema version: %w", err)
		}
		if _, err := tx.CreateBucketIfNotExists(bucketJobs); err != nil {
			return fmt.Errorf("create jobs bucket: %w", err)
		}
		return nil
	})
}

// Close releases the file lock and closes the journal. Calls in progress
// finish first.
func (j *Journal) Close() error {
	if err := j.db.Close(); err != nil {
		return fmt.Errorf("journal: close %s: %w", j.path, err)
	}
	return nil
}

// Path returns the path the journal was opened with.
func (j *Journal) Path() string { return j.path }

// Job returns a handle on the named job. It is cheap and does no I/O: the
// job's buckets are created by its first write, and reads of a job that has
// nothing yet return empty results.
func (j *Journal) Job(name string) *Job {
	return &Job{j: j, name: name}
}

// Jobs returns the names of the jobs that have been written to, in byte order.
func (j *Journal) Jobs() ([]string, error) {
	var names []string
	err := j.db.View(func(tx *bolt.Tx) error {
		jobs := tx.Bucket(bucketJobs)
		if jobs == nil {
			return nil
		}
		return jobs.ForEachBucket(func(k []byte) error {
			names = append(names, string(k))
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("journal: list jobs: %w", err)
	}
	return names, nil
}

// u64 encodes v as 8 big-endian bytes, so byte order is numeric order.
func u64(v uint64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), v)
}
