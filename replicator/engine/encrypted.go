package engine

import (
	"context"
	"fmt"

	"github.com/voyageur-ca/voyageur/backends"
	"github.com/voyageur-ca/voyageur/crypto"
	"github.com/voyageur-ca/voyageur/journal"
	"github.com/voyageur-ca/voyageur/replicator"
	"github.com/voyageur-ca/voyageur/replicator/multipart"
)

// segment is one source segment read and compressed, waiting to be
// gathered into its part.
type segment struct {
	plain, compressed []byte
}

// sealedSource is the multipart.Source of an encrypted object: the source
// is read in segments of segSize bytes, concurrently, and each is
// compressed on its own. Segments are gathered in order into parts of at
// least segSize compressed bytes (S3 refuses parts under 5 MiB but the
// last, and compressible data shrinks), each sealed as it is sent (in
// order: the STREAM counter and the SHA-256 chain through the parts).
// Compression is deterministic, so the parts and their bytes are a pure
// function of the writer state and the source: a resumed run re-produces
// exactly the parts a killed one sent.
type sealedSource struct {
	r       *run
	info    backends.ObjectInfo
	w       *crypto.Writer
	from    int64 // source offset of the first segment
	segSize int64
	nseg    int

	// Gather's state, touched by Gather only.
	part   *crypto.Part
	held   [][]byte // compressed buffers of part
	start  crypto.Boundary
	starts []crypto.Boundary // boundaries of the parts before part
}

var _ multipart.Source[segment] = (*sealedSource)(nil)

func (s *sealedSource) Reads() int { return s.nseg }

func (s *sealedSource) bounds(i int) (off, length int64) {
	off = s.from + int64(i)*s.segSize
	return off, min(s.segSize, s.info.Size-off)
}

// Need is a segment's bytes and room for their worst-case compression.
func (s *sealedSource) Need(i int) []int64 {
	_, length := s.bounds(i)
	return []int64{length, crypto.CompressedBound(length)}
}

// Read reads and compresses one segment. It holds memory, never a
// transfer slot: those are for the destination.
func (s *sealedSource) Read(ctx context.Context, i int, bufs [][]byte) (segment, error) {
	off, _ := s.bounds(i)
	plain, scratch := bufs[0], bufs[1]
	seg, err := s.read(ctx, off, plain, scratch)
	if err != nil {
		s.r.limits.Free(plain)
		s.r.limits.Free(scratch)
	}
	return seg, err
}

func (s *sealedSource) read(ctx context.Context, off int64, plain, scratch []byte) (segment, error) {
	if _, err := s.r.readSource(ctx, s.info, off, plain); err != nil {
		return segment{}, err
	}
	compressed, err := s.w.CompressTo(scratch[:0], plain)
	if err != nil {
		return segment{}, fmt.Errorf("compress %s at %d: %w", s.info.Key, off, err)
	}
	return segment{plain: plain, compressed: compressed}, nil
}

func (s *sealedSource) Drop(seg segment) {
	s.r.limits.Free(seg.plain)
	s.r.limits.Free(seg.compressed)
}

// Gather adds segment i to the part being gathered and returns the part
// once it holds segSize compressed bytes (segSize is in the checkpoint, so
// a resumed run closes parts at the same places) or the object ends.
func (s *sealedSource) Gather(i int, seg segment) ([]multipart.Part, error) {
	r := s.r
	if s.part == nil {
		part, err := s.w.NewPart(s.start)
		if err != nil {
			r.limits.Free(seg.plain)
			r.limits.Free(seg.compressed)
			return nil, err
		}
		s.part = part
	}
	compressed := seg.compressed
	if len(compressed) < cap(compressed)/2 {
		// Compressible data: keep the bytes, not the room a worst case
		// needed, while the part is gathered and sent.
		compressed = r.limits.Shrink(compressed)
	}
	err := s.part.Add(seg.plain, compressed)
	r.limits.Free(seg.plain)
	s.held = append(s.held, compressed)
	if err != nil {
		return nil, fmt.Errorf("encrypt %s: %w", s.info.Key, err)
	}
	r.count.BytesDone.Add(int64(len(seg.plain)))
	last := i == s.nseg-1
	if !last && s.part.Compressed() < s.segSize {
		return nil, nil
	}
	out, end, err := s.part.Reader(last, s.starts)
	if err != nil {
		return nil, fmt.Errorf("encrypt %s: %w", s.info.Key, err)
	}
	held := s.held
	s.starts = append(s.starts, s.start)
	s.start, s.part, s.held = end, nil, nil
	return []multipart.Part{{
		Body: out, Size: out.Size(),
		State: journal.PartState{End: end.Plain, Chunk: end.Chunk, Hash: end.Hash},
		Done: func() {
			for _, b := range held {
				r.limits.Free(b)
			}
		},
	}}, nil
}

// uploadEncrypted sends the parts of an encrypted object after the ones cp
// already holds, and returns the number of parts in all.
func (r *run) uploadEncrypted(ctx context.Context, c journal.Change, info backends.ObjectInfo, cp *journal.Checkpoint, w *crypto.Writer, segSize int64) (int32, error) {
	// The part being gathered and the next segment with its compression
	// must fit in the budget together, or the pipeline could wait forever;
	// pipelines are admitted so that all of theirs fit.
	need := replicator.MinMemory(segSize, segSize, true)
	if need > r.job.Transfer.Memory {
		return 0, fmt.Errorf("encrypt %s: parts of %d bytes need transfer.memory of at least %d bytes", c.Key, segSize, need)
	}
	if err := r.pipelines.Acquire(ctx, need); err != nil {
		return 0, err
	}
	defer r.pipelines.Release(need)
	src := &sealedSource{r: r, info: info, w: w, segSize: segSize, start: w.Start()}
	for _, p := range cp.Parts {
		src.starts = append(src.starts, src.start)
		src.start = crypto.Boundary{Plain: p.End, Chunk: p.Chunk, Hash: p.Hash}
	}
	src.from = src.start.Plain
	src.nseg = int((info.Size - src.from + segSize - 1) / segSize)
	first := int32(len(cp.Parts)) + 1
	sent, err := multipart.Send(ctx, r.upload(c, cp, first), src)
	if src.part != nil {
		for _, b := range src.held {
			r.limits.Free(b)
		}
	}
	return first - 1 + int32(len(sent)), err
}

// upload is the multipart.Upload of cp, checkpointing every part the
// destination acknowledged.
func (r *run) upload(c journal.Change, cp *journal.Checkpoint, first int32) multipart.Upload {
	return multipart.Upload{
		Bucket: r.job.Dest, Key: cp.DestKey, ID: cp.UploadID,
		Options: backends.PartOptions{Locked: cp.Locked},
		Budget:  r.limits, Window: r.job.Transfer.Concurrency, First: first,
		Progress: func(n int64) { r.count.BytesWritten.Add(n) },
		Saved: func(p journal.PartState) error {
			cp.Parts = insertPart(cp.Parts, p)
			return r.jb.SaveCheckpoint(c.Key, *cp)
		},
	}
}
