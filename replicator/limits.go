package replicator

import (
	"context"
	"io"

	"github.com/voyageur-ca/voyageur/crypto"
	"github.com/voyageur-ca/voyageur/replicator/multipart"

	"golang.org/x/time/rate"
)

// newLimits returns the run's memory budget, transfer slots and wire
// limit. The buffer classes are the job's part size and, encrypted, its
// compressed bound: the sizes a long run allocates over and over.
func newLimits(job Job) *multipart.Limits {
	t := job.Transfer
	classes := []int64{t.PartSize}
	if job.Encryption != nil {
		classes = append(classes, crypto.CompressedBound(t.PartSize))
	}
	return multipart.NewLimits(t.Memory, t.Concurrency, newLimiter(t.Bandwidth), classes...)
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
