package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// ErrLocked is returned (wrapped) by Open when another process holds the journal.
var ErrLocked = errors.New("journal is locked by another voyageur run")

// batchDelay is how long db.Batch waits for more calls to share a
// transaction. bbolt's default of 10ms caps a few dozen workers at a few
// thousand completions a second; 1ms still gathers whole batches while one
// commits (BenchmarkComplete).
const batchDelay = time.Millisecond

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
// yields an error naming the path; Open never panics on a bad file. (When
// bbolt itself fails on a garbled page while opening, its memory map keeps
// the file locked until the process exits.)
func Open(path string, lockTimeout time.Duration) (*Journal, error) {
	if path == "" {
		return nil, errors.New("journal: open: empty path")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("journal: open %s: create directory: %w", path, err)
	}
	db, err := openDB(path, lockTimeout, false)
	if err != nil {
		return nil, err
	}
	// The journal holds the file keys of unfinished encrypted uploads: it
	// is private to its owner even when an older file was not.
	if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(path, 0o600); err != nil {
			db.Close()
			return nil, fmt.Errorf("journal: open %s: restrict permissions: %w", path, err)
		}
	}
	return &Journal{db: db, path: path}, nil
}

// OpenReadOnly opens an existing journal for reading only, for commands
// that only read (status, a dry run): it creates nothing and changes no
// byte, so it works on a file the process may not write. It takes bbolt's
// shared lock: readers do not exclude each other, and a run holding the
// journal for writing makes OpenReadOnly fail like Open (ErrLocked after
// lockTimeout). A missing file is an error wrapping fs.ErrNotExist; the
// journal's write methods return errors.
func OpenReadOnly(path string, lockTimeout time.Duration) (*Journal, error) {
	if path == "" {
		return nil, errors.New("journal: open: empty path")
	}
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("journal: open %s: %w", path, err)
	}
	db, err := openDB(path, lockTimeout, true)
	if err != nil {
		return nil, err
	}
	return &Journal{db: db, path: path}, nil
}

// openDB opens the file and maps bbolt's errors to the package's.
func openDB(path string, lockTimeout time.Duration, readOnly bool) (*bolt.DB, error) {
	// bbolt waits forever on a zero timeout: one nanosecond means one attempt.
	db, err := openFile(path, max(lockTimeout, time.Nanosecond), readOnly)
	switch {
	case errors.Is(err, bolterrors.ErrTimeout):
		return nil, fmt.Errorf("journal: open %s: %w (waited %s)", path, ErrLocked, max(lockTimeout, 0))
	case invalidFile(err):
		return nil, fmt.Errorf("journal: open %s: %w: %w", path, errInvalidFile, err)
	case err != nil:
		return nil, fmt.Errorf("journal: open %s: %w", path, err)
	}
	db.MaxBatchDelay = batchDelay
	return db, nil
}

// invalidFile reports whether err is bbolt's verdict that the file is not a
// database it can read. bbolt has no sentinel for a file shorter than its two
// meta pages, only this message.
func invalidFile(err error) bool {
	return errors.Is(err, bolterrors.ErrInvalid) || errors.Is(err, bolterrors.ErrChecksum) ||
		errors.Is(err, bolterrors.ErrVersionMismatch) ||
		(err != nil && strings.HasPrefix(err.Error(), "file size too small"))
}

// openFile opens the bbolt file, checks it and prepares the top-level
// buckets (read-only: checks that they are there).
//
// An existing file is first opened read-only to check that it holds every
// page its meta page refers to: bbolt reads pages through a memory map, and
// a page beyond the end of a truncated file would fault. The read-only open
// touches no page but the meta pages, and it shares the lock with nobody
// writing, so the lock wait applies to it too.
//
// Some damage bbolt reports by panicking (for example a garbled freelist
// page, which the read-write open reads). openDB turns that panic, or a
// fault on the memory map, into errInvalidFile. A panic inside bolt.Open
// itself leaves that database's memory map, and with it the file lock,
// behind until the process exits; the file is closed.
func openFile(path string, lockTimeout time.Duration, readOnly bool) (db *bolt.DB, err error) {
	deadline := time.Now().Add(lockTimeout)
	if fi, err := os.Stat(path); err == nil && fi.Size() > 0 {
		if err := checkSize(path, lockTimeout); err != nil {
			return nil, err
		}
	}

	var file *os.File
	opts := &bolt.Options{
		ReadOnly: readOnly,
		Timeout:  max(time.Until(deadline), time.Nanosecond),
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
	check := prepare
	if readOnly {
		check = checkPrepared
	}
	if err := check(db); err != nil {
		_ = db.Close()
		return nil, err
	}
	return db, nil
}

// checkSize opens the existing file read-only and checks that it is at
// least as long as the pages its meta page counts.
func checkSize(path string, lockTimeout time.Duration) (err error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: lockTimeout})
	if err != nil {
		return err
	}
	defer func() {
		if cerr := db.Close(); err == nil && cerr != nil {
			err = cerr
		}
	}()
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	return db.View(func(tx *bolt.Tx) error {
		if tx.Size() > fi.Size() {
			return fmt.Errorf("%w: file is %d bytes, its pages need %d", errInvalidFile, fi.Size(), tx.Size())
		}
		return nil
	})
}

// prepare creates the top-level buckets and checks or records the schema
// version.
func prepare(db *bolt.DB) error {
	return db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return fmt.Errorf("create meta bucket: %w", err)
		}
		if v := meta.Get(keySchema); v != nil {
			if err := checkSchema(v); err != nil {
				return err
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

// checkSchema checks the schema version a journal records.
func checkSchema(v []byte) error {
	if len(v) != 8 {
		return fmt.Errorf("%w: schema version is %d bytes, want 8", errInvalidFile, len(v))
	}
	if got := binary.BigEndian.Uint64(v); got > schemaVersion {
		return fmt.Errorf("journal schema version %d is newer than this voyageur supports (%d): upgrade voyageur", got, schemaVersion)
	}
	return nil
}

// checkPrepared is prepare for a read-only journal: the buckets and the
// schema version prepare writes must be there.
func checkPrepared(db *bolt.DB) error {
	return db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil || meta.Get(keySchema) == nil || tx.Bucket(bucketJobs) == nil {
			return fmt.Errorf("%w: no schema version or jobs bucket", errInvalidFile)
		}
		return checkSchema(meta.Get(keySchema))
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

// Section returns a handle on the named job's section. It is cheap and does no I/O: the
// job's buckets are created by its first write, and reads of a job that has
// nothing yet return empty results.
func (j *Journal) Section(name string) *Section {
	return &Section{j: j, name: name}
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
