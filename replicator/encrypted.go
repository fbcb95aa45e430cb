package replicator

import (
	"context"
	"fmt"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/voyageur-ca/voyageur/backends"
	"github.com/voyageur-ca/voyageur/crypto"
	"github.com/voyageur-ca/voyageur/journal"
)

// segment is one compressed source segment waiting for its part.
type segment struct {
	plain, compressed []byte
	reserved          int64 // bytes of the memory budget it holds
}

// uploadEncrypted sends the parts of an encrypted object after the ones cp
// already holds, and returns the number of parts in all.
//
// The source is read in segments of segSize bytes, concurrently, and each is
// compressed on its own. Segments are then gathered in order into parts of
// at least segSize compressed bytes (S3 refuses parts under 5 MiB but the
// last, and compressible data shrinks), each part is sealed
// (in order: the STREAM counter and the SHA-256 chain through the parts) and
// uploaded concurrently. Since compression is deterministic, the parts and
// their bytes are a pure function of the writer state and the source: a
// resumed run re-produces exactly the parts a killed one sent.
func (r *run) uploadEncrypted(ctx context.Context, c journal.Change, info backends.ObjectInfo, cp *journal.Checkpoint, w *crypto.Writer, segSize int64) (int32, error) {
	// The compressed bytes of the part being gathered (under one segment
	// plus one compressed segment) and the next segment with its
	// compression must fit in the budget together, or the pipeline could
	// wait forever; pipelines are admitted so that all of theirs fit.
	need := MinMemory(segSize, segSize, true)
	if need > r.job.Transfer.Memory {
		return 0, fmt.Errorf("encrypt %s: parts of %d bytes need transfer.memory of at least %d bytes", c.Key, segSize, need)
	}
	if err := r.pipelines.Acquire(ctx, need); err != nil {
		return 0, err
	}
	defer r.pipelines.Release(need)
	start, starts := w.Start(), []crypto.Boundary(nil)
	for _, p := range cp.Parts {
		starts = append(starts, start)
		start = crypto.Boundary{Plain: p.End, Chunk: p.Chunk, Hash: p.Hash}
	}
	next, from := int32(len(cp.Parts))+1, start.Plain
	nseg := int((info.Size - from + segSize - 1) / segSize)
	results := make([]chan segment, nseg)
	for i := range results {
		results[i] = make(chan segment, 1)
	}
	// Whatever a failure leaves in flight goes back to the budget.
	defer func() {
		for _, ch := range results {
			select {
			case s := <-ch:
				r.mem.Release(s.reserved)
				r.bufs.put(s.plain)
			default:
			}
		}
	}()

	var mu sync.Mutex // guards cp while parts finish concurrently
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		for i := range nseg {
			off := from + int64(i)*segSize
			length := min(segSize, info.Size-off)
			need := length + crypto.SealedSizeBound(length)
			if err := r.mem.Acquire(gctx, need); err != nil {
				return err
			}
			g.Go(func() error {
				s, err := r.readSegment(gctx, info, w, off, length)
				if err != nil {
					r.mem.Release(need)
					return err
				}
				s.reserved = need
				results[i] <- s
				return nil
			})
		}
		return nil
	})
	g.Go(func() error {
		part, err := w.NewPart(start)
		if err != nil {
			return err
		}
		var held int64 // budget held by the compressed bytes of part
		defer func() { r.mem.Release(held) }()
		for i := range nseg {
			var s segment
			select {
			case s = <-results[i]:
			case <-gctx.Done():
				return gctx.Err()
			}
			keep := int64(len(s.compressed))
			r.mem.Release(s.reserved - keep)
			held += keep
			err := part.Add(s.plain, s.compressed)
			r.bufs.put(s.plain)
			if err != nil {
				return fmt.Errorf("encrypt %s: %w", c.Key, err)
			}
			if p := r.opts.Progress; p != nil {
				p.BytesDone.Add(int64(len(s.plain)))
			}
			last := i == nseg-1
			// Parts close at segSize compressed bytes: segSize is in the
			// checkpoint, so a resumed run closes them at the same places.
			if !last && part.Compressed() < segSize {
				continue
			}
			// The part is sealed as it is sent: in flight it weighs its
			// compressed bytes only, which the budget already holds.
			out, end, err := part.Reader(last, starts)
			if err != nil {
				return fmt.Errorf("encrypt %s: %w", c.Key, err)
			}
			starts = append(starts, start)
			n, reserved := next, held
			next, start, held = next+1, end, 0
			// The slot is taken here, in part order, so that parts go out
			// in order as far as concurrency allows: the checkpoint's
			// leading run, all a resume keeps, is then as long as it can be.
			free, err := r.slot(gctx, out.Size())
			if err != nil {
				r.mem.Release(reserved)
				return err
			}
			g.Go(func() error {
				defer r.mem.Release(reserved)
				defer free()
				etag, err := r.job.Dest.UploadPart(gctx, cp.DestKey, cp.UploadID, n, out, out.Size(), backends.PartOptions{Locked: cp.Locked})
				if err != nil {
					return err
				}
				r.bytesWritten.Add(out.Size())
				mu.Lock()
				defer mu.Unlock()
				cp.Parts = insertPart(cp.Parts, journal.PartState{
					Number: n, ETag: etag, Size: out.Size(), End: end.Plain, Chunk: end.Chunk, Hash: end.Hash,
				})
				return r.jb.SaveCheckpoint(c.Key, *cp)
			})
			if !last {
				if part, err = w.NewPart(end); err != nil {
					return err
				}
			}
		}
		return nil
	})
	err := g.Wait()
	return next - 1, err
}

// MinMemory is the smallest memory budget that lets an object read in
// segments of segSize bytes (the part size, grown for huge objects) through
// parts of partSize bytes. Encrypted, the compressed bytes of the part being
// gathered and the next segment with its compression must fit together.
func MinMemory(partSize, segSize int64, encrypted bool) int64 {
	if !encrypted {
		return segSize
	}
	return partSize + segSize + 2*crypto.SealedSizeBound(segSize)
}

// readSegment reads and compresses one source segment. It holds its
// memory, not a transfer slot: those are for the destination.
func (r *run) readSegment(ctx context.Context, info backends.ObjectInfo, w *crypto.Writer, off, length int64) (segment, error) {
	buf := r.bufs.get(length)
	if _, err := r.readSource(ctx, info, off, buf); err != nil {
		r.bufs.put(buf)
		return segment{}, err
	}
	compressed, err := w.Compress(buf)
	if err != nil {
		r.bufs.put(buf)
		return segment{}, fmt.Errorf("compress %s at %d: %w", info.Key, off, err)
	}
	return segment{plain: buf, compressed: compressed}, nil
}
