package serve

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/rclone/gofakes3"
	"go.etcd.io/bbolt"

	"github.com/voyageur-ca/voyageur/backends"
	"github.com/voyageur-ca/voyageur/crypto"
	"github.com/voyageur-ca/voyageur/replicator/recovery"
)

// fingerprintMeta is voyageur's own user metadata on replicas
// (docs/FORMAT.md §7): not the source's, never served.
const fingerprintMeta = "voyageur-fp"

// prefetch is how much plaintext a GET decodes before answering: a replica
// that fails authentication there gets an S3 error, not a cut connection.
const prefetch = crypto.ChunkSize

// backend answers gofakes3 from the catalogs. Writes never reach it (the
// front handler refuses them); its write methods only say so.
type backend struct{ s *Server }

var _ gofakes3.Backend = (*backend)(nil)

func (be *backend) ListBuckets(context.Context) ([]gofakes3.BucketInfo, error) {
	out := make([]gofakes3.BucketInfo, 0, len(be.s.names))
	for _, name := range be.s.names {
		out = append(out, gofakes3.BucketInfo{Name: name, CreationDate: gofakes3.NewContentTime(be.s.started)})
	}
	return out, nil
}

func (be *backend) BucketExists(_ context.Context, name string) (bool, error) {
	_, ok := be.s.buckets[name]
	return ok, nil
}

// loaded returns a bucket whose catalog is loaded.
func (be *backend) loaded(name string) (*bucket, error) {
	b, ok := be.s.buckets[name]
	if !ok {
		return nil, gofakes3.BucketNotFound(name)
	}
	if b.state.Load() == nil {
		return nil, errNotLoaded(name)
	}
	return b, nil
}

func (be *backend) ListBucket(_ context.Context, name string, prefix *gofakes3.Prefix, page gofakes3.ListBucketPage) (*gofakes3.ObjectList, error) {
	b, err := be.loaded(name)
	if err != nil {
		return nil, err
	}
	var out *gofakes3.ObjectList
	err = b.cat.view(func(keys *bbolt.Bucket) error {
		if keys == nil {
			out = gofakes3.NewObjectList()
			return nil
		}
		var err error
		out, err = listPage(keys.Cursor(), prefix, page, b.encrypted())
		return err
	})
	if err != nil {
		be.s.log.Error("listing failed", "job", name, "err", err)
		return nil, gofakes3.ErrorMessage(gofakes3.ErrInternal, "the catalog could not be read")
	}
	return out, nil
}

// lookup finds one object.
func (be *backend) lookup(name, key string) (*bucket, *entry, error) {
	b, err := be.loaded(name)
	if err != nil {
		return nil, nil, err
	}
	e, ok, err := b.cat.find(key)
	if err != nil {
		be.s.log.Error("catalog lookup failed", "job", name, "key", key, "err", err)
		return nil, nil, gofakes3.ErrorMessage(gofakes3.ErrInternal, "the catalog could not be read")
	}
	if !ok {
		return nil, nil, gofakes3.KeyNotFound(key)
	}
	return b, e, nil
}

// object describes e as S3 does; contentType and meta are the plain
// replica's own (encrypted ones have theirs in META).
func (be *backend) object(b *bucket, e *entry, contentType string, meta map[string]string) *gofakes3.Object {
	if b.encrypted() {
		contentType, meta = e.rep.Meta.ContentType, e.rep.Meta.Metadata
	}
	if contentType == "" {
		contentType = "binary/octet-stream" // what S3 answers for none
	}
	md := map[string]string{
		"Content-Type":  contentType,
		"Last-Modified": e.rep.Meta.MTime.UTC().Format(http.TimeFormat),
	}
	for k, v := range meta {
		if k != fingerprintMeta {
			md["X-Amz-Meta-"+k] = v
		}
	}
	return &gofakes3.Object{
		Name:     e.key,
		Metadata: md,
		Size:     e.rep.Meta.Size,
		Hash:     hashOf(e.etag(b.encrypted())),
		Contents: io.NopCloser(bytes.NewReader(nil)),
	}
}

func (be *backend) HeadObject(ctx context.Context, name, key string) (*gofakes3.Object, error) {
	b, e, err := be.lookup(name, key)
	if err != nil {
		return nil, err
	}
	if b.encrypted() {
		return be.object(b, e, "", nil), nil
	}
	info, err := b.job.Dest.Stat(ctx, e.rep.DestKey, e.rep.VersionID)
	if err != nil {
		return nil, be.fetchError(b, e, err)
	}
	return be.object(b, e, info.ContentType, info.Metadata), nil
}

func (be *backend) GetObject(ctx context.Context, name, key string, rangeRequest *gofakes3.ObjectRangeRequest) (*gofakes3.Object, error) {
	b, e, err := be.lookup(name, key)
	if err != nil {
		return nil, err
	}
	rng, err := rangeRequest.Range(e.rep.Meta.Size)
	if err != nil {
		return nil, err
	}
	off, n := int64(0), e.rep.Meta.Size
	if rng != nil {
		off, n = rng.Start, rng.Length
	}
	if !b.encrypted() {
		ctx, cancel := context.WithCancel(ctx)
		rc, info, err := b.job.Dest.Get(ctx, e.rep.DestKey, plainGet(&e.rep, off, n))
		if err != nil {
			cancel()
			return nil, be.fetchError(b, e, err)
		}
		obj := be.object(b, e, info.ContentType, info.Metadata)
		obj.Range = rng
		ra := newReadAhead(&countingReader{r: rc, n: &be.s.metrics.fetchedBytes}, rc, cancel, n, blockFor(n))
		obj.Contents = &body{rest: ra, c: ra, want: n, st: stateOf(ctx)}
		return obj, nil
	}
	obj := be.object(b, e, "", nil)
	obj.Range = rng
	if n == 0 {
		return obj, nil
	}
	head, rest, c, err := be.openRange(ctx, b, e, off, n)
	if err != nil {
		be.s.readFailed(b.job.Name, key, err)
		return nil, gofakes3.ErrorMessage(gofakes3.ErrInternal, "the replica of this object could not be read or failed authentication")
	}
	obj.Contents = &body{head: head, rest: rest, c: c, want: n, st: stateOf(ctx)}
	return obj, nil
}

// plainGet selects bytes [off, off+n) of a plain replica version.
func plainGet(rep *recovery.Replica, off, n int64) backends.GetOptions {
	opts := backends.GetOptions{Offset: off, Length: n, VersionID: rep.VersionID}
	if n == 0 {
		// An empty object has nothing to select: read it whole.
		opts.Offset, opts.Length = 0, -1
	}
	if rep.VersionID == "" {
		// Plain bytes are not authenticated: a replica rewritten since the
		// catalog was read must not be served under the old size and ETag.
		opts.IfMatch = rep.ETag
	}
	return opts
}

// openRange returns the plaintext [off, off+n) of an encrypted replica:
// its first bytes already decoded and authenticated, and the rest (nil
// when there is none) decoded ahead of the client, while the replica is
// read and decrypted ahead of the decoding (decrypter): fetching,
// decrypting, decoding and sending overlap.
func (be *backend) openRange(ctx context.Context, b *bucket, e *entry, off, n int64) ([]byte, *readAhead, io.Closer, error) {
	ck := cacheKey(&e.rep)
	o, ok := be.s.cache.get(ck)
	if !ok {
		var err error
		if o, err = open(ctx, b.job.Dest, &e.rep, be.s.opts.Identities, &be.s.metrics.fetchedBytes); err != nil {
			return nil, nil, nil, err
		}
		be.s.cache.put(ck, o)
	}
	start, end, plain := crypto.PartSpan(o.trailer, o.streamSize, off, n)
	// Cancelled when the body is closed: ends a replica read that the
	// plaintext read-ahead waits for.
	ctx, cancel := context.WithCancel(ctx)
	// Parts start on chunk boundaries, and the section ends on one or at
	// the end of the stream: it is whole chunks.
	src, err := newDecrypter(ctx, e.rep.DestKey, o.payload, o.payloadOff, start/crypto.ChunkSize,
		(end+crypto.ChunkSize-1)/crypto.ChunkSize, segmentFor(n), o.fetch(b.job.Dest, &e.rep), &be.s.metrics.fetchedBytes)
	if err != nil {
		cancel()
		return nil, nil, nil, err
	}
	// Unhashed: every byte sent was authenticated and open checked that
	// the replica is the catalog's; the TRAILER SHA-256 would add only a
	// check of the writer, which restore and verify make, for a quarter of
	// serve's CPU (docs/failover.md, "Integrity").
	rr := crypto.NewUnhashedRangeReader(src, o.trailer, plain, off, n)
	first := make([]byte, min(n, prefetch))
	k, err := io.ReadFull(rr, first)
	if err != nil {
		cancel()
		src.Close()
		return nil, nil, nil, fmt.Errorf("read %s of replica %s: %w", e.key, e.rep.DestKey, err)
	}
	if int64(k) == n {
		return first, nil, getCloser{cancel: cancel, src: src}, nil
	}
	rest := newReadAhead(rr, nil, cancel, n-int64(k), blockFor(n))
	return first, rest, getCloser{cancel: cancel, rest: rest, src: src}, nil
}

// getCloser ends an encrypted GET: the context first, so that a replica
// read the plaintext read-ahead waits in returns, then that read-ahead
// (nil when none was needed), then the replica's. The plaintext
// read-ahead must end first: it reads through src.
type getCloser struct {
	cancel context.CancelFunc
	rest   io.Closer
	src    io.Closer
}

func (g getCloser) Close() error {
	g.cancel()
	if g.rest != nil {
		g.rest.Close()
	}
	return g.src.Close()
}

// fetchError turns a failed read of a plain replica into an S3 error.
func (be *backend) fetchError(b *bucket, e *entry, err error) error {
	be.s.readFailed(b.job.Name, e.key, err)
	return gofakes3.ErrorMessage(gofakes3.ErrInternal, "the replica of this object could not be read")
}

// body is an object's Contents: the bytes decoded before the response
// started, then a read-ahead's. It records a read error in the request
// state, so that the front handler cuts the connection, and reports a
// body shorter than announced as an error too.
type body struct {
	head []byte
	rest *readAhead // nil: head is all
	c    io.Closer
	want int64
	got  int64
	st   *reqState
}

var _ io.WriterTo = (*body)(nil)

func (b *body) Read(p []byte) (int, error) {
	if len(b.head) > 0 {
		n := copy(p, b.head)
		b.head = b.head[n:]
		b.got += int64(n)
		return n, nil
	}
	if b.rest == nil {
		return 0, b.end(io.EOF)
	}
	n, err := b.rest.Read(p)
	b.got += int64(n)
	return n, b.end(err)
}

// WriteTo hands the read-ahead's blocks to w as they are, sparing the
// copy through a buffer that io.Copy would make.
func (b *body) WriteTo(w io.Writer) (int64, error) {
	var n int64
	for {
		p := b.head
		b.head = nil
		if len(p) == 0 {
			if b.rest == nil {
				return n, b.endCopy(io.EOF)
			}
			var err error
			if p, err = b.rest.next(); err != nil {
				return n, b.endCopy(err)
			}
		}
		k, err := w.Write(p)
		n += int64(k)
		b.got += int64(k)
		if err != nil {
			return n, err
		}
	}
}

// endCopy is end for WriteTo, which ends with nil, not io.EOF.
func (b *body) endCopy(err error) error {
	if err = b.end(err); err == io.EOF {
		return nil
	}
	return err
}

// end checks how reading ended: io.EOF short of the announced size is an
// error, and an error is recorded for the front handler.
func (b *body) end(err error) error {
	if err == io.EOF && b.got != b.want {
		err = fmt.Errorf("%d of %d bytes: %w", b.got, b.want, io.ErrUnexpectedEOF)
	}
	if err != nil && err != io.EOF && b.st != nil && b.st.bodyErr == nil {
		b.st.bodyErr = err
	}
	return err
}

func (b *body) Close() error {
	if b.c != nil {
		return b.c.Close()
	}
	return nil
}

type countingReader struct {
	r io.Reader
	n interface{ Add(int64) int64 }
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// errReadOnly answers the write methods, which the front handler never
// lets through.
var errReadOnly = gofakes3.ErrorMessage(gofakes3.ErrNotImplemented, "voyageur serve is read-only")

func (be *backend) CreateBucket(context.Context, string) error { return errReadOnly }
func (be *backend) DeleteBucket(context.Context, string) error { return errReadOnly }
func (be *backend) DeleteObject(context.Context, string, string) (gofakes3.ObjectDeleteResult, error) {
	return gofakes3.ObjectDeleteResult{}, errReadOnly
}
func (be *backend) PutObject(context.Context, string, string, map[string]string, io.Reader, int64) (gofakes3.PutObjectResult, error) {
	return gofakes3.PutObjectResult{}, errReadOnly
}
func (be *backend) DeleteMulti(context.Context, string, ...string) (gofakes3.MultiDeleteResult, error) {
	return gofakes3.MultiDeleteResult{}, errReadOnly
}
func (be *backend) CopyObject(context.Context, string, string, string, string, map[string]string) (gofakes3.CopyObjectResult, error) {
	return gofakes3.CopyObjectResult{}, errReadOnly
}
