package serve

import (
	"bytes"
	"container/list"
	"context"
	"fmt"
	"io"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"filippo.io/age"

	"github.com/voyageur-ca/voyageur/backends"
	"github.com/voyageur-ca/voyageur/crypto"
	"github.com/voyageur-ca/voyageur/replicator/recovery"
)

const (
	// headSize is the start of a replica that opening it reads: the age
	// header (voyageur writes at most 64 KiB), the payload nonce and the
	// first two chunks, which hold the META (at most 64 KiB).
	headSize = 64<<10 + 16 + 2*crypto.EncChunkSize
	// tailSize is the end it reads: the final chunk, authenticated then,
	// and the one before, which with it holds the TRAILER of up to about
	// 4000 parts.
	tailSize = 2 * crypto.EncChunkSize
	// openedCacheSize bounds the replicas kept open (at most their
	// payload key, the part index and a replica small enough to be read
	// whole at open: about 300 KiB each).
	openedCacheSize = 128
)

// opened is what a GET of an encrypted replica needs beyond the bytes it
// reads: the payload opener (from the unwrapped file key), the ends of the
// replica and the TRAILER. Keeping it spares every GET the header, final
// chunk and TRAILER reads.
type opened struct {
	payload    *crypto.Payload
	size       int64  // replica bytes
	whole      []byte // the replica, when opening it read it all
	payloadOff int64  // where chunk 0 starts: header and nonce
	streamSize int64  // the zstd stream (age plaintext)
	trailer    crypto.Trailer
}

// ends is an io.ReaderAt over one replica version while it is opened: its
// head and tail from memory, any other bytes (a TRAILER longer than the
// tail) by a GET of just those.
type ends struct {
	ctx        context.Context
	b          backends.Bucket
	rep        *recovery.Replica
	head, tail []byte
	fetched    *atomic.Int64
}

func (s *ends) ReadAt(p []byte, off int64) (int, error) {
	end := off + int64(len(p))
	tailOff := s.rep.Size - int64(len(s.tail))
	switch {
	case end <= int64(len(s.head)):
		return copy(p, s.head[off:]), nil
	case off >= tailOff && len(s.tail) > 0:
		n := copy(p, s.tail[off-tailOff:])
		if off+int64(n) == s.rep.Size {
			return n, io.EOF
		}
		return n, nil
	}
	b, err := readFull(s.ctx, s.b, s.rep, off, min(end, s.rep.Size)-off, s.fetched)
	if err != nil {
		return 0, err
	}
	n := copy(p, b)
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// getReplica opens n bytes of the encrypted replica version from off. It
// is not pinned to the ETag the catalog saw: a replica rewritten since
// (or altered) has another file key or fails authentication, so its bytes
// can never be spliced into a response, and an ETag check would only hide
// tampering behind "changed".
func getReplica(ctx context.Context, b backends.Bucket, rep *recovery.Replica, off, n int64) (io.ReadCloser, error) {
	opts := backends.GetOptions{Offset: off, Length: n, VersionID: rep.VersionID}
	rc, _, err := b.Get(ctx, rep.DestKey, opts)
	if err != nil {
		return nil, fmt.Errorf("read replica %s: %w", rep.DestKey, err)
	}
	return rc, nil
}

// readFull fetches n bytes of the replica from off.
func readFull(ctx context.Context, b backends.Bucket, rep *recovery.Replica, off, n int64, fetched *atomic.Int64) ([]byte, error) {
	rc, err := getReplica(ctx, b, rep, off, n)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	buf := make([]byte, n)
	k, err := io.ReadFull(rc, buf)
	fetched.Add(int64(k))
	if err != nil {
		return nil, fmt.Errorf("read replica %s: %w", rep.DestKey, err)
	}
	return buf, nil
}

// open reads what every GET of the replica needs: the header (to unwrap the
// file key once), the final chunk (authenticated, last-chunk flag and all) and the TRAILER.
func open(ctx context.Context, b backends.Bucket, rep *recovery.Replica, ids []age.Identity, fetched *atomic.Int64) (*opened, error) {
	o := &opened{size: rep.Size}
	var head, tail []byte
	if rep.Size <= headSize+tailSize {
		all, err := readFull(ctx, b, rep, 0, rep.Size, fetched)
		if err != nil {
			return nil, err
		}
		head, o.whole = all, all
	} else {
		var err error
		if head, err = readFull(ctx, b, rep, 0, headSize, fetched); err != nil {
			return nil, err
		}
		if tail, err = readFull(ctx, b, rep, rep.Size-tailSize, tailSize, fetched); err != nil {
			return nil, err
		}
	}
	hdr, err := age.ExtractHeader(bytes.NewReader(head))
	if err != nil {
		return nil, fmt.Errorf("open replica %s: %w", rep.DestKey, err)
	}
	fileKey, err := age.DecryptHeader(hdr, ids...)
	if err != nil {
		return nil, fmt.Errorf("open replica %s: %w", rep.DestKey, err)
	}
	o.payloadOff = int64(len(hdr)) + 16
	if o.payloadOff > int64(len(head)) {
		return nil, fmt.Errorf("open replica %s: %d bytes end in its header", rep.DestKey, rep.Size)
	}
	if o.payload, err = crypto.NewPayload(fileKey, head[len(hdr):o.payloadOff], rep.Size-o.payloadOff); err != nil {
		return nil, fmt.Errorf("open replica %s: %w", rep.DestKey, err)
	}
	o.streamSize = o.payload.PlainSize()
	src := &ends{ctx: ctx, b: b, rep: rep, head: head, tail: tail, fetched: fetched}
	// The final chunk, opened with the last-chunk flag, proves the size:
	// a replica cut on a chunk boundary fails here.
	final := make([]byte, o.payload.SealedSize()-(o.payload.Chunks()-1)*crypto.EncChunkSize)
	if _, err := src.ReadAt(final, rep.Size-int64(len(final))); err != nil && err != io.EOF {
		return nil, fmt.Errorf("open replica %s: %w", rep.DestKey, err)
	}
	if _, err := o.payload.OpenChunks(nil, final, o.payload.Chunks()-1); err != nil {
		return nil, fmt.Errorf("open replica %s: %w", rep.DestKey, err)
	}
	ra := o.payload.ReaderAt(io.NewSectionReader(src, o.payloadOff, rep.Size-o.payloadOff))
	if o.trailer, err = crypto.ReadTrailerAt(ra, o.streamSize); err != nil {
		return nil, fmt.Errorf("open replica %s: %w", rep.DestKey, err)
	}
	if o.trailer.Size != rep.Meta.Size {
		return nil, fmt.Errorf("open replica %s: TRAILER says %d bytes, META %d", rep.DestKey, o.trailer.Size, rep.Meta.Size)
	}
	// Anyone may encrypt to the public recipient, so age alone does not
	// tell that these are the bytes the catalog describes: a replica
	// replaced since (by another object's, or an older version of its
	// own) authenticates just as well. Its META, under the same file key
	// as every chunk served from it, must be the catalog's.
	m, err := crypto.ReadMetaAt(ra, o.streamSize)
	if err != nil {
		return nil, fmt.Errorf("open replica %s: %w", rep.DestKey, err)
	}
	if !sameMeta(m, rep.Meta) {
		return nil, fmt.Errorf("open replica %s: its META (key %q, %d bytes, %s) is not the one the catalog read (key %q, %d bytes, %s): the replica was replaced since", rep.DestKey,
			m.Key, m.Size, m.MTime.UTC().Format(time.RFC3339Nano), rep.Meta.Key, rep.Meta.Size, rep.Meta.MTime.UTC().Format(time.RFC3339Nano))
	}
	return o, nil
}

// sameMeta reports whether two METAs describe the same source object
// version.
func sameMeta(a, b crypto.Meta) bool {
	return a.Key == b.Key && a.Size == b.Size && a.MTime.Equal(b.MTime) && a.ETag == b.ETag &&
		a.VersionID == b.VersionID && a.ContentType == b.ContentType && maps.Equal(a.Metadata, b.Metadata)
}

// fetch opens n replica bytes from off for one GET: from memory when the
// replica was opened whole, else by a GET of just those bytes.
func (o *opened) fetch(b backends.Bucket, rep *recovery.Replica) fetchFunc {
	return func(ctx context.Context, off, n int64) (io.ReadCloser, error) {
		if off+n <= int64(len(o.whole)) {
			return io.NopCloser(bytes.NewReader(o.whole[off : off+n])), nil
		}
		return getReplica(ctx, b, rep, off, n)
	}
}

// openedCache keeps the most recently used opened replicas.
type openedCache struct {
	mu    sync.Mutex
	order *list.List // of *cached, most recent first
	byKey map[string]*list.Element
}

type cached struct {
	key string
	o   *opened
}

func newOpenedCache() *openedCache {
	return &openedCache{order: list.New(), byKey: map[string]*list.Element{}}
}

// cacheKey names one replica version as the catalog saw it.
func cacheKey(rep *recovery.Replica) string {
	return rep.DestKey + "\x00" + rep.VersionID + "\x00" + rep.ETag
}

func (c *openedCache) get(key string) (*opened, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byKey[key]; ok {
		c.order.MoveToFront(el)
		return el.Value.(*cached).o, true
	}
	return nil, false
}

func (c *openedCache) put(key string, o *opened) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byKey[key]; ok {
		el.Value.(*cached).o = o
		c.order.MoveToFront(el)
		return
	}
	c.byKey[key] = c.order.PushFront(&cached{key: key, o: o})
	for c.order.Len() > openedCacheSize {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.byKey, last.Value.(*cached).key)
	}
}
