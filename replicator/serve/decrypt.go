package serve

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/voyageur-ca/voyageur/crypto"
)

const (
	// largeSegment is the STREAM chunks of a segment of a large read
	// (largeRead bytes or more), the unit in which a GET's replica bytes
	// are read and then decrypted by a goroutine of their own: 1 MiB of
	// plaintext, large enough that handing segments over costs nothing
	// next to decrypting them.
	largeSegment = 16
	// smallSegment is that of a smaller read, 256 KiB: a ranged read
	// fetches at most the window's worth past what it needs.
	smallSegment = 4
	// segmentWindow bounds the segments of one GET between the replica
	// read and the consumer: being read, being decrypted, or decrypted and
	// waiting. Each holds its sealed bytes and their plaintext, so a GET
	// holds at most 2 × 4 × 1 MiB of them. Two would keep both cores busy
	// decrypting; four also cover a consumer that falls behind for a
	// moment.
	segmentWindow = 4
)

// segmentFor is the segment, in chunks, for a read of n plaintext bytes.
func segmentFor(n int64) int64 {
	if n >= largeRead {
		return largeSegment
	}
	return smallSegment
}

// fetchFunc opens n replica bytes from off: a GET, or memory for a
// replica opened whole.
type fetchFunc func(ctx context.Context, off, n int64) (io.ReadCloser, error)

// decrypter is the plaintext of consecutive STREAM chunks of a replica,
// read with one streaming GET by one goroutine and decrypted in parallel,
// a segment per goroutine, at most segmentWindow segments ahead of the
// consumer: decryption, most of serve's CPU, spreads over the cores while
// the replica is still read as one request (a GET per segment would cost
// MinIO, on the same cores, a request's work each time). Plaintext is
// handed over in order and only once its segment authenticated; the
// first error is final, and nothing after it is handed over.
type decrypter struct {
	segs   chan *segment // in order; closed when the reading goroutine ends
	free   chan *segment // consumed segments, for reuse
	stop   chan struct{}
	cancel context.CancelFunc
	once   sync.Once
	cur    *segment // being consumed
	rest   []byte   // its plaintext not yet consumed
	err    error
}

// segment is sealed chunks from chunk first on and, once done is closed,
// their plaintext or the error opening them.
type segment struct {
	sealed, plain []byte
	first         int64
	err           error
	done          chan struct{}
}

var _ io.ReadCloser = (*decrypter)(nil)

// newDecrypter opens the chunks [first, end) of the payload p of replica
// name, whose chunk 0 is at replica offset payloadOff, with one fetch, and
// starts reading and decrypting them, segChunks chunks per segment. Close
// ends it.
func newDecrypter(ctx context.Context, name string, p *crypto.Payload, payloadOff, first, end, segChunks int64, fetch fetchFunc, fetched *atomic.Int64) (*decrypter, error) {
	sealedEnd := min(end*crypto.EncChunkSize, p.SealedSize())
	off := first * crypto.EncChunkSize
	ctx, cancel := context.WithCancel(ctx)
	rc, err := fetch(ctx, payloadOff+off, sealedEnd-off)
	if err != nil {
		cancel()
		return nil, err
	}
	d := &decrypter{
		segs:   make(chan *segment, segmentWindow),
		free:   make(chan *segment, segmentWindow),
		stop:   make(chan struct{}),
		cancel: cancel,
	}
	go d.run(rc, name, p, first, end, segChunks, sealedEnd, fetched)
	return d, nil
}

func (d *decrypter) run(rc io.ReadCloser, name string, p *crypto.Payload, first, end, segChunks, sealedEnd int64, fetched *atomic.Int64) {
	var wg sync.WaitGroup
	defer func() {
		// The segments handed over must be complete before the
		// consumer learns there are no more, and rc is closed here, by
		// the goroutine that reads it (a retrying body is not safe for
		// a Close during a Read).
		wg.Wait()
		close(d.segs)
		rc.Close()
	}()
	allocated := 0
	for c := first; c < end; c += segChunks {
		var s *segment
		select {
		case s = <-d.free:
		default:
			if allocated < segmentWindow {
				size := min(segChunks, end-first) * crypto.EncChunkSize
				s, allocated = &segment{sealed: make([]byte, size), plain: make([]byte, 0, size)}, allocated+1
			} else {
				select {
				case s = <-d.free:
				case <-d.stop:
					return
				}
			}
		}
		n := min((c+segChunks)*crypto.EncChunkSize, sealedEnd) - c*crypto.EncChunkSize
		s.first, s.err, s.done = c, nil, make(chan struct{})
		k, err := io.ReadFull(rc, s.sealed[:n])
		fetched.Add(int64(k))
		if err == io.EOF {
			err = io.ErrUnexpectedEOF // the replica ended before the span
		}
		if err != nil {
			s.err = fmt.Errorf("read replica %s from chunk %d: %w", name, c, err)
			close(s.done)
		} else {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if s.plain, s.err = p.OpenChunks(s.plain[:0], s.sealed[:n], s.first); s.err != nil {
					s.err = fmt.Errorf("decrypt replica %s: %w", name, s.err)
				}
				close(s.done)
			}()
		}
		select {
		case d.segs <- s:
		case <-d.stop:
			return
		}
		if err != nil {
			return
		}
	}
}

func (d *decrypter) Read(b []byte) (int, error) {
	for len(d.rest) == 0 {
		if d.err != nil {
			return 0, d.err
		}
		if d.cur != nil {
			d.free <- d.cur // never blocks: free holds every segment
			d.cur = nil
		}
		s, ok := <-d.segs
		if !ok {
			d.err = io.EOF
			break
		}
		<-s.done
		if s.err != nil {
			d.err = s.err
			break
		}
		d.cur, d.rest = s, s.plain
	}
	if len(d.rest) == 0 {
		return 0, d.err
	}
	n := copy(b, d.rest)
	d.rest = d.rest[n:]
	return n, nil
}

// ReadByte makes the decrypter an io.ByteReader: the range reader then
// reads frames straight from its segments, without a bufio copy.
func (d *decrypter) ReadByte() (byte, error) {
	var b [1]byte
	if _, err := d.Read(b[:]); err != nil {
		return 0, err
	}
	return b[0], nil
}

// Close stops the reading, cancels the fetch and waits for the reading
// goroutine and its decryptions to end.
func (d *decrypter) Close() error {
	d.once.Do(func() {
		close(d.stop)
		d.cancel()
	})
	for range d.segs {
	}
	d.cur, d.rest, d.err = nil, nil, io.ErrClosedPipe
	return nil
}
