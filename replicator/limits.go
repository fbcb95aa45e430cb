package replicator

import (
	"context"
	"io"
	"sync"

	"golang.org/x/time/rate"
)

// bufferPool recycles part buffers of the job's standard part size, so a
// long run does not allocate a fresh buffer per part. Other sizes (grown
// parts of huge objects, small objects) are allocated as needed.
type bufferPool struct {
	size int64
	pool sync.Pool
}

func newBufferPool(size int64) *bufferPool {
	return &bufferPool{size: size}
}

func (p *bufferPool) get(n int64) []byte {
	// Only buffers near the part size come from the pool: when it is empty
	// it allocates a whole part, which a small object would pay for by
	// clearing megabytes to use kilobytes.
	if n > p.size/2 && n <= p.size {
		if b, ok := p.pool.Get().(*[]byte); ok {
			return (*b)[:n]
		}
		return make([]byte, n, p.size)
	}
	return make([]byte, n)
}

func (p *bufferPool) put(b []byte) {
	if int64(cap(b)) == p.size {
		p.pool.Put(&b)
	}
}

// limitedReader throttles reads to the run's bandwidth limiter.
type limitedReader struct {
	ctx context.Context
	r   io.Reader
	lim *rate.Limiter
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if burst := l.lim.Burst(); len(p) > burst {
		p = p[:burst]
	}
	n, err := l.r.Read(p)
	if n > 0 {
		if werr := l.lim.WaitN(l.ctx, n); werr != nil {
			return n, werr
		}
	}
	return n, err
}

// newLimiter returns nil for no limit.
func newLimiter(bytesPerSecond int64) *rate.Limiter {
	if bytesPerSecond <= 0 {
		return nil
	}
	burst := int(min(bytesPerSecond, 256<<10))
	return rate.NewLimiter(rate.Limit(bytesPerSecond), burst)
}
