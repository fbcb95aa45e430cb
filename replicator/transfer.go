package replicator

import (
	"context"
	"errors"
	"fmt"
	"io"

	"golang.org/x/time/rate"

	"github.com/voyageur-ca/voyageur/crypto"
)

// Transfer tunes the copy engine.
type Transfer struct {
	// PartSize is the multipart part size and the single-PUT threshold:
	// objects larger than it are copied in parts. It grows for objects
	// that would need more than MaxParts parts.
	PartSize int64
	// Concurrency bounds the requests moving object bytes at once (single
	// PUTs and part uploads together).
	Concurrency int
	// Memory bounds the bytes buffered in flight; it must be at least
	// PartSize.
	Memory int64
	// Bandwidth limits the bytes per second sent to the destination, as
	// they go on the wire (after compression and encryption): the link to
	// the replica is the constrained, paid one, and compressed bytes are
	// what it carries. Restore limits its reads of the replica with it.
	// 0 = no limit.
	Bandwidth int64
	// ReadBandwidth limits the bytes per second read from the source; 0 =
	// no limit.
	ReadBandwidth int64
}

// Normalize fills in the defaults (part size 8 MiB, concurrency 16, memory
// the larger of 64 MiB and what the part size needs) and checks the
// settings. An error starts with the name of the setting it is about, as
// the configuration spells it (part_size, concurrency, memory, bandwidth,
// read_bandwidth).
func (t *Transfer) Normalize(encrypted bool) error {
	if t.PartSize == 0 {
		t.PartSize = 8 << 20
	}
	if t.PartSize < MinPartSize || t.PartSize > MaxPartSize {
		return fmt.Errorf("part_size: %d bytes is outside 5MiB..5GiB", t.PartSize)
	}
	if t.Concurrency == 0 {
		t.Concurrency = 16
	}
	if t.Concurrency < 1 || t.Concurrency > 256 {
		return fmt.Errorf("concurrency: %d is outside 1..256", t.Concurrency)
	}
	if t.Memory == 0 {
		t.Memory = max(64<<20, MinMemory(t.PartSize, t.PartSize, encrypted))
	}
	if need := MinMemory(t.PartSize, t.PartSize, encrypted); t.Memory < need {
		return fmt.Errorf("memory: %d bytes is less than the %d this part_size needs", t.Memory, need)
	}
	if t.Bandwidth < 0 {
		return errors.New("bandwidth: negative")
	}
	if t.ReadBandwidth < 0 {
		return errors.New("read_bandwidth: negative")
	}
	return nil
}

// MinMemory is the smallest memory budget that lets an object read in
// segments of segSize bytes (the part size, grown for huge objects) through
// parts of partSize bytes. Encrypted, the compressed bytes of the part being
// gathered and the next segment with its compression must fit together.
func MinMemory(partSize, segSize int64, encrypted bool) int64 {
	if !encrypted {
		return segSize
	}
	return partSize + segSize + 2*crypto.CompressedBound(segSize)
}

// PartSizeFor grows the part size so that an object needs at most MaxParts
// parts, rounding up to a whole MiB.
func PartSizeFor(size, base int64) int64 {
	ps := base
	if need := (size + MaxParts - 1) / MaxParts; need > ps {
		ps = (need + (1<<20 - 1)) &^ (1<<20 - 1)
	}
	return min(ps, MaxPartSize)
}

// NewLimiter returns a limiter of bytesPerSecond, nil for no limit.
func NewLimiter(bytesPerSecond int64) *rate.Limiter {
	if bytesPerSecond <= 0 {
		return nil
	}
	burst := int(min(bytesPerSecond, 256<<10))
	return rate.NewLimiter(rate.Limit(bytesPerSecond), burst)
}

// PacedReader returns r paced by lim (r itself when lim is nil): a read
// returns once lim allowed the bytes it read.
func PacedReader(ctx context.Context, r io.Reader, lim *rate.Limiter) io.Reader {
	if lim == nil {
		return r
	}
	return &pacedReader{ctx: ctx, r: r, lim: lim}
}

type pacedReader struct {
	ctx context.Context
	r   io.Reader
	lim *rate.Limiter
}

func (l *pacedReader) Read(p []byte) (int, error) {
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
