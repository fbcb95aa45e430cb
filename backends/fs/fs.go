// Package fs implements backends.Bucket over a local directory, for tests,
// laptops and restores to disk.
//
// # Layout
//
// A key names a file under the root, its '/'-separated segments being
// directories. Everything else lives in the hidden directory
// root/.voyageur-fs, which List never shows:
//
//	.voyageur-fs/meta/HH/SHA256(key)   content type, user metadata and ETag of key
//	.voyageur-fs/uploads/ID/upload     key, metadata and start time of a multipart upload
//	.voyageur-fs/uploads/ID/NNNNN-MD5  its part NNNNN, whose MD5 is MD5 (hex)
//	.voyageur-fs/tmp/                  files being written
//
// Every write goes to a file in .voyageur-fs/tmp and is renamed into place,
// so an object is never seen half written; objects, parts and upload records
// are synced before the rename, sidecars are not. A sidecar records the
// size and modification time (and inode, where there is one) of the file it
// describes; a sidecar that does not match its file (the file was changed by
// something else, or a crash fell between the two renames) is ignored: the
// ETag is then computed from the bytes and the content type and metadata are
// empty. Files placed under the root by other means are listed and read like
// any object.
//
// # Differences from S3
//
//   - Keys must be relative '/'-separated paths: not empty, at most 1024
//     bytes, no leading or trailing '/', no empty, "." or ".." segments, no
//     NUL, and not under .voyageur-fs. Others are rejected with an error
//     naming the key. A key cannot be both an object and a "directory" of
//     other keys ("a" and "a/b"): the second Put fails. Case-insensitive
//     file systems fold keys that differ only in case.
//   - Versions are not kept. A version listing yields each object once with
//     IsLatest set and an empty VersionID. Stat and Get with a version ID other
//     than "" or "null" fail with an error wrapping backends.ErrNotExist;
//     Delete with such a version ID does nothing.
//   - List skips symbolic links and special files, and the root's
//     .voyageur-fs. Its memory holds the entries of the directories on the
//     path to the current key, never the whole tree.
//   - Get fails when Offset is past the end of the object; a Length reaching
//     past the end is cut at the end.
//   - As on S3, every part but the last of a completed multipart upload must
//     be at least MinPartSize bytes.
//   - There is no object lock: ObjectLockEnabled reports false, and Put or
//     CreateMultipart with a LockMode, and ExtendRetention, fail, storing nothing, as S3 does
//     for a bucket without object lock. A directory cannot keep a file from
//     being deleted, so honouring the request would be a false promise.
//
// Leftovers of a crash in .voyageur-fs/tmp are not cleaned up automatically;
// they are never visible as objects.
package fs

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	iofs "io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/voyageur-ca/voyageur/backends"
)

// MinPartSize is the smallest size of a multipart part other than the last,
// as on S3.
const MinPartSize = 5 << 20

const (
	hiddenDir  = ".voyageur-fs"
	metaDir    = hiddenDir + "/meta"
	uploadsDir = hiddenDir + "/uploads"
	tmpDir     = hiddenDir + "/tmp"

	maxKeyLen          = 1024
	defaultContentType = "application/octet-stream"
	copyBufSize        = 256 << 10
)

// Bucket is a backends.Bucket stored in a local directory. It is safe for
// concurrent use; concurrent writes to one key end with one of them, whole.
type Bucket struct {
	root *os.Root
	dir  string // absolute path of the root
}

var _ backends.Bucket = (*Bucket)(nil)

// New returns a Bucket rooted at root, creating the directory (and the
// hidden directory inside it) when needed.
func New(root string) (*Bucket, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("open local bucket %s: %w", root, err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("open local bucket %s: %w", root, err)
	}
	r, err := os.OpenRoot(abs)
	if err != nil {
		return nil, fmt.Errorf("open local bucket %s: %w", root, err)
	}
	for _, d := range []string{metaDir, uploadsDir, tmpDir} {
		if err := r.MkdirAll(filepath.FromSlash(d), 0o755); err != nil {
			r.Close()
			return nil, fmt.Errorf("open local bucket %s: %w", root, err)
		}
	}
	return &Bucket{root: r, dir: abs}, nil
}

// Name returns "file://" and the absolute root.
func (b *Bucket) Name() string { return "file://" + filepath.ToSlash(b.dir) }

// checkKey rejects keys that are not safe relative paths under the root.
func checkKey(key string) error {
	switch {
	case key == "":
		return errors.New("empty key")
	case len(key) > maxKeyLen:
		return fmt.Errorf("key longer than %d bytes", maxKeyLen)
	case strings.IndexByte(key, 0) >= 0:
		return errors.New("key contains NUL")
	case key[0] == '/':
		return errors.New("absolute key")
	case filepath.Separator != '/' && strings.ContainsRune(key, filepath.Separator):
		return fmt.Errorf("key contains %q", filepath.Separator)
	case strings.HasSuffix(key, "/"):
		// A folder marker: a directory here, which can hold no bytes,
		// metadata or ETag of its own.
		return errors.New(`a key ending in "/" (a folder marker) cannot be stored as a file`)
	}
	for i, seg := range strings.Split(key, "/") {
		switch {
		case seg == "":
			return errors.New("key has an empty path segment")
		case seg == "." || seg == "..":
			return fmt.Errorf("key has a %q segment", seg)
		case i == 0 && seg == hiddenDir:
			return fmt.Errorf("key is under the reserved %s directory", hiddenDir)
		}
	}
	return nil
}

func invalidKey(op, key string, err error) error {
	return fmt.Errorf("%s %q: invalid key: %w", op, key, err)
}

// osPath turns a '/'-separated path relative to the root into an OS path.
func osPath(p string) string { return filepath.FromSlash(p) }

// notExist reports whether an os error means the key is not a file.
func notExist(err error) bool {
	return errors.Is(err, iofs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

// currentVersion reports whether versionID names the only version fs keeps.
func currentVersion(versionID string) bool { return versionID == "" || versionID == "null" }

// sidecar is what the meta file of a key holds.
type sidecar struct {
	Key         string            `json:"key"`
	Size        int64             `json:"size"`
	ModTime     int64             `json:"mtime_ns"`
	FileID      uint64            `json:"file_id,omitempty"`
	ETag        string            `json:"etag"`
	ContentType string            `json:"content_type,omitempty"`
	Metadata    map[string]string `json:"metadata,omitempty"`
}

func metaPath(key string) string {
	sum := sha256.Sum256([]byte(key))
	h := hex.EncodeToString(sum[:])
	return metaDir + "/" + h[:2] + "/" + h
}

// matches reports whether the sidecar describes the file fi.
func (m *sidecar) matches(key string, fi os.FileInfo) bool {
	return m.Key == key && m.Size == fi.Size() && m.ModTime == fi.ModTime().UnixNano() &&
		(m.FileID == 0 || m.FileID == fileID(fi))
}

// info builds the ObjectInfo of key from its open file f (with stat fi),
// using the sidecar when it still describes the file and the bytes
// otherwise.
func (b *Bucket) info(ctx context.Context, key string, f *os.File, fi os.FileInfo, withMeta bool) (backends.ObjectInfo, error) {
	oi := backends.ObjectInfo{Key: key, Size: fi.Size(), LastModified: fi.ModTime()}
	var m sidecar
	if raw, err := b.root.ReadFile(osPath(metaPath(key))); err == nil && json.Unmarshal(raw, &m) == nil && m.matches(key, fi) {
		oi.ETag = m.ETag
		if withMeta {
			oi.ContentType = m.ContentType
			oi.Metadata = m.Metadata
		}
	} else {
		sum, err := md5Of(ctx, f, fi.Size())
		if err != nil {
			return backends.ObjectInfo{}, err
		}
		oi.ETag = sum
	}
	if withMeta && oi.ContentType == "" {
		oi.ContentType = defaultContentType
	}
	if withMeta && oi.Metadata == nil {
		oi.Metadata = map[string]string{}
	}
	return oi, nil
}

func md5Of(ctx context.Context, f *os.File, size int64) (string, error) {
	h := md5.New()
	if _, err := copyCtx(ctx, h, io.NewSectionReader(f, 0, size)); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// openObject opens the file of key and checks that it is a regular file.
func (b *Bucket) openObject(op, key, versionID string) (*os.File, os.FileInfo, error) {
	if err := checkKey(key); err != nil {
		return nil, nil, invalidKey(op, key, err)
	}
	if !currentVersion(versionID) {
		return nil, nil, fmt.Errorf("%s %s: version %q: local buckets keep no versions: %w", op, key, versionID, backends.ErrNotExist)
	}
	f, err := b.root.Open(osPath(key))
	if err != nil {
		if notExist(err) {
			return nil, nil, fmt.Errorf("%s %s: %w", op, key, backends.ErrNotExist)
		}
		return nil, nil, fmt.Errorf("%s %s: %w", op, key, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("%s %s: %w", op, key, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, nil, fmt.Errorf("%s %s: not a regular file: %w", op, key, backends.ErrNotExist)
	}
	return f, fi, nil
}

// Stat returns the info of key, including content type and metadata.
func (b *Bucket) Stat(ctx context.Context, key, versionID string) (backends.ObjectInfo, error) {
	if err := ctx.Err(); err != nil {
		return backends.ObjectInfo{}, fmt.Errorf("stat %s: %w", key, err)
	}
	f, fi, err := b.openObject("stat", key, versionID)
	if err != nil {
		return backends.ObjectInfo{}, err
	}
	defer f.Close()
	oi, err := b.info(ctx, key, f, fi, true)
	if err != nil {
		return backends.ObjectInfo{}, fmt.Errorf("stat %s: %w", key, err)
	}
	return oi, nil
}

// Get opens key for reading. The reader reads the file opened by Get even if
// the key is replaced meanwhile, and stops with ctx's error once ctx is done.
func (b *Bucket) Get(ctx context.Context, key string, opts backends.GetOptions) (io.ReadCloser, backends.ObjectInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, backends.ObjectInfo{}, fmt.Errorf("get %s: %w", key, err)
	}
	f, fi, err := b.openObject("get", key, opts.VersionID)
	if err != nil {
		return nil, backends.ObjectInfo{}, err
	}
	oi, err := b.info(ctx, key, f, fi, true)
	if err != nil {
		f.Close()
		return nil, backends.ObjectInfo{}, fmt.Errorf("get %s: %w", key, err)
	}
	if opts.IfMatch != "" && strings.Trim(opts.IfMatch, `"`) != oi.ETag {
		f.Close()
		return nil, backends.ObjectInfo{}, fmt.Errorf("get %s: etag is %s, not %s: %w", key, oi.ETag, opts.IfMatch, backends.ErrPreconditionFailed)
	}
	if opts.Offset < 0 || opts.Offset > oi.Size {
		f.Close()
		return nil, backends.ObjectInfo{}, fmt.Errorf("get %s: offset %d outside the object's %d bytes", key, opts.Offset, oi.Size)
	}
	n := oi.Size - opts.Offset
	if opts.Length > 0 && opts.Length < n {
		n = opts.Length
	}
	return &reader{ctx: ctx, r: io.NewSectionReader(f, opts.Offset, n), f: f}, oi, nil
}

type reader struct {
	ctx context.Context
	r   io.Reader
	f   *os.File
}

func (r *reader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}

func (r *reader) Close() error { return r.f.Close() }

// Put stores size bytes from r under key. It fails, storing nothing, when r
// ends early.
func (b *Bucket) Put(ctx context.Context, key string, r io.ReadSeeker, size int64, opts backends.PutOptions) (backends.ObjectInfo, error) {
	if err := checkKey(key); err != nil {
		return backends.ObjectInfo{}, invalidKey("put", key, err)
	}
	if size < 0 {
		return backends.ObjectInfo{}, fmt.Errorf("put %s: negative size %d", key, size)
	}
	if opts.LockMode != "" {
		return backends.ObjectInfo{}, fmt.Errorf("put %s: %w", key, errNoLock)
	}
	h := md5.New()
	tmp, err := b.writeTemp(ctx, io.LimitReader(r, size), size, h, true)
	if err != nil {
		return backends.ObjectInfo{}, fmt.Errorf("put %s: %w", key, err)
	}
	oi, err := b.commit(key, tmp, hex.EncodeToString(h.Sum(nil)), opts)
	if err != nil {
		return backends.ObjectInfo{}, fmt.Errorf("put %s: %w", key, err)
	}
	return oi, nil
}

// writeTemp copies exactly size bytes of r (also into h when not nil) to a
// new file under tmp, synced when sync is set, and returns its path.
func (b *Bucket) writeTemp(ctx context.Context, r io.Reader, size int64, h hash.Hash, sync bool) (string, error) {
	name, f, err := b.createTemp()
	if err != nil {
		return "", err
	}
	w := io.Writer(f)
	if h != nil {
		w = io.MultiWriter(f, h)
	}
	n, err := copyCtx(ctx, w, r)
	if err == nil && n != size {
		err = fmt.Errorf("read %d bytes, expected %d: %w", n, size, io.ErrUnexpectedEOF)
	}
	if err == nil && sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = b.root.Remove(osPath(name))
		return "", err
	}
	return name, nil
}

func (b *Bucket) createTemp() (string, *os.File, error) {
	var rnd [12]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return "", nil, err
	}
	name := tmpDir + "/" + hex.EncodeToString(rnd[:])
	f, err := b.root.OpenFile(osPath(name), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return "", nil, err
	}
	return name, f, nil
}

// commit moves the temp file tmp into place as key, after its sidecar.
func (b *Bucket) commit(key, tmp, etag string, opts backends.PutOptions) (backends.ObjectInfo, error) {
	fi, err := b.root.Stat(osPath(tmp))
	if err != nil {
		_ = b.root.Remove(osPath(tmp))
		return backends.ObjectInfo{}, err
	}
	m := sidecar{
		Key: key, Size: fi.Size(), ModTime: fi.ModTime().UnixNano(), FileID: fileID(fi),
		ETag: etag, ContentType: opts.ContentType, Metadata: backends.LowerKeys(opts.Metadata),
	}
	raw, err := json.Marshal(&m)
	if err == nil {
		// Not synced: a sidecar lost in a crash only costs the content
		// type and metadata (the ETag is then computed from the bytes).
		err = b.writeFileAtomic(metaPath(key), raw, false)
	}
	if err == nil {
		err = b.renameInto(tmp, key)
	}
	if err != nil {
		_ = b.root.Remove(osPath(tmp))
		return backends.ObjectInfo{}, err
	}
	return backends.ObjectInfo{Key: key, Size: m.Size, ETag: etag, LastModified: fi.ModTime()}, nil
}

// writeFileAtomic writes data to name through a temp file, synced when sync
// is set.
func (b *Bucket) writeFileAtomic(name string, data []byte, sync bool) error {
	tmp, err := b.writeTemp(context.Background(), bytes.NewReader(data), int64(len(data)), nil, sync)
	if err != nil {
		return err
	}
	if err := b.renameInto(tmp, name); err != nil {
		_ = b.root.Remove(osPath(tmp))
		return err
	}
	return nil
}

// renameInto renames tmp to name, creating name's parent directories. It
// tries again when a concurrent Delete removed a parent directory that had
// just become empty.
func (b *Bucket) renameInto(tmp, name string) error {
	var err error
	for range 5 {
		if dir := path.Dir(name); dir != "." {
			if err = b.root.MkdirAll(osPath(dir), 0o755); err != nil {
				return err
			}
		}
		if err = b.root.Rename(osPath(tmp), osPath(name)); err == nil || !errors.Is(err, iofs.ErrNotExist) {
			return err
		}
	}
	return err
}

// errNoLock refuses a write that asks for object-lock retention.
var errNoLock = errors.New("local buckets have no object lock")

// ObjectLockEnabled implements backends.Bucket: a directory has no object
// lock.
func (b *Bucket) ObjectLockEnabled(ctx context.Context) (bool, error) {
	return false, ctx.Err()
}

// ExtendRetention implements backends.Bucket: a directory has no object
// lock, so it always fails.
func (b *Bucket) ExtendRetention(_ context.Context, key, _ string, _ backends.LockMode, _ time.Time) error {
	return fmt.Errorf("extend retention of %s: %w", key, errNoLock)
}

// Delete removes key and its sidecar, then the directories that became
// empty. A missing key, or a version ID other than "" or "null", is not an
// error.
func (b *Bucket) Delete(ctx context.Context, key, versionID string) error {
	if err := checkKey(key); err != nil {
		return invalidKey("delete", key, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	if !currentVersion(versionID) {
		return nil
	}
	fi, err := b.root.Lstat(osPath(key))
	switch {
	case notExist(err):
		return nil
	case err != nil:
		return fmt.Errorf("delete %s: %w", key, err)
	case fi.IsDir():
		return nil // a "directory" of other keys, not an object
	}
	if err := b.root.Remove(osPath(key)); err != nil && !notExist(err) {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	if err := b.root.Remove(osPath(metaPath(key))); err != nil && !notExist(err) {
		return fmt.Errorf("delete %s: remove metadata: %w", key, err)
	}
	for dir := path.Dir(key); dir != "."; dir = path.Dir(dir) {
		if b.root.Remove(osPath(dir)) != nil {
			break // not empty (or gone): stop
		}
	}
	return nil
}

// copyCtx copies src to dst, checking ctx between chunks.
func copyCtx(ctx context.Context, dst io.Writer, src io.Reader) (int64, error) {
	buf := make([]byte, copyBufSize)
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		nr, rerr := src.Read(buf)
		if nr > 0 {
			nw, werr := dst.Write(buf[:nr])
			n += int64(nw)
			if werr != nil {
				return n, werr
			}
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}
