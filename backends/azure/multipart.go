package azure

import (
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"iter"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"github.com/voyageur-ca/voyageur/backends"
)

// uploadsPrefix holds the marker blobs of incomplete uploads (see the
// package comment).
const uploadsPrefix = ".voyageur-uploads/"

// blockPrefix starts the raw ID of every block this backend stages.
const blockPrefix = "voyageur:"

func markerName(key, uploadID string) string { return uploadsPrefix + uploadID + "/" + key }

// blockID is the base64 block ID of part n: every ID has the same length.
func blockID(uploadID string, n int32) string {
	return base64.StdEncoding.EncodeToString(fmt.Appendf(nil, "%s%s:%06d", blockPrefix, uploadID, n))
}

// partETag is the ETag of part n, a function of its block ID alone so that
// ListParts can return it.
func partETag(uploadID string, n int32) string {
	s := md5.Sum([]byte(blockID(uploadID, n)))
	return hex.EncodeToString(s[:])
}

// noSuchUpload is the error for an upload without its marker.
func noSuchUpload(op, key string) error {
	return backends.StatusError(op, key, http.StatusNotFound, "NoSuchUpload", "no incomplete upload with this id")
}

// marker returns the properties of an upload's marker.
func (b *Bucket) marker(ctx context.Context, op, key, uploadID string) (blob.GetPropertiesResponse, error) {
	if uploadID == "" || strings.Contains(uploadID, "/") {
		return blob.GetPropertiesResponse{}, noSuchUpload(op, key)
	}
	p, err := b.c.NewBlobClient(markerName(key, uploadID)).GetProperties(ctx, nil)
	if err != nil {
		if err := fail(op, key, err); !backends.IsNotExist(err) {
			return p, err
		}
		return p, noSuchUpload(op, key)
	}
	return p, nil
}

// CreateMultipart implements backends.Bucket.
func (b *Bucket) CreateMultipart(ctx context.Context, key string, opts backends.PutOptions) (string, error) {
	if opts.LockMode != "" {
		return "", fmt.Errorf("create multipart upload of %s: %w", key, errNoLock)
	}
	var raw [8]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", fmt.Errorf("create multipart upload of %s: %w", key, err)
	}
	id := hex.EncodeToString(raw[:])
	body, _ := fromHere(strings.NewReader(""), 0)
	_, err := b.c.NewBlockBlobClient(markerName(key, id)).Upload(ctx, body, &blockblob.UploadOptions{
		HTTPHeaders: headers(opts.ContentType),
		Metadata:    encodeMetadata(opts.Metadata),
	})
	if err != nil {
		return "", fail("create multipart upload of", key, err)
	}
	b.live.Store(id, true)
	return id, nil
}

// UploadPart implements backends.Bucket.
func (b *Bucket) UploadPart(ctx context.Context, key, uploadID string, number int32, r io.ReadSeeker, size int64, opts backends.PartOptions) (string, error) {
	op := fmt.Sprintf("upload part %d of", number)
	if opts.Locked {
		return "", fmt.Errorf("%s %s: %w", op, key, errNoLock)
	}
	if number < 1 || number > 10000 {
		return "", fmt.Errorf("%s %s: part numbers go from 1 to 10000", op, key)
	}
	if _, ok := b.live.Load(uploadID); !ok {
		if _, err := b.marker(ctx, op, key, uploadID); err != nil {
			return "", err
		}
		b.live.Store(uploadID, true)
	}
	body, err := fromHere(r, size)
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", op, key, err)
	}
	if _, err := b.c.NewBlockBlobClient(key).StageBlock(ctx, blockID(uploadID, number), body, nil); err != nil {
		return "", fail(op, key, err)
	}
	return partETag(uploadID, number), nil
}

// ListParts implements backends.Bucket: the uncommitted blocks of the
// upload.
func (b *Bucket) ListParts(ctx context.Context, key, uploadID string) ([]backends.Part, error) {
	if _, err := b.marker(ctx, "list parts of", key, uploadID); err != nil {
		return nil, err
	}
	resp, err := b.c.NewBlockBlobClient(key).GetBlockList(ctx, blockblob.BlockListTypeUncommitted, nil)
	if err != nil {
		if err := fail("list parts of", key, err); !backends.IsNotExist(err) {
			return nil, err
		}
		return nil, nil
	}
	var parts []backends.Part
	want := blockPrefix + uploadID + ":"
	for _, bl := range resp.UncommittedBlocks {
		raw, err := base64.StdEncoding.DecodeString(deref(bl.Name))
		if err != nil || !strings.HasPrefix(string(raw), want) {
			continue
		}
		var n int32
		if _, err := fmt.Sscanf(string(raw[len(want):]), "%06d", &n); err != nil || blockID(uploadID, n) != deref(bl.Name) {
			continue
		}
		parts = append(parts, backends.Part{Number: n, ETag: partETag(uploadID, n), Size: deref(bl.Size)})
	}
	slices.SortFunc(parts, func(x, y backends.Part) int { return int(x.Number - y.Number) })
	return parts, nil
}

// CompleteMultipart implements backends.Bucket.
func (b *Bucket) CompleteMultipart(ctx context.Context, key, uploadID string, parts []backends.Part) (backends.ObjectInfo, error) {
	const op = "complete multipart upload of"
	m, err := b.marker(ctx, op, key, uploadID)
	if err != nil {
		return backends.ObjectInfo{}, err
	}
	ids := make([]string, len(parts))
	sums := make([][]byte, len(parts))
	var size int64
	for i, p := range parts {
		if i > 0 && p.Number <= parts[i-1].Number {
			return backends.ObjectInfo{}, fmt.Errorf("%s %s: part %d after part %d: part numbers must ascend", op, key, p.Number, parts[i-1].Number)
		}
		if strings.Trim(p.ETag, `"`) != partETag(uploadID, p.Number) {
			return backends.ObjectInfo{}, fmt.Errorf("%s %s: part %d: etag %s is not this upload's", op, key, p.Number, p.ETag)
		}
		ids[i] = blockID(uploadID, p.Number)
		sums[i], _ = backends.PartMD5(partETag(uploadID, p.Number))
		size += p.Size
	}
	etag := backends.MultipartETag(sums)
	meta := m.Metadata
	if meta == nil {
		meta = map[string]*string{}
	}
	meta[etagMeta] = &etag
	resp, err := b.c.NewBlockBlobClient(key).CommitBlockList(ctx, ids, &blockblob.CommitBlockListOptions{
		HTTPHeaders: headers(deref(m.ContentType)),
		Metadata:    meta,
	})
	if err != nil {
		return backends.ObjectInfo{}, fail(op, key, err)
	}
	b.live.Delete(uploadID)
	// A marker left behind names a completed upload: the stale-upload
	// cleanup aborts it, which only deletes the marker.
	_, _ = b.c.NewBlobClient(markerName(key, uploadID)).Delete(context.WithoutCancel(ctx), nil)
	return backends.ObjectInfo{
		Key: key, Size: size, ETag: etag,
		VersionID:    deref(resp.VersionID),
		LastModified: deref(resp.LastModified),
	}, nil
}

// AbortMultipart implements backends.Bucket: it deletes the marker; the
// staged blocks stay until Azure discards them (see the package comment).
func (b *Bucket) AbortMultipart(ctx context.Context, key, uploadID string) error {
	const op = "abort multipart upload of"
	b.live.Delete(uploadID)
	if uploadID == "" || strings.Contains(uploadID, "/") {
		return noSuchUpload(op, key)
	}
	if _, err := b.c.NewBlobClient(markerName(key, uploadID)).Delete(ctx, nil); err != nil {
		if err := fail(op, key, err); !backends.IsNotExist(err) {
			return err
		}
		return noSuchUpload(op, key)
	}
	return nil
}

// ListMultipartUploads implements backends.Bucket from the markers, sorted
// by key (they are named by upload ID first; incomplete uploads are few).
func (b *Bucket) ListMultipartUploads(ctx context.Context, prefix string) iter.Seq2[backends.Upload, error] {
	return func(yield func(backends.Upload, error) bool) {
		p := uploadsPrefix
		pager := b.c.NewListBlobsFlatPager(&container.ListBlobsFlatOptions{Prefix: &p})
		var ups []backends.Upload
		for pager.More() {
			page, err := pager.NextPage(ctx)
			if err != nil {
				yield(backends.Upload{}, fail("list multipart uploads", prefix, err))
				return
			}
			for _, it := range page.Segment.BlobItems {
				id, key, ok := strings.Cut(strings.TrimPrefix(deref(it.Name), uploadsPrefix), "/")
				if !ok || !strings.HasPrefix(key, prefix) {
					continue
				}
				var at time.Time
				if it.Properties != nil {
					at = deref(it.Properties.CreationTime)
					if at.IsZero() {
						at = deref(it.Properties.LastModified)
					}
				}
				ups = append(ups, backends.Upload{Key: key, UploadID: id, Initiated: at})
			}
		}
		slices.SortFunc(ups, func(x, y backends.Upload) int {
			if c := strings.Compare(x.Key, y.Key); c != 0 {
				return c
			}
			return x.Initiated.Compare(y.Initiated)
		})
		for _, u := range ups {
			if !yield(u, nil) {
				return
			}
		}
	}
}
