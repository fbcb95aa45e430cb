// Package minio implements backends.Bucket on minio-go for MinIO servers and
// OVHcloud Object Storage (see OVHEndpoint).
//
// minio-go's internal retries are disabled: a Bucket makes exactly one
// attempt per call and the backends/retry wrapper decides about retries.
package minio

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/voyageur-ca/voyageur/backends"
)

// ovhDomain is the suffix of OVHcloud Object Storage endpoints.
const ovhDomain = ".io.cloud.ovh.net"

// ovhRegions are the Canadian OVHcloud regions voyageur targets.
var ovhRegions = []string{"bhs", "ca-east-tor"}

// OVHEndpoint returns the S3 endpoint URL of an OVHcloud region in Canada:
// "bhs" (Beauharnois) or "ca-east-tor" (Toronto). Any other region is an error.
func OVHEndpoint(region string) (string, error) {
	if !slices.Contains(ovhRegions, region) {
		return "", fmt.Errorf("ovh region %q is not supported: want %s", region, strings.Join(ovhRegions, " or "))
	}
	return "https://s3." + region + ovhDomain, nil
}

// Config describes one bucket on a MinIO or OVHcloud endpoint.
type Config struct {
	Bucket string
	// Region is the signing region ("us-east-1" for a default MinIO, "bhs"
	// or "ca-east-tor" for OVHcloud). Empty lets minio-go ask the server
	// for the bucket's location on first use.
	Region string
	// URL is the endpoint, "https://host:port" or "http://host:port".
	URL                  string
	AccessKey, SecretKey string
	// CAFile is a PEM bundle of extra trusted CAs (a private CA), added to
	// the system roots and to $AWS_CA_BUNDLE.
	CAFile string
	// Timeouts bound connecting, waiting for an answer and a stalled body;
	// zero fields take the defaults.
	Timeouts backends.Timeouts
	// Transport replaces the tuned transport New builds (tests); CAFile is
	// then ignored.
	Transport http.RoundTripper
}

// Bucket is a backends.Bucket on one bucket, through minio-go. It is safe
// for concurrent use.
type Bucket struct {
	core *minio.Core
	// listen is core with listenTransport: only Listen uses it.
	listen *minio.Core
	bucket string
	name   string
}

var _ backends.Bucket = (*Bucket)(nil)

// New checks cfg and returns a Bucket. It does not contact the server.
// Endpoints on OVHcloud are addressed virtual-host style (as OVHcloud
// documents), every other endpoint path style.
func New(cfg Config) (*Bucket, error) {
	if cfg.Bucket == "" {
		return nil, errors.New("minio: bucket is required")
	}
	if cfg.AccessKey == "" || cfg.SecretKey == "" {
		return nil, errors.New("minio: access key and secret key are required")
	}
	u, err := backends.ParseEndpoint(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("minio: endpoint url %q: want http(s)://host[:port]", backends.RedactURL(cfg.URL))
	}
	tr := cfg.Transport
	if tr == nil {
		t, err := backends.NewTransport(cfg.CAFile, cfg.Timeouts)
		if err != nil {
			return nil, fmt.Errorf("minio: %w", err)
		}
		tr = t
	}
	lookup := minio.BucketLookupPath
	if strings.HasSuffix(u.Hostname(), ovhDomain) {
		lookup = minio.BucketLookupDNS
	}
	opts := &minio.Options{
		Creds:        credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure:       u.Scheme == "https",
		Transport:    tr,
		Region:       cfg.Region,
		BucketLookup: lookup,
		// One attempt per call: this is the per-client form of setting
		// the package variable minio.MaxRetry to 1, without touching
		// global state. Retries belong to backends/retry.
		MaxRetries: 1,
	}
	core, err := minio.NewCore(u.Host, opts)
	if err != nil {
		return nil, fmt.Errorf("minio: %w", err)
	}
	lopts := *opts
	lopts.Transport = listenTransport{tr}
	listen, err := minio.NewCore(u.Host, &lopts)
	if err != nil {
		return nil, fmt.Errorf("minio: %w", err)
	}
	return &Bucket{core: core, listen: listen, bucket: cfg.Bucket, name: u.Scheme + "://" + u.Host + "/" + cfg.Bucket}, nil
}

// Name returns "scheme://host:port/bucket".
func (b *Bucket) Name() string { return b.name }

// List implements backends.Bucket with ListObjectsV2, or ListObjectVersions
// when opts.Versions is set.
func (b *Bucket) List(ctx context.Context, opts backends.ListOptions) iter.Seq2[backends.ObjectInfo, error] {
	op := "list"
	lo := minio.ListObjectsOptions{Prefix: opts.Prefix, Recursive: true, FetchOwner: new(false)}
	if opts.Versions {
		op = "list versions"
		lo.WithVersions = true
	} else {
		lo.StartAfter = opts.StartAfter
	}
	return func(yield func(backends.ObjectInfo, error) bool) {
		// minio-go ends its listing silently when ctx is cancelled; the
		// check after the loop turns that into an error, so that a listing
		// without an error is always complete.
		for o := range b.core.ListObjectsIter(ctx, b.bucket, lo) {
			if o.Err != nil {
				yield(backends.ObjectInfo{}, mapError(op, opts.Prefix, o.Err))
				return
			}
			info := backends.ObjectInfo{
				Key:          o.Key,
				Size:         o.Size,
				ETag:         backends.TrimETag(o.ETag),
				LastModified: o.LastModified,
			}
			if opts.Versions {
				info.VersionID = versionOf(o.VersionID)
				info.IsLatest = o.IsLatest
				info.DeleteMarker = o.IsDeleteMarker
			}
			if !yield(info, nil) {
				return
			}
		}
		if err := ctx.Err(); err != nil {
			yield(backends.ObjectInfo{}, fmt.Errorf("%s %s: %w", op, opts.Prefix, err))
		}
	}
}

// Stat implements backends.Bucket with a HEAD request.
func (b *Bucket) Stat(ctx context.Context, key, versionID string) (backends.ObjectInfo, error) {
	o, err := b.core.StatObject(ctx, b.bucket, key, minio.StatObjectOptions{VersionID: versionID})
	if err != nil {
		return backends.ObjectInfo{}, mapError("stat", key, err)
	}
	return objectInfo(key, o, o.Size), nil
}

// Get implements backends.Bucket with one (ranged) GET request.
func (b *Bucket) Get(ctx context.Context, key string, opts backends.GetOptions) (io.ReadCloser, backends.ObjectInfo, error) {
	gopts := minio.GetObjectOptions{VersionID: opts.VersionID}
	if opts.IfMatch != "" {
		if err := gopts.SetMatchETag(backends.TrimETag(opts.IfMatch)); err != nil {
			return nil, backends.ObjectInfo{}, fmt.Errorf("get %s: %w", key, err)
		}
	}
	switch {
	case opts.Length > 0:
		gopts.Set("Range", fmt.Sprintf("bytes=%d-%d", opts.Offset, opts.Offset+opts.Length-1))
	case opts.Offset > 0:
		gopts.Set("Range", fmt.Sprintf("bytes=%d-", opts.Offset))
	}
	body, o, h, err := b.core.GetObject(ctx, b.bucket, key, gopts)
	if err != nil {
		return nil, backends.ObjectInfo{}, mapError("get", key, err)
	}
	size := o.Size
	if cr := h.Get("Content-Range"); cr != "" {
		if size, err = backends.TotalSize(cr); err != nil {
			body.Close()
			return nil, backends.ObjectInfo{}, fmt.Errorf("get %s: %w", key, err)
		}
	}
	return body, objectInfo(key, o, size), nil
}

// objectInfo converts the answer to a HEAD or GET; size is the full size.
func objectInfo(key string, o minio.ObjectInfo, size int64) backends.ObjectInfo {
	var meta map[string]string
	if len(o.UserMetadata) > 0 {
		meta = make(map[string]string, len(o.UserMetadata))
		for k, v := range o.UserMetadata {
			meta[strings.ToLower(k)] = v
		}
	}
	return backends.ObjectInfo{
		Key:          key,
		Size:         size,
		ETag:         backends.TrimETag(o.ETag),
		VersionID:    versionOf(o.VersionID),
		LastModified: o.LastModified,
		ContentType:  o.ContentType,
		Metadata:     meta,
	}
}

// Put implements backends.Bucket with a single PUT of size bytes read from
// r's current position (minio.Core never splits it into a multipart upload).
// minio-go adds no checksum of its own here: no
// Content-MD5 and no CRC trailer (TrailingHeaders is off). The body is sent
// unsigned (UNSIGNED-PAYLOAD) over plain http as over https: hashing every
// byte to sign it cost a third of a copy's CPU, it protects only an
// unencrypted link (voyageur warns about plain http beyond loopback), and
// encrypted replicas carry their own authentication. A write with a lock
// mode carries the Content-MD5 that object lock requires.
func (b *Bucket) Put(ctx context.Context, key string, r io.ReadSeeker, size int64, opts backends.PutOptions) (backends.ObjectInfo, error) {
	body, err := fromHere(r)
	if err != nil {
		return backends.ObjectInfo{}, fmt.Errorf("put %s: %w", key, err)
	}
	var sum string
	if opts.LockMode != "" {
		if sum, err = backends.ContentMD5(body, size); err != nil {
			return backends.ObjectInfo{}, fmt.Errorf("put %s: %w", key, err)
		}
	}
	info, err := b.core.PutObject(ctx, b.bucket, key, body, size, sum, "", putOptions(opts))
	if err != nil {
		return backends.ObjectInfo{}, mapError("put", key, err)
	}
	return backends.ObjectInfo{
		Key:       key,
		Size:      size,
		ETag:      backends.TrimETag(info.ETag),
		VersionID: versionOf(info.VersionID),
	}, nil
}

// putOptions sends user metadata as explicit x-amz-meta-* headers: minio-go
// would otherwise send keys that look like standard headers (such as
// "cache-control") as those headers. A lock mode becomes the object-lock
// headers.
func putOptions(opts backends.PutOptions) minio.PutObjectOptions {
	po := minio.PutObjectOptions{ContentType: opts.ContentType, DisableContentSha256: true} // see Put
	if opts.LockMode != "" {
		po.Mode, po.RetainUntilDate = minio.RetentionMode(opts.LockMode), opts.LockUntil
	}
	if len(opts.Metadata) > 0 {
		po.UserMetadata = make(map[string]string, len(opts.Metadata))
		for k, v := range opts.Metadata {
			po.UserMetadata["x-amz-meta-"+strings.ToLower(k)] = v
		}
	}
	return po
}

// CreateMultipart implements backends.Bucket.
func (b *Bucket) CreateMultipart(ctx context.Context, key string, opts backends.PutOptions) (string, error) {
	id, err := b.core.NewMultipartUpload(ctx, b.bucket, key, putOptions(opts))
	if err != nil {
		return "", mapError("create multipart", key, err)
	}
	if id == "" {
		return "", fmt.Errorf("create multipart %s: empty upload id", key)
	}
	return id, nil
}

// UploadPart implements backends.Bucket; r is read from its current position.
func (b *Bucket) UploadPart(ctx context.Context, key, uploadID string, number int32, r io.ReadSeeker, size int64, opts backends.PartOptions) (string, error) {
	body, err := fromHere(r)
	if err != nil {
		return "", fmt.Errorf("upload part %d of %s: %w", number, key, err)
	}
	po := minio.PutObjectPartOptions{DisableContentSha256: true} // unsigned, as in Put
	if opts.Locked {
		if po.Md5Base64, err = backends.ContentMD5(body, size); err != nil {
			return "", fmt.Errorf("upload part %d of %s: %w", number, key, err)
		}
	}
	p, err := b.core.PutObjectPart(ctx, b.bucket, key, uploadID, int(number), body, size, po)
	if err != nil {
		return "", mapError(fmt.Sprintf("upload part %d of", number), key, err)
	}
	return backends.TrimETag(p.ETag), nil
}

// ListParts implements backends.Bucket, paging by part number marker.
func (b *Bucket) ListParts(ctx context.Context, key, uploadID string) ([]backends.Part, error) {
	var parts []backends.Part
	marker := 0
	for {
		res, err := b.core.ListObjectParts(ctx, b.bucket, key, uploadID, marker, 0)
		if err != nil {
			return nil, mapError("list parts of", key, err)
		}
		for _, p := range res.ObjectParts {
			parts = append(parts, backends.Part{Number: int32(p.PartNumber), ETag: backends.TrimETag(p.ETag), Size: p.Size})
		}
		if !res.IsTruncated {
			break
		}
		if res.NextPartNumberMarker <= marker {
			return nil, fmt.Errorf("list parts of %s: truncated listing without a new part marker", key)
		}
		marker = res.NextPartNumberMarker
	}
	slices.SortFunc(parts, func(a, b backends.Part) int { return int(a.Number - b.Number) })
	return parts, nil
}

// CompleteMultipart implements backends.Bucket. The returned info carries
// Key, ETag and VersionID (the server does not report the size).
func (b *Bucket) CompleteMultipart(ctx context.Context, key, uploadID string, parts []backends.Part) (backends.ObjectInfo, error) {
	cps := make([]minio.CompletePart, len(parts))
	for i, p := range parts {
		cps[i] = minio.CompletePart{PartNumber: int(p.Number), ETag: backends.TrimETag(p.ETag)}
	}
	info, err := b.core.CompleteMultipartUpload(ctx, b.bucket, key, uploadID, cps, minio.PutObjectOptions{})
	if err != nil {
		return backends.ObjectInfo{}, mapError("complete multipart", key, err)
	}
	return backends.ObjectInfo{Key: key, ETag: backends.TrimETag(info.ETag), VersionID: versionOf(info.VersionID)}, nil
}

// AbortMultipart implements backends.Bucket. MinIO answers success to
// aborting an upload that is already gone, so it first lists one part of
// the upload: that fails with NoSuchUpload when the upload does not exist.
func (b *Bucket) AbortMultipart(ctx context.Context, key, uploadID string) error {
	if _, err := b.core.ListObjectParts(ctx, b.bucket, key, uploadID, 0, 1); err != nil {
		return mapError("abort multipart", key, err)
	}
	return mapError("abort multipart", key, b.core.AbortMultipartUpload(ctx, b.bucket, key, uploadID))
}

// ListMultipartUploads implements backends.Bucket, paging by key and upload
// ID markers, in key order. It lists every upload of the bucket and keeps
// those under prefix: MinIO reads a non-empty prefix as one exact object
// name. (MinIO also answers an unfiltered listing from memory, in one page
// ordered by initiation: each page is sorted by key here, and uploads begun
// before a MinIO restart are not listed.)
func (b *Bucket) ListMultipartUploads(ctx context.Context, prefix string) iter.Seq2[backends.Upload, error] {
	return func(yield func(backends.Upload, error) bool) {
		var keyMarker, idMarker string
		for {
			res, err := b.core.ListMultipartUploads(ctx, b.bucket, "", keyMarker, idMarker, "", 0)
			if err != nil {
				yield(backends.Upload{}, mapError("list multipart uploads", prefix, err))
				return
			}
			page := make([]backends.Upload, 0, len(res.Uploads))
			for _, u := range res.Uploads {
				page = append(page, backends.Upload{Key: u.Key, UploadID: u.UploadID, Initiated: u.Initiated})
			}
			for _, up := range backends.UploadsUnder(prefix, page) {
				if !yield(up, nil) {
					return
				}
			}
			if !res.IsTruncated {
				return
			}
			if res.NextKeyMarker == "" && res.NextUploadIDMarker == "" {
				yield(backends.Upload{}, fmt.Errorf("list multipart uploads %s: truncated listing without markers", prefix))
				return
			}
			keyMarker, idMarker = res.NextKeyMarker, res.NextUploadIDMarker
		}
	}
}

// Delete implements backends.Bucket; a missing key or version is not an
// error.
func (b *Bucket) Delete(ctx context.Context, key, versionID string) error {
	err := b.core.RemoveObject(ctx, b.bucket, key, minio.RemoveObjectOptions{VersionID: versionID})
	if err = mapError("delete", key, err); backends.IsNotExist(err) {
		return nil
	}
	return err
}

// ObjectLockEnabled implements backends.Bucket with
// GetObjectLockConfiguration; a bucket that has none answers 404
// ObjectLockConfigurationNotFoundError.
func (b *Bucket) ObjectLockEnabled(ctx context.Context) (bool, error) {
	enabled, _, _, _, err := b.core.GetObjectLockConfig(ctx, b.bucket)
	if err != nil {
		if minio.ToErrorResponse(err).Code == "ObjectLockConfigurationNotFoundError" {
			return false, nil
		}
		return false, mapError("get object lock configuration of", b.name, err)
	}
	return enabled == "Enabled", nil
}

// ExtendRetention implements backends.Bucket with PutObjectRetention
// (minio-go sends its Content-MD5).
func (b *Bucket) ExtendRetention(ctx context.Context, key, versionID string, mode backends.LockMode, until time.Time) error {
	m := minio.RetentionMode(mode)
	err := b.core.PutObjectRetention(ctx, b.bucket, key, minio.PutObjectRetentionOptions{
		Mode: &m, RetainUntilDate: &until, VersionID: versionID,
	})
	return mapError("extend retention of", key, err)
}

// mapError names the operation and the key and classifies err: a server
// answer becomes a *backends.HTTPError, joined with ErrNotExist,
// ErrPreconditionFailed or ErrNoSuchUpload where it means that; anything
// else (network failures, cancellation) stays wrapped as it is.
func mapError(op, key string, err error) error {
	if err == nil {
		return nil
	}
	resp := minio.ToErrorResponse(err)
	if resp.StatusCode == 0 {
		return backends.TransportError(op, key, err)
	}
	return backends.StatusError(op, key, resp.StatusCode, resp.Code, resp.Message)
}

// fromHere returns r seen from its current position: minio-go rewinds a
// seekable body to offset 0 before sending it, which must mean "where the
// caller left r", not the start of the underlying stream.
func fromHere(r io.ReadSeeker) (io.ReadSeeker, error) {
	pos, err := r.Seek(0, io.SeekCurrent)
	if err != nil {
		return nil, fmt.Errorf("body position: %w", err)
	}
	if pos == 0 {
		return r, nil
	}
	return &rebased{r: r, base: pos}, nil
}

// rebased is a ReadSeeker whose offset 0 is base in r.
type rebased struct {
	r    io.ReadSeeker
	base int64
}

func (b *rebased) Read(p []byte) (int, error) { return b.r.Read(p) }

func (b *rebased) Seek(offset int64, whence int) (int64, error) {
	if whence == io.SeekStart {
		offset += b.base
	}
	n, err := b.r.Seek(offset, whence)
	return n - b.base, err
}

// versionOf maps S3's "null" version (unversioned or suspended bucket) to "".
func versionOf(v string) string {
	if v == "null" {
		return ""
	}
	return v
}
