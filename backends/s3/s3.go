// Package s3 implements backends.Bucket on aws-sdk-go-v2 for AWS S3 and any
// S3-compatible endpoint (MinIO, OVHcloud, Ceph...).
//
// The SDK's own retryer is disabled: a Bucket makes exactly one attempt per
// call and the backends/retry wrapper decides about retries.
package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/voyageur-ca/voyageur/backends"
)

// DefaultRegion is the region used when Config.Region is empty.
const DefaultRegion = "us-east-1"

// Config describes one bucket reachable through the S3 API.
type Config struct {
	Bucket string
	// Region defaults to DefaultRegion.
	Region string
	// URL is a custom endpoint such as "https://s3.bhs.io.cloud.ovh.net" or
	// "http://127.0.0.1:9000"; empty means AWS.
	URL string
	// PathStyle addresses the bucket as https://host/bucket instead of
	// https://bucket.host.
	PathStyle bool
	// AccessKey, SecretKey and SessionToken are static credentials. When
	// AccessKey is empty the AWS default credential chain applies
	// (environment, shared config and SSO, web identity, IMDS...).
	AccessKey, SecretKey, SessionToken string
	// CAFile is a PEM bundle of extra trusted CAs (a private CA), added to
	// the system roots and to $AWS_CA_BUNDLE.
	CAFile string
	// Timeouts bound connecting, waiting for an answer and a stalled body;
	// zero fields take the defaults.
	Timeouts backends.Timeouts
	// HTTPClient replaces the tuned client New builds (tests); CAFile is
	// then ignored.
	HTTPClient *http.Client
	// Logger receives the SDK's own log lines (see backends.SDKLogger);
	// nil discards them.
	Logger *slog.Logger
}

// Bucket is a backends.Bucket on one S3 bucket. It is safe for concurrent use.
type Bucket struct {
	client *s3.Client
	bucket string
	name   string
}

var _ backends.Bucket = (*Bucket)(nil)

// New checks cfg, resolves credentials and returns a Bucket. It does not
// contact the store, so a wrong bucket or key shows up on the first call.
func New(ctx context.Context, cfg Config) (*Bucket, error) {
	if cfg.Bucket == "" {
		return nil, errors.New("s3: bucket is required")
	}
	if (cfg.AccessKey == "") != (cfg.SecretKey == "") {
		return nil, errors.New("s3: access key and secret key must be set together")
	}
	name := "s3://" + cfg.Bucket
	var endpoint string
	if cfg.URL != "" {
		u, err := backends.ParseEndpoint(cfg.URL)
		if err != nil {
			return nil, fmt.Errorf("s3: endpoint url %q: want http(s)://host[:port]", backends.RedactURL(cfg.URL))
		}
		endpoint = u.String()
		name = endpoint + "/" + cfg.Bucket
	}
	region := cfg.Region
	if region == "" {
		region = DefaultRegion
	}

	httpClient := cfg.HTTPClient
	if httpClient == nil {
		tr, err := backends.NewTransport(cfg.CAFile, cfg.Timeouts)
		if err != nil {
			return nil, fmt.Errorf("s3: %w", err)
		}
		httpClient = &http.Client{Transport: tr, CheckRedirect: sdkRedirects}
	}

	// The S3 client gets its HTTP client below, through its own options:
	// handing a custom client to the config loader breaks $AWS_CA_BUNDLE
	// ("unable to add custom RootCAs HTTPClient"), while the loader's own
	// client still serves the credential providers (STS, SSO, IMDS).
	opts := []func(*config.LoadOptions) error{config.WithRegion(region), config.WithLogger(backends.SDKLogger(cfg.Logger))}
	if cfg.AccessKey != "" {
		opts = append(opts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(cfg.AccessKey, cfg.SecretKey, cfg.SessionToken)))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("s3: load aws config: %w", err)
	}

	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		o.HTTPClient = httpClient
		o.Retryer = aws.NopRetryer{}
		o.RetryMaxAttempts = 0
		o.UsePathStyle = cfg.PathStyle
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
			// S3-compatible servers rejected the SDK's default CRC32
			// checksums and aws-chunked trailers.
			o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
			o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
		}
	})
	return &Bucket{client: client, bucket: cfg.Bucket, name: name}, nil
}

// sdkRedirects follows what the SDK's own client follows (307 and 308, which
// S3 sends for a bucket still propagating to another region) and hands every
// other redirect back as the answer, so it becomes an error.
func sdkRedirects(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	switch req.Response.StatusCode {
	case http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		return nil
	}
	return http.ErrUseLastResponse
}

// Name returns "s3://bucket" for AWS, "scheme://host/bucket" otherwise.
func (b *Bucket) Name() string { return b.name }

// List implements backends.Bucket with ListObjectsV2, or ListObjectVersions
// when opts.Versions is set.
func (b *Bucket) List(ctx context.Context, opts backends.ListOptions) iter.Seq2[backends.ObjectInfo, error] {
	if opts.Versions {
		return b.listVersions(ctx, opts.Prefix)
	}
	return func(yield func(backends.ObjectInfo, error) bool) {
		in := &s3.ListObjectsV2Input{
			Bucket:     &b.bucket,
			Prefix:     optional(opts.Prefix),
			StartAfter: optional(opts.StartAfter),
		}
		for {
			out, err := b.client.ListObjectsV2(ctx, in)
			if err != nil {
				yield(backends.ObjectInfo{}, mapError("list", opts.Prefix, err))
				return
			}
			for _, o := range out.Contents {
				info := backends.ObjectInfo{
					Key:          aws.ToString(o.Key),
					Size:         aws.ToInt64(o.Size),
					ETag:         backends.TrimETag(aws.ToString(o.ETag)),
					LastModified: aws.ToTime(o.LastModified),
				}
				if !yield(info, nil) {
					return
				}
			}
			if !aws.ToBool(out.IsTruncated) {
				return
			}
			if aws.ToString(out.NextContinuationToken) == "" {
				yield(backends.ObjectInfo{}, fmt.Errorf("list %s: truncated listing without a continuation token", opts.Prefix))
				return
			}
			in.ContinuationToken = out.NextContinuationToken
		}
	}
}

// listVersions yields versions and delete markers, keys ascending, newest
// first within a key. The SDK hands versions and delete markers of a page in
// two lists; each page is merged back into one sequence.
func (b *Bucket) listVersions(ctx context.Context, prefix string) iter.Seq2[backends.ObjectInfo, error] {
	return func(yield func(backends.ObjectInfo, error) bool) {
		in := &s3.ListObjectVersionsInput{Bucket: &b.bucket, Prefix: optional(prefix)}
		for {
			out, err := b.client.ListObjectVersions(ctx, in)
			if err != nil {
				yield(backends.ObjectInfo{}, mapError("list versions", prefix, err))
				return
			}
			page := make([]backends.ObjectInfo, 0, len(out.Versions)+len(out.DeleteMarkers))
			for _, v := range out.Versions {
				page = append(page, versionInfo(v))
			}
			for _, d := range out.DeleteMarkers {
				page = append(page, deleteMarkerInfo(d))
			}
			slices.SortStableFunc(page, newestFirst)
			for _, info := range page {
				if !yield(info, nil) {
					return
				}
			}
			if !aws.ToBool(out.IsTruncated) {
				return
			}
			if aws.ToString(out.NextKeyMarker) == "" {
				yield(backends.ObjectInfo{}, fmt.Errorf("list versions %s: truncated listing without a key marker", prefix))
				return
			}
			in.KeyMarker = out.NextKeyMarker
			in.VersionIdMarker = out.NextVersionIdMarker
		}
	}
}

func versionInfo(v types.ObjectVersion) backends.ObjectInfo {
	return backends.ObjectInfo{
		Key:          aws.ToString(v.Key),
		Size:         aws.ToInt64(v.Size),
		ETag:         backends.TrimETag(aws.ToString(v.ETag)),
		VersionID:    versionOf(v.VersionId),
		LastModified: aws.ToTime(v.LastModified),
		IsLatest:     aws.ToBool(v.IsLatest),
	}
}

func deleteMarkerInfo(d types.DeleteMarkerEntry) backends.ObjectInfo {
	return backends.ObjectInfo{
		Key:          aws.ToString(d.Key),
		VersionID:    versionOf(d.VersionId),
		LastModified: aws.ToTime(d.LastModified),
		IsLatest:     aws.ToBool(d.IsLatest),
		DeleteMarker: true,
	}
}

// newestFirst orders keys ascending, then the latest version first, then by
// modification time descending.
func newestFirst(a, b backends.ObjectInfo) int {
	if c := strings.Compare(a.Key, b.Key); c != 0 {
		return c
	}
	if a.IsLatest != b.IsLatest {
		if a.IsLatest {
			return -1
		}
		return 1
	}
	return b.LastModified.Compare(a.LastModified)
}

// Stat implements backends.Bucket with HeadObject.
func (b *Bucket) Stat(ctx context.Context, key, versionID string) (backends.ObjectInfo, error) {
	out, err := b.client.HeadObject(ctx, &s3.HeadObjectInput{
		Bucket:    &b.bucket,
		Key:       &key,
		VersionId: optional(versionID),
	})
	if err != nil {
		return backends.ObjectInfo{}, mapError("stat", key, err)
	}
	return backends.ObjectInfo{
		Key:          key,
		Size:         aws.ToInt64(out.ContentLength),
		ETag:         backends.TrimETag(aws.ToString(out.ETag)),
		VersionID:    versionOf(out.VersionId),
		LastModified: aws.ToTime(out.LastModified),
		ContentType:  aws.ToString(out.ContentType),
		Metadata:     backends.LowerKeys(out.Metadata),
	}, nil
}

// Get implements backends.Bucket with a (ranged) GetObject.
func (b *Bucket) Get(ctx context.Context, key string, opts backends.GetOptions) (io.ReadCloser, backends.ObjectInfo, error) {
	in := &s3.GetObjectInput{
		Bucket:    &b.bucket,
		Key:       &key,
		VersionId: optional(opts.VersionID),
		Range:     optional(byteRange(opts.Offset, opts.Length)),
	}
	if opts.IfMatch != "" {
		in.IfMatch = aws.String(quoteETag(opts.IfMatch))
	}
	out, err := b.client.GetObject(ctx, in)
	if err != nil {
		return nil, backends.ObjectInfo{}, mapError("get", key, err)
	}
	size := aws.ToInt64(out.ContentLength)
	if cr := aws.ToString(out.ContentRange); cr != "" {
		total, err := backends.TotalSize(cr)
		if err != nil {
			out.Body.Close()
			return nil, backends.ObjectInfo{}, fmt.Errorf("get %s: %w", key, err)
		}
		size = total
	}
	return out.Body, backends.ObjectInfo{
		Key:          key,
		Size:         size,
		ETag:         backends.TrimETag(aws.ToString(out.ETag)),
		VersionID:    versionOf(out.VersionId),
		LastModified: aws.ToTime(out.LastModified),
		ContentType:  aws.ToString(out.ContentType),
		Metadata:     backends.LowerKeys(out.Metadata),
	}, nil
}

// Put implements backends.Bucket with one PutObject of size bytes. It reads r
// from its current position; the SDK may read it twice (once to sign the
// payload) and seeks back in between. A write with a lock mode carries the
// Content-MD5 that object lock requires: custom endpoints get no SDK
// checksum (RequestChecksumCalculationWhenRequired).
func (b *Bucket) Put(ctx context.Context, key string, r io.ReadSeeker, size int64, opts backends.PutOptions) (backends.ObjectInfo, error) {
	var sum *string
	if opts.LockMode != "" {
		s, err := backends.ContentMD5(r, size)
		if err != nil {
			return backends.ObjectInfo{}, fmt.Errorf("put %s: %w", key, err)
		}
		sum = &s
	}
	out, err := b.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:                    &b.bucket,
		Key:                       &key,
		Body:                      r,
		ContentLength:             &size,
		ContentMD5:                sum,
		ContentType:               optional(opts.ContentType),
		Metadata:                  backends.LowerKeys(opts.Metadata),
		ObjectLockMode:            types.ObjectLockMode(opts.LockMode),
		ObjectLockRetainUntilDate: lockUntil(opts),
	})
	if err != nil {
		return backends.ObjectInfo{}, mapError("put", key, err)
	}
	return backends.ObjectInfo{
		Key:       key,
		Size:      size,
		ETag:      backends.TrimETag(aws.ToString(out.ETag)),
		VersionID: versionOf(out.VersionId),
	}, nil
}

// CreateMultipart implements backends.Bucket.
func (b *Bucket) CreateMultipart(ctx context.Context, key string, opts backends.PutOptions) (string, error) {
	out, err := b.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket:                    &b.bucket,
		Key:                       &key,
		ContentType:               optional(opts.ContentType),
		Metadata:                  backends.LowerKeys(opts.Metadata),
		ObjectLockMode:            types.ObjectLockMode(opts.LockMode),
		ObjectLockRetainUntilDate: lockUntil(opts),
	})
	if err != nil {
		return "", mapError("create multipart", key, err)
	}
	if aws.ToString(out.UploadId) == "" {
		return "", fmt.Errorf("create multipart %s: empty upload id", key)
	}
	return *out.UploadId, nil
}

// UploadPart implements backends.Bucket; r is read from its current position.
// A part of a locked upload carries its Content-MD5, as Put does.
func (b *Bucket) UploadPart(ctx context.Context, key, uploadID string, number int32, r io.ReadSeeker, size int64, opts backends.PartOptions) (string, error) {
	var sum *string
	if opts.Locked {
		s, err := backends.ContentMD5(r, size)
		if err != nil {
			return "", fmt.Errorf("upload part %d of %s: %w", number, key, err)
		}
		sum = &s
	}
	out, err := b.client.UploadPart(ctx, &s3.UploadPartInput{
		Bucket:        &b.bucket,
		Key:           &key,
		UploadId:      &uploadID,
		PartNumber:    &number,
		Body:          r,
		ContentLength: &size,
		ContentMD5:    sum,
	})
	if err != nil {
		return "", mapError(fmt.Sprintf("upload part %d of", number), key, err)
	}
	return backends.TrimETag(aws.ToString(out.ETag)), nil
}

// ListParts implements backends.Bucket, paging through ListParts.
func (b *Bucket) ListParts(ctx context.Context, key, uploadID string) ([]backends.Part, error) {
	in := &s3.ListPartsInput{Bucket: &b.bucket, Key: &key, UploadId: &uploadID}
	var parts []backends.Part
	for {
		out, err := b.client.ListParts(ctx, in)
		if err != nil {
			return nil, mapError("list parts of", key, err)
		}
		for _, p := range out.Parts {
			parts = append(parts, backends.Part{
				Number: aws.ToInt32(p.PartNumber),
				ETag:   backends.TrimETag(aws.ToString(p.ETag)),
				Size:   aws.ToInt64(p.Size),
			})
		}
		if !aws.ToBool(out.IsTruncated) {
			break
		}
		next := aws.ToString(out.NextPartNumberMarker)
		if next == "" || next == aws.ToString(in.PartNumberMarker) {
			return nil, fmt.Errorf("list parts of %s: truncated listing without a new part marker", key)
		}
		in.PartNumberMarker = &next
	}
	slices.SortFunc(parts, func(a, b backends.Part) int { return int(a.Number - b.Number) })
	return parts, nil
}

// CompleteMultipart implements backends.Bucket. The returned info carries
// Key, ETag and VersionID (the store does not report the size).
func (b *Bucket) CompleteMultipart(ctx context.Context, key, uploadID string, parts []backends.Part) (backends.ObjectInfo, error) {
	completed := make([]types.CompletedPart, len(parts))
	for i, p := range parts {
		completed[i] = types.CompletedPart{ETag: aws.String(quoteETag(p.ETag)), PartNumber: aws.Int32(p.Number)}
	}
	out, err := b.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket:          &b.bucket,
		Key:             &key,
		UploadId:        &uploadID,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: completed},
	})
	if err != nil {
		return backends.ObjectInfo{}, mapError("complete multipart", key, err)
	}
	return backends.ObjectInfo{
		Key:       key,
		ETag:      backends.TrimETag(aws.ToString(out.ETag)),
		VersionID: versionOf(out.VersionId),
	}, nil
}

// AbortMultipart implements backends.Bucket. S3 and MinIO answer success to
// aborting an upload that is already gone, so it first lists one part of
// the upload: that fails with NoSuchUpload when the upload does not exist.
func (b *Bucket) AbortMultipart(ctx context.Context, key, uploadID string) error {
	_, err := b.client.ListParts(ctx, &s3.ListPartsInput{
		Bucket: &b.bucket, Key: &key, UploadId: &uploadID, MaxParts: aws.Int32(1),
	})
	if err != nil {
		return mapError("abort multipart", key, err)
	}
	_, err = b.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{
		Bucket: &b.bucket, Key: &key, UploadId: &uploadID,
	})
	return mapError("abort multipart", key, err)
}

// ListMultipartUploads implements backends.Bucket, paging by key and upload
// ID markers, in key order. It lists every upload of the bucket and keeps
// those under prefix: MinIO reads a non-empty prefix as one exact object
// name. (MinIO also answers an unfiltered listing from memory, in one page
// ordered by initiation: each page is sorted by key here, and uploads begun
// before a MinIO restart are not listed.)
func (b *Bucket) ListMultipartUploads(ctx context.Context, prefix string) iter.Seq2[backends.Upload, error] {
	return func(yield func(backends.Upload, error) bool) {
		in := &s3.ListMultipartUploadsInput{Bucket: &b.bucket}
		for {
			out, err := b.client.ListMultipartUploads(ctx, in)
			if err != nil {
				yield(backends.Upload{}, mapError("list multipart uploads", prefix, err))
				return
			}
			page := make([]backends.Upload, 0, len(out.Uploads))
			for _, u := range out.Uploads {
				page = append(page, backends.Upload{
					Key:       aws.ToString(u.Key),
					UploadID:  aws.ToString(u.UploadId),
					Initiated: aws.ToTime(u.Initiated),
				})
			}
			for _, up := range backends.UploadsUnder(prefix, page) {
				if !yield(up, nil) {
					return
				}
			}
			if !aws.ToBool(out.IsTruncated) {
				return
			}
			if aws.ToString(out.NextKeyMarker) == "" && aws.ToString(out.NextUploadIdMarker) == "" {
				yield(backends.Upload{}, fmt.Errorf("list multipart uploads %s: truncated listing without markers", prefix))
				return
			}
			in.KeyMarker = out.NextKeyMarker
			in.UploadIdMarker = out.NextUploadIdMarker
		}
	}
}

// Delete implements backends.Bucket; a missing key or version is not an
// error.
func (b *Bucket) Delete(ctx context.Context, key, versionID string) error {
	_, err := b.client.DeleteObject(ctx, &s3.DeleteObjectInput{
		Bucket: &b.bucket, Key: &key, VersionId: optional(versionID),
	})
	if err = mapError("delete", key, err); backends.IsNotExist(err) {
		return nil
	}
	return err
}

// ObjectLockEnabled implements backends.Bucket with
// GetObjectLockConfiguration; a bucket that has none answers 404
// ObjectLockConfigurationNotFoundError.
func (b *Bucket) ObjectLockEnabled(ctx context.Context) (bool, error) {
	out, err := b.client.GetObjectLockConfiguration(ctx, &s3.GetObjectLockConfigurationInput{Bucket: &b.bucket})
	if err != nil {
		var ae smithy.APIError
		if errors.As(err, &ae) && ae.ErrorCode() == "ObjectLockConfigurationNotFoundError" {
			return false, nil
		}
		return false, mapError("get object lock configuration of", b.name, err)
	}
	return out.ObjectLockConfiguration != nil && out.ObjectLockConfiguration.ObjectLockEnabled == types.ObjectLockEnabledEnabled, nil
}

// ExtendRetention implements backends.Bucket with PutObjectRetention. The
// SDK adds a checksum of the request body itself: the operation requires
// one.
func (b *Bucket) ExtendRetention(ctx context.Context, key, versionID string, mode backends.LockMode, until time.Time) error {
	_, err := b.client.PutObjectRetention(ctx, &s3.PutObjectRetentionInput{
		Bucket:    &b.bucket,
		Key:       &key,
		VersionId: optional(versionID),
		Retention: &types.ObjectLockRetention{Mode: types.ObjectLockRetentionMode(mode), RetainUntilDate: &until},
	})
	return mapError("extend retention of", key, err)
}

// lockUntil is the retain-until date of opts, nil without a lock mode.
func lockUntil(opts backends.PutOptions) *time.Time {
	if opts.LockMode == "" {
		return nil
	}
	return &opts.LockUntil
}

// mapError names the operation and the key and classifies err: an HTTP
// answer becomes a *backends.HTTPError, joined with ErrNotExist,
// ErrPreconditionFailed or ErrNoSuchUpload where it means that; anything
// else (network failures, cancellation) stays wrapped as it is.
func mapError(op, key string, err error) error {
	if err == nil {
		return nil
	}
	var status int
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
	}
	var code, msg string
	var ae smithy.APIError
	if errors.As(err, &ae) {
		code, msg = ae.ErrorCode(), ae.ErrorMessage()
	}
	if status == 0 {
		return backends.TransportError(op, key, err)
	}
	return backends.StatusError(op, key, status, code, msg)
}

// byteRange returns the HTTP Range for offset and length, or "" for the
// whole object.
func byteRange(offset, length int64) string {
	switch {
	case length > 0:
		return fmt.Sprintf("bytes=%d-%d", offset, offset+length-1)
	case offset > 0:
		return fmt.Sprintf("bytes=%d-", offset)
	}
	return ""
}

// versionOf maps S3's "null" version (unversioned or suspended bucket) to "".
func versionOf(v *string) string {
	if s := aws.ToString(v); s != "null" {
		return s
	}
	return ""
}

func quoteETag(etag string) string {
	if strings.HasPrefix(etag, `"`) || strings.HasPrefix(etag, "W/") {
		return etag
	}
	return `"` + etag + `"`
}

// optional returns nil for "" so that empty options are left out of requests.
func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
