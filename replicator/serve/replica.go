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
	// encChunk is a sealed STREAM chunk: 64 KiB and the Poly1305 tag.
	encChunk = crypto.ChunkSize + 16
	// headSize is the start of a replica that opening it reads: the age
	// header (voyageur writes at most 64 KiB), the payload nonce and the
	// first two chunks, which hold the META (at most 64 KiB).
	headSize = keptHead + 2*encChunk
	// keptHead is what of it stays cached: the header and nonce.
	keptHead = 64<<10 + 16
	// tailSize is the end kept: the final chunk, which age authenticates
	// when a replica is opened, and the one before, which with it holds
	// the TRAILER of up to about 4000 parts.
	tailSize = 2 * encChunk
	// openedCacheSize bounds the replicas kept open (at most head, tail
	// and the part index each: about 200 KiB).
	openedCacheSize = 128
)

// opened is what a GET of an encrypted replica needs beyond the bytes it
// reads: the unwrapped file key, the ends of the replica and the TRAILER.
// Keeping it spares every GET the header, final chunk and TRAILER reads.
type opened struct {
	fileKey    []byte
	size       int64 // replica bytes
	head, tail []byte
	payloadOff int64 // where chunk 0 starts: header and nonce
	streamSize int64 // the zstd stream (age plaintext)
	trailer    crypto.Trailer
}

// source is an io.ReaderAt over one replica version for one request: its
// head and tail from memory, the rest from one streaming ranged GET that
// reads on to limit, reopened only when a read is not where the last ended.
// age.DecryptReaderAt reads one chunk per call, so a GET per call would
// make thousands of requests for one large object.
type source struct {
	ctx     context.Context
	b       backends.Bucket
	rep     *recovery.Replica
	head    []byte
	tail    []byte
	limit   int64
	block   int // of the read-ahead
	fetched *atomic.Int64

	mu   sync.Mutex
	body *readAhead // the open GET, read ahead of the decryption
	pos  int64
}

func (s *source) ReadAt(p []byte, off int64) (int, error) {
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
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.body == nil || s.pos != off {
		s.close()
		n := max(s.limit, end) - off
		ctx, cancel := context.WithCancel(s.ctx)
		rc, err := getReplica(ctx, s.b, s.rep, off, n)
		if err != nil {
			cancel()
			return 0, err
		}
		s.body, s.pos = newReadAhead(&countingReader{r: rc, n: s.fetched}, rc, cancel, n, s.block), off
	}
	n, err := io.ReadFull(s.body, p)
	s.pos += int64(n)
	if err != nil {
		s.close()
		return n, fmt.Errorf("read replica %s at %d: %w", s.rep.DestKey, off, err)
	}
	return n, nil
}

func (s *source) close() {
	if s.body != nil {
		s.body.Close()
		s.body = nil
	}
}

// Close ends the streaming GET, if one is open.
func (s *source) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.close()
	return nil
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
// file key once), the final chunk (authenticated by age) and the TRAILER.
func open(ctx context.Context, b backends.Bucket, rep *recovery.Replica, ids []age.Identity, fetched *atomic.Int64) (*opened, error) {
	o := &opened{size: rep.Size}
	if rep.Size <= headSize+tailSize {
		all, err := readFull(ctx, b, rep, 0, rep.Size, fetched)
		if err != nil {
			return nil, err
		}
		o.head = all
	} else {
		var err error
		if o.head, err = readFull(ctx, b, rep, 0, headSize, fetched); err != nil {
			return nil, err
		}
		if o.tail, err = readFull(ctx, b, rep, rep.Size-tailSize, tailSize, fetched); err != nil {
			return nil, err
		}
	}
	hdr, err := age.ExtractHeader(bytes.NewReader(o.head))
	if err != nil {
		return nil, fmt.Errorf("open replica %s: %w", rep.DestKey, err)
	}
	if o.fileKey, err = age.DecryptHeader(hdr, ids...); err != nil {
		return nil, fmt.Errorf("open replica %s: %w", rep.DestKey, err)
	}
	o.payloadOff = int64(len(hdr)) + 16
	ra, streamSize, src, err := o.stream(ctx, b, rep, rep.Size, readAheadBlock, fetched)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	o.streamSize = streamSize
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
	if o.tail != nil {
		o.head = bytes.Clone(o.head[:keptHead])
	}
	return o, nil
}

// sameMeta reports whether two METAs describe the same source object
// version.
func sameMeta(a, b crypto.Meta) bool {
	return a.Key == b.Key && a.Size == b.Size && a.MTime.Equal(b.MTime) && a.ETag == b.ETag &&
		a.VersionID == b.VersionID && a.ContentType == b.ContentType && maps.Equal(a.Metadata, b.Metadata)
}

// stream opens random access to the replica's zstd stream for one request
// whose streaming reads go no further than limit (a replica offset), read
// ahead block bytes at a time. The caller closes the returned closer when
// the request is done.
func (o *opened) stream(ctx context.Context, b backends.Bucket, rep *recovery.Replica, limit int64, block int, fetched *atomic.Int64) (io.ReaderAt, int64, io.Closer, error) {
	src := &source{ctx: ctx, b: b, rep: rep, head: o.head, tail: o.tail, limit: limit, block: block, fetched: fetched}
	ra, size, err := age.DecryptReaderAt(src, rep.Size, age.NewInjectedFileKeyIdentity(o.fileKey))
	if err != nil {
		src.close()
		return nil, 0, nil, fmt.Errorf("open replica %s: %w", rep.DestKey, err)
	}
	return ra, size, src, nil
}

// replicaEnd is the replica offset just after the chunk holding stream
// offset end-1: how far the ciphertext of a stream section reaches.
func (o *opened) replicaEnd(end int64) int64 {
	chunks := (end + crypto.ChunkSize - 1) / crypto.ChunkSize
	return min(o.size, o.payloadOff+chunks*encChunk)
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
