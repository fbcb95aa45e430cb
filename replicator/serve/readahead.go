package serve

import (
	"io"
	"sync"
)

const (
	// readAheadBlock is the unit a read-ahead reads and hands over.
	readAheadBlock = 256 << 10
	// largeBlock is the unit of a large read (largeRead bytes or more):
	// every block handed over wakes the other side and costs system
	// calls, which on a GET of gigabytes weigh as much as copying (a
	// tenth less CPU with these, BENCHMARKS.md). Smaller reads keep
	// smaller blocks, so that a ranged read fetches no more ahead.
	largeBlock = 1 << 20
	largeRead  = 8 << 20
	// readAheadDepth is how many read blocks may wait for the consumer.
	// With the one being read and the one being consumed, a read-ahead
	// holds at most readAheadDepth+2 blocks: 1 MiB, 4 MiB for a large
	// read. A GET of an encrypted replica runs two (replica bytes,
	// plaintext), a plain one one; the decoder's one frame
	// (crypto.FrameSize) comes on top.
	readAheadDepth = 2
)

// blockFor is the read-ahead block for a read of n plaintext bytes.
func blockFor(n int64) int {
	if n >= largeRead {
		return largeBlock
	}
	return readAheadBlock
}

// readAhead reads r in a goroutine, ahead of its consumer, so that the
// replica is fetched while earlier bytes are decrypted and sent: without
// it each stage waits for the others. It never reads r beyond what r
// holds, so a ranged GET fetches no more than before. Data is handed over
// in order, then r's error (io.EOF at the end), exactly as r returned it.
type readAhead struct {
	filled chan raBlock // closed when the reading goroutine ends
	free   chan []byte
	stop   chan struct{}
	cancel func() // ends a read of r in progress
	once   sync.Once
	cur    []byte // the unread part of the block being consumed
	held   []byte // that block's buffer, returned to free once consumed
	err    error
}

type raBlock struct {
	buf  []byte // the whole buffer, for reuse
	data []byte
	err  error
}

var _ io.ReadCloser = (*readAhead)(nil)

// newReadAhead starts reading r. c, when not nil, is closed by the reading
// goroutine when it ends: r and c are never used by two goroutines at
// once (a retrying body is not safe for that). cancel, called by Close,
// must make a read of r in progress return: it cancels the context r
// reads under. r is read block bytes at a time; total, when positive, is
// how much r holds at most: a smaller read gets smaller blocks.
func newReadAhead(r io.Reader, c io.Closer, cancel func(), total int64, block int) *readAhead {
	size := block
	if total > 0 && total < int64(size) {
		size = int(total)
	}
	ra := &readAhead{
		filled: make(chan raBlock, readAheadDepth),
		free:   make(chan []byte, readAheadDepth+2),
		stop:   make(chan struct{}),
		cancel: cancel,
	}
	go ra.run(r, c, size)
	return ra
}

func (ra *readAhead) run(r io.Reader, c io.Closer, size int) {
	defer close(ra.filled)
	if c != nil {
		defer c.Close()
	}
	allocated := 0
	for {
		var buf []byte
		select {
		case buf = <-ra.free:
		default:
			if allocated < readAheadDepth+2 {
				buf, allocated = make([]byte, size), allocated+1
			} else {
				select {
				case buf = <-ra.free:
				case <-ra.stop:
					return
				}
			}
		}
		// Not io.ReadFull: r's own error, an io.ErrUnexpectedEOF among
		// them, must reach the consumer unchanged.
		n, err := 0, error(nil)
		for n < len(buf) && err == nil {
			var k int
			k, err = r.Read(buf[n:])
			n += k
		}
		select {
		case ra.filled <- raBlock{buf: buf, data: buf[:n], err: err}:
		case <-ra.stop:
			return
		}
		if err != nil {
			return
		}
	}
}

func (ra *readAhead) Read(p []byte) (int, error) {
	if err := ra.fill(); err != nil {
		return 0, err
	}
	n := copy(p, ra.cur)
	ra.cur = ra.cur[n:]
	return n, nil
}

// next returns the data read and not yet consumed, up to a block, without
// copying it: valid until the next call. At the end it returns r's error.
func (ra *readAhead) next() ([]byte, error) {
	if err := ra.fill(); err != nil {
		return nil, err
	}
	b := ra.cur
	ra.cur = nil
	return b, nil
}

// fill makes cur hold data, or returns r's error once all data is
// consumed.
func (ra *readAhead) fill() error {
	for len(ra.cur) == 0 {
		if ra.err != nil {
			return ra.err
		}
		if ra.held != nil {
			ra.free <- ra.held // never blocks: free holds every buffer
			ra.held = nil
		}
		b := <-ra.filled // not closed before the block with an error
		ra.cur, ra.held, ra.err = b.data, b.buf, b.err
	}
	return nil
}

// Close stops the reading goroutine and waits for it to end (and close
// c).
func (ra *readAhead) Close() error {
	ra.once.Do(func() {
		close(ra.stop)
		ra.cancel()
	})
	for range ra.filled {
	}
	ra.cur, ra.err = nil, io.ErrClosedPipe
	return nil
}
