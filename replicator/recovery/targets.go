package recovery

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/voyageur-ca/voyageur/backends"
	"github.com/voyageur-ca/voyageur/crypto"
	"github.com/voyageur-ca/voyageur/journal"
	"github.com/voyageur-ca/voyageur/replicator"
	"github.com/voyageur-ca/voyageur/replicator/multipart"
)

// DirTarget restores into a local directory: key "a/b.csv" becomes the file
// DIR/a/b.csv, with the source's modification time. Restored data is
// private to the restoring user (files 0600, directories 0700): it is
// financial data until an operator decides otherwise. Every file is written
// to a temporary name beside its final one and renamed into place only after
// it was verified. All file operations go through os.Root, so neither a
// crafted name nor a symlink can lead outside the directory.
type DirTarget struct {
	root *os.Root
}

var _ Target = (*DirTarget)(nil)

// NewDirTarget opens (creating it if needed) the directory dir.
func NewDirTarget(dir string) (*DirTarget, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("restore target %s: %w", dir, err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("restore target %s: %w", dir, err)
	}
	return &DirTarget{root: root}, nil
}

// Close releases the directory.
func (d *DirTarget) Close() error { return d.root.Close() }

// Name implements Target.
func (d *DirTarget) Name() string { return d.root.Name() }

// Check implements Target: NewDirTarget made the directory.
func (d *DirTarget) Check(context.Context) error { return nil }

// localName turns an original key into a path inside the target, refusing
// names that are absolute, hold NUL or "." or ".." segments, or are empty.
func localName(key string) (string, error) {
	bad := key == "" || strings.ContainsRune(key, 0) || strings.HasPrefix(key, "/") || strings.Contains(key, `\`)
	for _, seg := range strings.Split(strings.TrimSuffix(key, "/"), "/") {
		bad = bad || seg == "" || seg == "." || seg == ".."
	}
	name := filepath.FromSlash(key)
	if bad || !filepath.IsLocal(name) {
		return "", fmt.Errorf("refusing to restore %q: the name would leave the target directory or is not a plain relative path", key)
	}
	return name, nil
}

// Restored implements Target: a file of the right size and modification
// time was put there by an earlier restore, after verification; or a file
// of the right size whose MD5 is the object's MD5 ETag holds its bytes.
func (d *DirTarget) Restored(_ context.Context, m crypto.Meta) (bool, error) {
	name, err := localName(m.Key)
	if err != nil {
		return false, err
	}
	st, err := d.root.Stat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("stat %s: %w", name, err)
	}
	if strings.HasSuffix(m.Key, "/") {
		return st.IsDir() && m.Size == 0, nil
	}
	if !st.Mode().IsRegular() || st.Size() != m.Size {
		return false, nil
	}
	if st.ModTime().Equal(m.MTime) {
		return true, nil
	}
	md5hex, ok := plainMD5(m.ETag)
	if !ok {
		return false, nil
	}
	f, err := d.root.Open(name)
	if err != nil {
		return false, fmt.Errorf("read %s: %w", name, err)
	}
	defer f.Close()
	h := md5.New()
	if _, err := io.Copy(h, f); err != nil {
		return false, fmt.Errorf("read %s: %w", name, err)
	}
	return hex.EncodeToString(h.Sum(nil)) == md5hex, nil
}

// Existing implements Target: anything at the object's path that Restored
// did not recognize (a file, a directory where a file goes, a file where a
// folder marker's directory goes); a regular file is opened.
func (d *DirTarget) Existing(_ context.Context, m crypto.Meta) (io.ReadCloser, bool, error) {
	name, err := localName(m.Key)
	if err != nil {
		return nil, false, err
	}
	st, err := d.root.Lstat(name)
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		return nil, false, nil
	case err != nil:
		return nil, false, fmt.Errorf("stat %s: %w", name, err)
	case strings.HasSuffix(m.Key, "/") && st.IsDir():
		return nil, false, nil
	case !st.Mode().IsRegular():
		return nil, true, nil
	}
	f, err := d.root.Open(name)
	if err != nil {
		return nil, true, fmt.Errorf("read %s: %w", name, err)
	}
	return f, true, nil
}

// plainMD5 returns the MD5 an ETag is, when it is one: S3 gives the MD5 of
// the bytes for a single PUT, not for multipart uploads ("…-N") nor on
// stores whose ETags are opaque (Azure).
func plainMD5(etag string) (string, bool) {
	etag = strings.ToLower(backends.TrimETag(etag))
	if len(etag) != 2*md5.Size {
		return "", false
	}
	if _, err := hex.DecodeString(etag); err != nil {
		return "", false
	}
	return etag, true
}

// Refuse implements Target with DirRefuses.
func (d *DirTarget) Refuse(m crypto.Meta) error { return DirRefuses(m) }

// DirRefuses says why a directory cannot hold the object m describes: a
// name that is not a plain relative path (localName), or a folder marker
// that holds data.
func DirRefuses(m crypto.Meta) error {
	if _, err := localName(m.Key); err != nil {
		return err
	}
	if strings.HasSuffix(m.Key, "/") && m.Size > 0 {
		return markerHoldsData(m.Key, m.Size)
	}
	return nil
}

func markerHoldsData(key string, n int64) error {
	return fmt.Errorf("restore %s: %w (%d bytes); restore it to a bucket to keep them", key, ErrMarkerHoldsData, n)
}

// ErrMarkerHoldsData is a folder marker (a key ending in "/") that holds
// bytes, restored where a folder cannot hold them: a directory.
var ErrMarkerHoldsData = errors.New("the folder marker holds data, which a directory cannot hold")

// Write implements Target. A key ending in "/" (a folder marker) becomes
// a directory; a marker that holds data fails with ErrMarkerHoldsData,
// creating nothing, rather than lose its bytes (a restore to a bucket
// keeps them).
func (d *DirTarget) Write(_ context.Context, key string, fill func(io.Writer) (crypto.Meta, error)) error {
	name, err := localName(key)
	if err != nil {
		return err
	}
	if strings.HasSuffix(key, "/") {
		var n byteCounter
		if _, err := fill(&n); err != nil {
			return err
		}
		if n > 0 {
			return markerHoldsData(key, int64(n))
		}
		return d.root.MkdirAll(name, 0o700)
	}
	if dir := filepath.Dir(name); dir != "." {
		if err := d.root.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("restore %s: %w", key, err)
		}
	}
	// The temporary name is a function of the key: a re-run after a crash
	// reuses (truncates) what the killed run left.
	sum := sha256.Sum256([]byte(key))
	tmp := filepath.Join(filepath.Dir(name), ".voyageur-restore-"+hex.EncodeToString(sum[:8]))
	f, err := d.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("restore %s: %w", key, err)
	}
	m, err := fill(f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && !m.MTime.IsZero() {
		err = d.root.Chtimes(tmp, m.MTime, m.MTime)
	}
	if err == nil {
		err = d.root.Rename(tmp, name)
	}
	if err != nil {
		d.root.Remove(tmp)
		return fmt.Errorf("restore %s: %w", key, err)
	}
	return nil
}

// BucketTarget restores into a bucket under a prefix, with the source's
// content type and user metadata. Each object is first decrypted and
// verified into a temporary local file, then uploaded: one PUT, or parts of
// the job's part size uploaded concurrently, so the bucket never sees
// unverified bytes and memory does not grow with object size.
type BucketTarget struct {
	Bucket      backends.Bucket
	Prefix      string
	PartSize    int64
	Concurrency int
	// TempDir holds the temporary files ("" = os.TempDir()).
	TempDir string

	once   sync.Once
	limits *multipart.Limits // the transfer slots of every part upload
}

var _ Target = (*BucketTarget)(nil)

// Name implements Target.
func (b *BucketTarget) Name() string { return b.Bucket.Name() + "/" + b.Prefix }

// Check implements Target with sync's first request to a destination, a
// listing of multipart uploads: a missing bucket, refused credentials or an
// unreachable store fail there once, instead of once per object after each
// was read and decrypted. A refusal of this call alone (backends.UploadListingRefused) is
// left to the writes.
func (b *BucketTarget) Check(ctx context.Context) error {
	for _, err := range b.Bucket.ListMultipartUploads(ctx, b.Prefix) {
		switch {
		case err == nil, backends.UploadListingRefused(err):
		case errors.Is(err, backends.ErrNoSuchBucket):
			return fmt.Errorf("restore target %s: the bucket does not exist (restore does not create it): %w", b.Bucket.Name(), err)
		default:
			return fmt.Errorf("restore target %s: %w", b.Bucket.Name(), err)
		}
		break
	}
	return nil
}

// Restored implements Target: the object is there with the source's size
// and, for a single-part source, its MD5 ETag (what a single PUT of the same
// bytes yields).
func (b *BucketTarget) Restored(ctx context.Context, m crypto.Meta) (bool, error) {
	if m.ETag == "" || strings.Contains(m.ETag, "-") || m.Size > b.PartSize {
		return false, nil
	}
	info, err := b.Bucket.Stat(ctx, b.Prefix+m.Key, "")
	if backends.IsNotExist(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return info.Size == m.Size && info.ETag == m.ETag, nil
}

// Existing implements Target: an object is at the key. It is read only if
// it is compared: an overwrite does not need its bytes.
func (b *BucketTarget) Existing(ctx context.Context, m crypto.Meta) (io.ReadCloser, bool, error) {
	info, err := b.Bucket.Stat(ctx, b.Prefix+m.Key, "")
	if backends.IsNotExist(err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return &lazyGet{ctx: ctx, b: b.Bucket, key: b.Prefix + m.Key, etag: info.ETag}, true, nil
}

// lazyGet reads an object from its first Read, pinned to the ETag its Stat
// saw: a change in between is an error, not a mix of two versions.
type lazyGet struct {
	ctx       context.Context
	b         backends.Bucket
	key, etag string
	rc        io.ReadCloser
}

func (l *lazyGet) Read(p []byte) (int, error) {
	if l.rc == nil {
		rc, _, err := l.b.Get(l.ctx, l.key, backends.GetOptions{IfMatch: l.etag})
		if err != nil {
			return 0, err
		}
		l.rc = rc
	}
	return l.rc.Read(p)
}

func (l *lazyGet) Close() error {
	if l.rc == nil {
		return nil
	}
	return l.rc.Close()
}

// Refuse implements Target: a bucket holds any key.
func (b *BucketTarget) Refuse(crypto.Meta) error { return nil }

// Write implements Target.
func (b *BucketTarget) Write(ctx context.Context, key string, fill func(io.Writer) (crypto.Meta, error)) error {
	f, err := os.CreateTemp(b.TempDir, ".voyageur-restore-*")
	if err != nil {
		return fmt.Errorf("restore %s: temporary file: %w", key, err)
	}
	defer func() {
		f.Close()
		os.Remove(f.Name())
	}()
	m, err := fill(f)
	if err != nil {
		return err
	}
	size, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return fmt.Errorf("restore %s: %w", key, err)
	}
	opts := backends.PutOptions{ContentType: m.ContentType, Metadata: m.Metadata}
	dest := b.Prefix + key
	if size <= b.PartSize {
		_, err := b.Bucket.Put(ctx, dest, io.NewSectionReader(f, 0, size), size, opts)
		return err
	}
	return b.multipart(ctx, dest, f, size, opts)
}

// multipart uploads size bytes of f in parts through the multipart driver,
// aborting on failure. The parts of every object restored share the
// target's transfer slots: Concurrency part uploads at once in all.
func (b *BucketTarget) multipart(ctx context.Context, key string, f *os.File, size int64, opts backends.PutOptions) error {
	b.once.Do(func() {
		// File sections are read as they are sent: no memory to budget.
		b.limits = multipart.NewLimits(1, max(b.Concurrency, 1), nil)
	})
	partSize := replicator.PartSizeFor(size, b.PartSize)
	id, err := b.Bucket.CreateMultipart(ctx, key, opts)
	if err != nil {
		return err
	}
	up := multipart.Upload{Bucket: b.Bucket, Key: key, ID: id, Budget: b.limits, Window: max(b.Concurrency, 1), First: 1}
	parts, err := multipart.Send(ctx, up, fileSource{f: f, size: size, partSize: partSize})
	if err == nil {
		_, err = multipart.Complete(ctx, b.Bucket, key, id, parts)
	}
	if err != nil {
		if aerr := multipart.Abort(ctx, b.Bucket, key, id); aerr != nil {
			err = errors.Join(err, aerr)
		}
		return err
	}
	return nil
}

// fileSource is the multipart.Source of a restored file: sections of it,
// read as they are sent.
type fileSource struct {
	f              *os.File
	size, partSize int64
}

var _ multipart.Source[struct{}] = fileSource{}

func (s fileSource) Reads() int                                            { return int((s.size + s.partSize - 1) / s.partSize) }
func (s fileSource) Need(int) []int64                                      { return nil }
func (s fileSource) Drop(struct{})                                         {}
func (s fileSource) Read(context.Context, int, [][]byte) (struct{}, error) { return struct{}{}, nil }

func (s fileSource) Gather(i int, _ struct{}) ([]multipart.Part, error) {
	off := int64(i) * s.partSize
	length := min(s.partSize, s.size-off)
	return []multipart.Part{{
		Body: io.NewSectionReader(s.f, off, length), Size: length,
		State: journal.PartState{End: off + length},
	}}, nil
}

// byteCounter counts the bytes written to it.
type byteCounter int64

func (c *byteCounter) Write(p []byte) (int, error) {
	*c += byteCounter(len(p))
	return len(p), nil
}
