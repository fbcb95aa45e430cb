// Package azure is a backends.Bucket on one Azure Blob Storage container,
// through the official SDK (azblob), with a shared key, a SAS, or the Azure
// default credential chain (environment, workload identity, managed
// identity, Azure CLI).
//
// How the S3-shaped contract maps onto block blobs:
//
//   - ETags. A blob written in one request (Put Blob) carries the MD5 of its
//     bytes, which Azure computes and stores: its ETag is that MD5 in hex,
//     as on S3, so plain replicas compare across stores. A blob assembled
//     from staged blocks has no whole MD5; CompleteMultipart stores an
//     S3-style "HEX-N" ETag in the reserved metadata name vx_etag. A blob
//     with neither (written by another tool) reports Azure's own ETag
//     ("0x8DC…"). GetOptions.IfMatch is checked against the ETag derived
//     from the very response that carries the bytes (Azure returns the
//     whole blob's MD5 and metadata with every ranged read), so a blob
//     overwritten mid-copy fails with ErrPreconditionFailed as on S3.
//   - Listing is in key order; StartAfter becomes ListBlobs' StartFrom
//     (inclusive, so the start key itself is skipped here).
//   - Multipart uploads. Azure has no upload IDs: a block blob's uncommitted
//     blocks belong to the blob name. CreateMultipart picks a random upload
//     ID and writes an empty marker blob, uploadsPrefix+ID+"/"+KEY, holding
//     the upload's content type and metadata (Complete has no options) and,
//     as its creation time, when the upload began. Part N is a staged block
//     whose ID is base64("voyageur:ID:NNNNNN"): deterministic per upload and
//     part, and of equal length as Azure requires. A part's ETag is derived
//     from its block ID (Azure lists a staged block's ID and size, not its
//     MD5), so ListParts (Get Block List, uncommitted) returns exactly what
//     UploadPart returned and a killed upload resumes with the blocks Azure
//     holds. CompleteMultipart commits the block list and deletes the
//     marker. AbortMultipart deletes the marker; Azure has no call to drop
//     uncommitted blocks, which it discards when the blob is next written
//     or after 7 days without a staged block. ListMultipartUploads lists
//     the markers. Marker blobs are hidden from List; other tools see them
//     under .voyageur-uploads/ while an upload is incomplete. Two uploads to
//     one key at once cannot both complete: committing one discards the
//     other's blocks (the replicator never runs two).
//   - Metadata names are mapped to C# identifiers and back (see
//     encodeName); values must be ASCII, as in HTTP headers.
//   - Versions. With blob versioning on the account, List with Versions
//     lists every version (newest first within a key; IsLatest is Azure's
//     current version). Azure records no delete markers: a deleted blob's
//     versions all show IsLatest false, and when it was deleted is unknown.
//   - Retention. Azure's immutability policies are set per container or
//     version with rules unlike S3 object lock (a policy can be locked for
//     good, legal holds have no date); this backend does not map them:
//     ObjectLockEnabled is false and locked writes are refused.
package azure

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"github.com/voyageur-ca/voyageur/backends"
)

// Config is one container of one storage account.
type Config struct {
	// Account is the storage account name.
	Account string
	// Key is the account's shared key; SAS a shared access signature (the
	// query string, with or without its leading '?'). At most one is set;
	// with neither, the Azure default credential chain is used.
	Key, SAS string
	// URL is the blob service endpoint; empty means
	// https://ACCOUNT.blob.core.windows.net. Set it for the emulator
	// (http://127.0.0.1:10000/devstoreaccount1) or a sovereign cloud.
	URL string
	// Container is the container name.
	Container string
	// CAFile adds trusted CAs (see backends.RootCAs).
	CAFile   string
	Timeouts backends.Timeouts
}

// Bucket is a backends.Bucket on one container.
type Bucket struct {
	c    *container.Client
	name string
	// live remembers the uploads whose marker this process has seen, so
	// that UploadPart checks an upload once, not once per part.
	live sync.Map
}

var _ backends.Bucket = (*Bucket)(nil)

// errNoLock is why retention is refused.
var errNoLock = errors.New("retention is not supported on azure blob storage by voyageur (no mapping of s3 object lock to azure immutability policies)")

// New returns the Bucket for cfg. It makes no request.
func New(cfg Config) (*Bucket, error) {
	if cfg.Account == "" || cfg.Container == "" {
		return nil, errors.New("azure: account and container are required")
	}
	if cfg.Key != "" && cfg.SAS != "" {
		return nil, errors.New("azure: set key or sas, not both")
	}
	service := cfg.URL
	if service == "" {
		service = "https://" + cfg.Account + ".blob.core.windows.net"
	}
	u, err := backends.ParseURL(service)
	if err != nil {
		return nil, fmt.Errorf("azure url: %w", err)
	}
	tr, err := backends.NewTransport(cfg.CAFile, cfg.Timeouts)
	if err != nil {
		return nil, err
	}
	opts := &container.ClientOptions{ClientOptions: azcore.ClientOptions{
		Transport: &http.Client{Transport: tr},
		// Retries live in backends/retry.
		Retry: policy.RetryOptions{MaxRetries: -1},
	}}
	curl := strings.TrimRight(u.String(), "/") + "/" + url.PathEscape(cfg.Container)
	var c *container.Client
	switch {
	case cfg.Key != "":
		cred, err := azblob.NewSharedKeyCredential(cfg.Account, cfg.Key)
		if err != nil {
			// The SDK's message would quote the key.
			return nil, errors.New("azure key: not a base64 account key")
		}
		c, err = container.NewClientWithSharedKeyCredential(curl, cred, opts)
		if err != nil {
			return nil, fmt.Errorf("azure client: %w", err)
		}
	case cfg.SAS != "":
		c, err = container.NewClientWithNoCredential(curl+"?"+strings.TrimPrefix(cfg.SAS, "?"), opts)
		if err != nil {
			return nil, errors.New("azure client: the sas does not make a valid url")
		}
	default:
		cred, err := azidentity.NewDefaultAzureCredential(nil)
		if err != nil {
			return nil, fmt.Errorf("azure default credential: %w", err)
		}
		c, err = container.NewClient(curl, cred, opts)
		if err != nil {
			return nil, fmt.Errorf("azure client: %w", err)
		}
	}
	return &Bucket{c: c, name: "azure://" + cfg.Account + "/" + cfg.Container}, nil
}

// Name implements backends.Bucket.
func (b *Bucket) Name() string { return b.name }

// fail classifies an SDK error: Azure's answer becomes a
// backends.StatusError with Azure's error code and the first line of its
// message; a request that got no answer, a TransportError. The SDK's own
// error text is never used: it quotes the request URL, SAS and all.
func fail(op, key string, err error) error {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return backends.StatusError(op, key, re.StatusCode, re.ErrorCode, message(re))
	}
	// The SDK marks a request its credential could not authorize (no token
	// from the chain, a token policy on plain http) as not retriable;
	// such an error may hold the credentials' own failed requests.
	if errors.As(err, new(interface{ NonRetriable() })) {
		return &credentialError{msg: subjectOf(op, key) + ": azure credential: " + oneLine(err.Error()), err: err}
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		if u, perr := url.Parse(ue.URL); perr == nil {
			u.RawQuery = ""
			ue.URL = u.String()
		}
	}
	return backends.TransportError(op, key, err)
}

// credentialError is a request the credential refused to authorize: no
// retry changes it.
type credentialError struct {
	msg string
	err error
}

func (e *credentialError) Error() string   { return e.msg }
func (e *credentialError) Unwrap() error   { return e.err }
func (e *credentialError) Retryable() bool { return false }

func subjectOf(op, key string) string {
	if key == "" {
		return op
	}
	return op + " " + key
}

// oneLine shortens azidentity's report to one line: its first line and
// the one line per credential of a chain ("EnvironmentCredential: missing
// environment variable AZURE_TENANT_ID"), not the HTTP exchanges dumped
// below them.
func oneLine(s string) string {
	lines := strings.Split(s, "\n")
	clean := func(l string) string { return strings.TrimSuffix(strings.TrimSpace(l), ".") }
	out := []string{clean(lines[0])}
	for _, l := range lines[1:] {
		if strings.HasPrefix(l, "\t") && !strings.HasPrefix(l, "\t\t") {
			out = append(out, clean(l))
		}
	}
	return strings.Join(out, "; ")
}

// message is the first line of the Message in Azure's error body.
func message(re *azcore.ResponseError) string {
	if re.RawResponse == nil {
		return ""
	}
	body, err := runtime.Payload(re.RawResponse)
	if err != nil {
		return ""
	}
	var e struct {
		Message string `xml:"Message"`
	}
	if xml.Unmarshal(body, &e) != nil {
		return ""
	}
	msg, _, _ := strings.Cut(e.Message, "\n")
	return strings.TrimSpace(msg)
}

// etagOf derives the ETag reported for a blob (see the package comment).
func etagOf(md5sum []byte, meta map[string]*string, native *azcore.ETag) string {
	if v := metaValue(meta, etagMeta); v != "" {
		return v
	}
	if len(md5sum) == md5.Size {
		return hex.EncodeToString(md5sum)
	}
	if native == nil {
		return ""
	}
	return strings.Trim(string(*native), `"`)
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// List implements backends.Bucket.
func (b *Bucket) List(ctx context.Context, opts backends.ListOptions) iter.Seq2[backends.ObjectInfo, error] {
	return func(yield func(backends.ObjectInfo, error) bool) {
		lo := &container.ListBlobsFlatOptions{Include: container.ListBlobsInclude{Metadata: true, Versions: opts.Versions}}
		if opts.Prefix != "" {
			lo.Prefix = &opts.Prefix
		}
		after := opts.StartAfter
		if opts.Versions {
			after = ""
		}
		if after != "" {
			lo.StartFrom = &after
		}
		// A key's versions are gathered and yielded newest first.
		var group []backends.ObjectInfo
		flush := func() bool {
			slices.SortStableFunc(group, func(x, y backends.ObjectInfo) int { return strings.Compare(y.VersionID, x.VersionID) })
			for _, oi := range group {
				if !yield(oi, nil) {
					return false
				}
			}
			group = group[:0]
			return true
		}
		pager := b.c.NewListBlobsFlatPager(lo)
		for pager.More() {
			page, err := pager.NextPage(ctx)
			if err != nil {
				yield(backends.ObjectInfo{}, fail("list", opts.Prefix, err))
				return
			}
			for _, it := range page.Segment.BlobItems {
				name := deref(it.Name)
				if strings.HasPrefix(name, uploadsPrefix) || (after != "" && name <= after) || it.Properties == nil {
					continue
				}
				p := it.Properties
				oi := backends.ObjectInfo{
					Key:          name,
					Size:         deref(p.ContentLength),
					ETag:         etagOf(p.ContentMD5, it.Metadata, p.ETag),
					VersionID:    deref(it.VersionID),
					LastModified: deref(p.LastModified),
					IsLatest:     it.IsCurrentVersion == nil || *it.IsCurrentVersion,
				}
				if !opts.Versions {
					if !yield(oi, nil) {
						return
					}
					continue
				}
				if len(group) > 0 && group[0].Key != name && !flush() {
					return
				}
				group = append(group, oi)
			}
		}
		flush()
	}
}

func (b *Bucket) blob(key, versionID string) (*blockblob.Client, error) {
	bb := b.c.NewBlockBlobClient(key)
	if versionID == "" {
		return bb, nil
	}
	return bb.WithVersionID(versionID)
}

// Stat implements backends.Bucket.
func (b *Bucket) Stat(ctx context.Context, key, versionID string) (backends.ObjectInfo, error) {
	bb, err := b.blob(key, versionID)
	if err != nil {
		return backends.ObjectInfo{}, fmt.Errorf("stat %s: %w", key, err)
	}
	p, err := bb.GetProperties(ctx, nil)
	if err != nil {
		return backends.ObjectInfo{}, fail("stat", key, err)
	}
	return backends.ObjectInfo{
		Key:          key,
		Size:         deref(p.ContentLength),
		ETag:         etagOf(p.ContentMD5, p.Metadata, p.ETag),
		VersionID:    deref(p.VersionID),
		LastModified: deref(p.LastModified),
		ContentType:  deref(p.ContentType),
		Metadata:     decodeMetadata(p.Metadata),
		IsLatest:     p.IsCurrentVersion == nil || *p.IsCurrentVersion,
	}, nil
}

// Get implements backends.Bucket.
func (b *Bucket) Get(ctx context.Context, key string, opts backends.GetOptions) (io.ReadCloser, backends.ObjectInfo, error) {
	bb, err := b.blob(key, opts.VersionID)
	if err != nil {
		return nil, backends.ObjectInfo{}, fmt.Errorf("get %s: %w", key, err)
	}
	do := &blob.DownloadStreamOptions{}
	ranged := opts.Offset > 0 || opts.Length > 0
	if ranged {
		do.Range = blob.HTTPRange{Offset: opts.Offset, Count: max(opts.Length, 0)}
	}
	if strings.HasPrefix(opts.IfMatch, "0x") {
		// Azure's own ETag: the service checks it.
		et := azcore.ETag(`"` + opts.IfMatch + `"`)
		do.AccessConditions = &blob.AccessConditions{ModifiedAccessConditions: &blob.ModifiedAccessConditions{IfMatch: &et}}
	}
	r, err := bb.DownloadStream(ctx, do)
	if err != nil {
		return nil, backends.ObjectInfo{}, fail("get", key, err)
	}
	sum := r.ContentMD5
	if ranged {
		sum = r.BlobContentMD5
	}
	size := deref(r.ContentLength)
	if cr := deref(r.ContentRange); cr != "" {
		if _, total, ok := strings.Cut(cr, "/"); ok {
			if n, err := strconv.ParseInt(total, 10, 64); err == nil {
				size = n
			}
		}
	}
	oi := backends.ObjectInfo{
		Key:          key,
		Size:         size,
		ETag:         etagOf(sum, r.Metadata, r.ETag),
		VersionID:    deref(r.VersionID),
		LastModified: deref(r.LastModified),
		ContentType:  deref(r.ContentType),
		Metadata:     decodeMetadata(r.Metadata),
		IsLatest:     r.IsCurrentVersion == nil || *r.IsCurrentVersion,
	}
	if opts.IfMatch != "" && oi.ETag != opts.IfMatch {
		r.Body.Close()
		return nil, backends.ObjectInfo{}, backends.StatusError("get", key, http.StatusPreconditionFailed, "ConditionNotMet",
			fmt.Sprintf("etag is %s, not %s", oi.ETag, opts.IfMatch))
	}
	return r.Body, oi, nil
}

// Put implements backends.Bucket.
func (b *Bucket) Put(ctx context.Context, key string, r io.ReadSeeker, size int64, opts backends.PutOptions) (backends.ObjectInfo, error) {
	if opts.LockMode != "" {
		return backends.ObjectInfo{}, fmt.Errorf("put %s: %w", key, errNoLock)
	}
	body, err := fromHere(r, size)
	if err != nil {
		return backends.ObjectInfo{}, fmt.Errorf("put %s: %w", key, err)
	}
	resp, err := b.c.NewBlockBlobClient(key).Upload(ctx, body, &blockblob.UploadOptions{
		HTTPHeaders: headers(opts.ContentType),
		Metadata:    encodeMetadata(opts.Metadata),
	})
	if err != nil {
		return backends.ObjectInfo{}, fail("put", key, err)
	}
	return backends.ObjectInfo{
		Key: key, Size: size,
		ETag:         etagOf(resp.ContentMD5, nil, resp.ETag),
		VersionID:    deref(resp.VersionID),
		LastModified: deref(resp.LastModified),
	}, nil
}

func headers(contentType string) *blob.HTTPHeaders {
	if contentType == "" {
		return nil
	}
	return &blob.HTTPHeaders{BlobContentType: &contentType}
}

// Delete implements backends.Bucket.
func (b *Bucket) Delete(ctx context.Context, key, versionID string) error {
	bb, err := b.blob(key, versionID)
	if err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	if _, err := bb.Delete(ctx, nil); err != nil {
		if err := fail("delete", key, err); !backends.IsNotExist(err) {
			return err
		}
	}
	return nil
}

// ObjectLockEnabled implements backends.Bucket: never (see the package
// comment).
func (b *Bucket) ObjectLockEnabled(context.Context) (bool, error) { return false, nil }

// ExtendRetention implements backends.Bucket: always refused.
func (b *Bucket) ExtendRetention(_ context.Context, key, _ string, _ backends.LockMode, _ time.Time) error {
	return fmt.Errorf("extend retention of %s: %w", key, errNoLock)
}

// section reads size bytes of r from its position, seeking relative to it:
// the SDK measures and rewinds a body from offset 0.
type section struct {
	r          io.ReadSeeker
	base, size int64
	pos        int64
}

func fromHere(r io.ReadSeeker, size int64) (io.ReadSeekCloser, error) {
	base, err := r.Seek(0, io.SeekCurrent)
	if err != nil {
		return nil, err
	}
	return &section{r: r, base: base, size: size}, nil
}

func (s *section) Read(p []byte) (int, error) {
	if s.pos >= s.size {
		return 0, io.EOF
	}
	if int64(len(p)) > s.size-s.pos {
		p = p[:s.size-s.pos]
	}
	n, err := s.r.Read(p)
	s.pos += int64(n)
	return n, err
}

func (s *section) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekCurrent:
		off += s.pos
	case io.SeekEnd:
		off += s.size
	}
	if off < 0 {
		return 0, errors.New("seek before the start")
	}
	if _, err := s.r.Seek(s.base+off, io.SeekStart); err != nil {
		return 0, err
	}
	s.pos = off
	return off, nil
}

func (s *section) Close() error { return nil }
