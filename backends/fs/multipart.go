package fs

import (
	"cmp"
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/voyageur-ca/voyageur/backends"
)

const uploadIDLen = 32 // hex digits

// upload is what uploads/ID/upload holds.
type upload struct {
	Key         string            `json:"key"`
	ContentType string            `json:"content_type,omitempty"`
	Metadata    map[string]string `json:"metadata,omitempty"`
	Initiated   time.Time         `json:"initiated"`
}

func uploadDir(id string) string { return uploadsDir + "/" + id }

// validUploadID keeps upload IDs from naming anything but an upload
// directory.
func validUploadID(id string) bool {
	if len(id) != uploadIDLen {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil
}

// loadUpload reads the upload and checks that it belongs to key; anything
// else is ErrNoSuchUpload.
func (b *Bucket) loadUpload(key, id string) (upload, error) {
	var u upload
	if !validUploadID(id) {
		return u, fmt.Errorf("upload %q: %w", id, backends.ErrNoSuchUpload)
	}
	raw, err := b.root.ReadFile(osPath(uploadDir(id) + "/upload"))
	if err != nil {
		if notExist(err) {
			return u, fmt.Errorf("upload %s: %w", id, backends.ErrNoSuchUpload)
		}
		return u, err
	}
	if err := json.Unmarshal(raw, &u); err != nil {
		return u, fmt.Errorf("upload %s: %w", id, err)
	}
	if u.Key != key {
		return u, fmt.Errorf("upload %s belongs to %s: %w", id, u.Key, backends.ErrNoSuchUpload)
	}
	return u, nil
}

// CreateMultipart starts a multipart upload of key.
func (b *Bucket) CreateMultipart(ctx context.Context, key string, opts backends.PutOptions) (string, error) {
	if err := checkKey(key); err != nil {
		return "", invalidKey("create multipart upload of", key, err)
	}
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("create multipart upload of %s: %w", key, err)
	}
	if opts.LockMode != "" {
		return "", fmt.Errorf("create multipart upload of %s: %w", key, errNoLock)
	}
	var rnd [uploadIDLen / 2]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return "", fmt.Errorf("create multipart upload of %s: %w", key, err)
	}
	id := hex.EncodeToString(rnd[:])
	raw, err := json.Marshal(upload{
		Key: key, ContentType: opts.ContentType, Metadata: backends.LowerKeys(opts.Metadata), Initiated: time.Now().UTC(),
	})
	if err == nil {
		err = b.writeFileAtomic(uploadDir(id)+"/upload", raw, true)
	}
	if err != nil {
		return "", fmt.Errorf("create multipart upload of %s: %w", key, err)
	}
	return id, nil
}

// UploadPart stores part number of the upload. Uploading a number again
// replaces the part. No upload is locked here, so opts changes nothing.
func (b *Bucket) UploadPart(ctx context.Context, key, uploadID string, number int32, r io.ReadSeeker, size int64, _ backends.PartOptions) (string, error) {
	op := fmt.Sprintf("upload part %d of", number)
	if err := checkKey(key); err != nil {
		return "", invalidKey(op, key, err)
	}
	if number < 1 || number > 10000 {
		return "", fmt.Errorf("%s %s: part number outside 1..10000", op, key)
	}
	if size < 0 {
		return "", fmt.Errorf("%s %s: negative size %d", op, key, size)
	}
	if _, err := b.loadUpload(key, uploadID); err != nil {
		return "", fmt.Errorf("%s %s: %w", op, key, err)
	}
	h := md5.New()
	tmp, err := b.writeTemp(ctx, io.LimitReader(r, size), size, h, true)
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", op, key, err)
	}
	etag := hex.EncodeToString(h.Sum(nil))
	name := fmt.Sprintf("%s/%05d-%s", uploadDir(uploadID), number, etag)
	// A plain rename: an upload aborted meanwhile must not be recreated.
	if err := b.root.Rename(osPath(tmp), osPath(name)); err != nil {
		_ = b.root.Remove(osPath(tmp))
		if notExist(err) {
			return "", fmt.Errorf("%s %s: upload %s: %w", op, key, uploadID, backends.ErrNoSuchUpload)
		}
		return "", fmt.Errorf("%s %s: %w", op, key, err)
	}
	// Drop earlier uploads of this number (the newest wins, as on S3).
	if parts, err := b.storedParts(uploadID); err == nil && len(parts[number]) > 0 {
		newest := parts.newest(number)
		for _, p := range parts[number] {
			if p.file != newest.file {
				_ = b.root.Remove(osPath(p.file))
			}
		}
	}
	return etag, nil
}

type storedPart struct {
	backends.Part
	file    string
	modTime time.Time
}

// partFiles maps part numbers to the files holding them.
type partFiles map[int32][]storedPart

// newest returns the latest upload of number (ties broken by file name).
func (pf partFiles) newest(number int32) storedPart {
	return slices.MaxFunc(pf[number], func(a, b storedPart) int {
		return cmp.Or(a.modTime.Compare(b.modTime), strings.Compare(a.file, b.file))
	})
}

// storedParts reads the part files of an upload.
func (b *Bucket) storedParts(id string) (partFiles, error) {
	f, err := b.root.Open(osPath(uploadDir(id)))
	if err != nil {
		if notExist(err) {
			return nil, fmt.Errorf("upload %s: %w", id, backends.ErrNoSuchUpload)
		}
		return nil, err
	}
	defer f.Close()
	des, err := f.ReadDir(-1)
	if err != nil {
		return nil, err
	}
	parts := partFiles{}
	for _, de := range des {
		num, etag, ok := strings.Cut(de.Name(), "-")
		if !ok || len(num) != 5 || !de.Type().IsRegular() {
			continue
		}
		n, err := strconv.ParseInt(num, 10, 32)
		if err != nil {
			continue
		}
		fi, err := de.Info()
		if err != nil {
			continue // replaced meanwhile
		}
		p := storedPart{
			Part:    backends.Part{Number: int32(n), ETag: etag, Size: fi.Size()},
			file:    uploadDir(id) + "/" + de.Name(),
			modTime: fi.ModTime(),
		}
		parts[p.Number] = append(parts[p.Number], p)
	}
	return parts, nil
}

// ListParts returns the upload's parts in ascending part number.
func (b *Bucket) ListParts(ctx context.Context, key, uploadID string) ([]backends.Part, error) {
	if err := checkKey(key); err != nil {
		return nil, invalidKey("list parts of", key, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list parts of %s: %w", key, err)
	}
	if _, err := b.loadUpload(key, uploadID); err != nil {
		return nil, fmt.Errorf("list parts of %s: %w", key, err)
	}
	stored, err := b.storedParts(uploadID)
	if err != nil {
		return nil, fmt.Errorf("list parts of %s: %w", key, err)
	}
	parts := make([]backends.Part, 0, len(stored))
	for n := range stored {
		parts = append(parts, stored.newest(n).Part)
	}
	slices.SortFunc(parts, func(a, b backends.Part) int { return cmp.Compare(a.Number, b.Number) })
	return parts, nil
}

// CompleteMultipart concatenates parts, in order, into key. Every listed
// part must be stored with the given ETag and, but the last, hold at least
// MinPartSize bytes. The ETag is S3's: the MD5 of the parts' binary MD5s,
// a dash, and the number of parts.
func (b *Bucket) CompleteMultipart(ctx context.Context, key, uploadID string, parts []backends.Part) (backends.ObjectInfo, error) {
	fail := func(err error) (backends.ObjectInfo, error) {
		return backends.ObjectInfo{}, fmt.Errorf("complete multipart upload of %s: %w", key, err)
	}
	if err := checkKey(key); err != nil {
		return backends.ObjectInfo{}, invalidKey("complete multipart upload of", key, err)
	}
	u, err := b.loadUpload(key, uploadID)
	if err != nil {
		return fail(err)
	}
	if len(parts) == 0 {
		return fail(errors.New("no parts"))
	}
	stored, err := b.storedParts(uploadID)
	if err != nil {
		return fail(err)
	}
	files := make([]storedPart, len(parts))
	sums := make([][]byte, len(parts))
	for i, p := range parts {
		if i > 0 && p.Number <= parts[i-1].Number {
			return fail(fmt.Errorf("part numbers not ascending: %d after %d", p.Number, parts[i-1].Number))
		}
		if len(stored[p.Number]) == 0 {
			return fail(fmt.Errorf("part %d was not uploaded", p.Number))
		}
		sp := stored.newest(p.Number)
		if strings.Trim(p.ETag, `"`) != sp.ETag {
			return fail(fmt.Errorf("part %d has etag %s, not %s", p.Number, sp.ETag, p.ETag))
		}
		if i < len(parts)-1 && sp.Size < MinPartSize {
			return fail(fmt.Errorf("part %d is %d bytes, below the %d-byte minimum of all parts but the last", p.Number, sp.Size, MinPartSize))
		}
		raw, err := backends.PartMD5(sp.ETag)
		if err != nil {
			return fail(fmt.Errorf("part %d: stored %w", p.Number, err))
		}
		sums[i] = raw
		files[i] = sp
	}
	tmp, err := b.concat(ctx, files)
	if err != nil {
		return fail(err)
	}
	etag := backends.MultipartETag(sums)
	oi, err := b.commit(key, tmp, etag, backends.PutOptions{ContentType: u.ContentType, Metadata: u.Metadata})
	if err != nil {
		return fail(err)
	}
	if err := b.removeUpload(uploadID); err != nil {
		return fail(fmt.Errorf("object stored, but removing the upload: %w", err))
	}
	return oi, nil
}

// concat writes the part files, in order, to a synced temp file.
func (b *Bucket) concat(ctx context.Context, files []storedPart) (string, error) {
	name, out, err := b.createTemp()
	if err != nil {
		return "", err
	}
	err = func() error {
		for _, p := range files {
			f, err := b.root.Open(osPath(p.file))
			if err != nil {
				return fmt.Errorf("part %d: %w", p.Number, err)
			}
			n, err := copyCtx(ctx, out, f)
			f.Close()
			if err == nil && n != p.Size {
				err = fmt.Errorf("read %d bytes, expected %d", n, p.Size)
			}
			if err != nil {
				return fmt.Errorf("part %d: %w", p.Number, err)
			}
		}
		return out.Sync()
	}()
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = b.root.Remove(osPath(name))
		return "", err
	}
	return name, nil
}

// removeUpload moves the upload directory out of uploads (so the upload is
// gone at once) and then deletes it.
func (b *Bucket) removeUpload(id string) error {
	trash := tmpDir + "/upload-" + id
	if err := b.root.Rename(osPath(uploadDir(id)), osPath(trash)); err != nil {
		if notExist(err) {
			return fmt.Errorf("upload %s: %w", id, backends.ErrNoSuchUpload)
		}
		return err
	}
	return b.root.RemoveAll(osPath(trash))
}

// AbortMultipart discards the upload and its parts.
func (b *Bucket) AbortMultipart(ctx context.Context, key, uploadID string) error {
	if err := checkKey(key); err != nil {
		return invalidKey("abort multipart upload of", key, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("abort multipart upload of %s: %w", key, err)
	}
	if _, err := b.loadUpload(key, uploadID); err != nil {
		return fmt.Errorf("abort multipart upload of %s: %w", key, err)
	}
	if err := b.removeUpload(uploadID); err != nil {
		return fmt.Errorf("abort multipart upload of %s: %w", key, err)
	}
	return nil
}

// ListMultipartUploads yields the incomplete uploads of keys under prefix,
// by key and then start time. It reads every upload's record before
// yielding the first: there are few incomplete uploads.
func (b *Bucket) ListMultipartUploads(ctx context.Context, prefix string) iter.Seq2[backends.Upload, error] {
	return func(yield func(backends.Upload, error) bool) {
		uploads, err := b.uploads(ctx, prefix)
		if err != nil {
			yield(backends.Upload{}, fmt.Errorf("list multipart uploads of %s (prefix %q): %w", b.Name(), prefix, err))
			return
		}
		for _, u := range uploads {
			if !yield(u, nil) {
				return
			}
		}
	}
}

func (b *Bucket) uploads(ctx context.Context, prefix string) ([]backends.Upload, error) {
	f, err := b.root.Open(osPath(uploadsDir))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	des, err := f.ReadDir(-1)
	if err != nil {
		return nil, err
	}
	var out []backends.Upload
	for _, de := range des {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		id := de.Name()
		if !de.IsDir() || !validUploadID(id) {
			continue
		}
		raw, err := b.root.ReadFile(osPath(uploadDir(id) + "/upload"))
		if err != nil {
			if notExist(err) {
				continue // completed or aborted meanwhile
			}
			return nil, err
		}
		var u upload
		if err := json.Unmarshal(raw, &u); err != nil {
			return nil, fmt.Errorf("upload %s: %w", id, err)
		}
		if strings.HasPrefix(u.Key, prefix) {
			out = append(out, backends.Upload{Key: u.Key, UploadID: id, Initiated: u.Initiated})
		}
	}
	slices.SortFunc(out, func(a, b backends.Upload) int {
		return cmp.Or(strings.Compare(a.Key, b.Key), a.Initiated.Compare(b.Initiated), strings.Compare(a.UploadID, b.UploadID))
	})
	return out, nil
}
