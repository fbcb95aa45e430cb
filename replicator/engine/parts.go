package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/voyageur-ca/voyageur/backends"
	"github.com/voyageur-ca/voyageur/crypto"
	"github.com/voyageur-ca/voyageur/journal"
	"github.com/voyageur-ca/voyageur/replicator"
	"github.com/voyageur-ca/voyageur/replicator/multipart"
)

// multipart copies a large object with concurrent ranged reads and part
// uploads, checkpointing every finished part so that a killed run resumes.
func (r *run) multipart(ctx context.Context, c journal.Change, info backends.ObjectInfo, destKey string, cp journal.Checkpoint, hasCP bool) error {
	partSize := replicator.PartSizeFor(info.Size, r.job.Transfer.PartSize)
	nparts := int32((info.Size + partSize - 1) / partSize)
	var w *crypto.Writer
	if hasCP {
		var done bool
		var err error
		cp, hasCP, done, err = r.resume(ctx, c, info, destKey, partSize, cp)
		if err != nil || done {
			return err
		}
		if hasCP && r.job.Encryption != nil {
			w, err = crypto.ResumeWriter(cp.Writer)
			if err != nil {
				// Re-produced parts might differ from what was sealed
				// under this file key: start over with a fresh one.
				r.log.Info("cannot resume the encrypted upload, starting over", "key", c.Key, "err", err)
				r.discardUpload(ctx, c.Key, cp)
				hasCP = false
			}
		}
	}
	if !hasCP && info.Size <= r.job.Transfer.PartSize {
		// The interrupted upload was discarded and the object is small now.
		return r.single(ctx, c, info, destKey)
	}
	if !hasCP {
		var state []byte
		if enc := r.job.Encryption; enc != nil {
			var err error
			if w, err = crypto.NewWriter(enc.Options, metaOf(info)); err != nil {
				return fmt.Errorf("encrypt %s: %w", c.Key, err)
			}
			if state, err = w.State(); err != nil {
				return fmt.Errorf("encrypt %s: %w", c.Key, err)
			}
		}
		opts := r.destOptions(info)
		id, err := r.job.Dest.CreateMultipart(ctx, destKey, opts)
		if err != nil {
			return err
		}
		cp = journal.Checkpoint{
			UploadID: id, DestKey: destKey, SourceETag: info.ETag, SourceVersion: info.VersionID,
			Size: info.Size, PartSize: partSize, Created: time.Now().UTC(), Writer: state,
			Locked: opts.LockMode != "",
		}
		if err := r.jb.SaveCheckpoint(c.Key, cp); err != nil {
			r.abort(ctx, destKey, id)
			return err
		}
	}
	if w != nil {
		n, err := r.uploadEncrypted(ctx, c, info, &cp, w, partSize)
		if err != nil {
			if errors.Is(err, errSourceChanged) {
				r.discardUpload(ctx, c.Key, cp)
			}
			return err
		}
		return r.complete(ctx, c, info, cp, n)
	}
	have := make(map[int32]bool, len(cp.Parts))
	for _, p := range cp.Parts {
		have[p.Number] = true
	}
	src := &rangeSource{r: r, info: info, partSize: partSize}
	for n := int32(1); n <= nparts; n++ {
		if !have[n] {
			src.todo = append(src.todo, n)
		}
	}
	up := r.upload(c, &cp, 0)
	up.Progress = func(n int64) {
		r.count.BytesWritten.Add(n)
		r.count.BytesDone.Add(n)
	}
	if _, err := multipart.Send(ctx, up, src); err != nil {
		if errors.Is(err, errSourceChanged) {
			r.discardUpload(ctx, c.Key, cp)
		}
		return err
	}
	return r.complete(ctx, c, info, cp, nparts)
}

// rangeSource is the multipart.Source of a plain object: one ranged source
// read per part still missing, into a buffer of the budget, sent as read.
type rangeSource struct {
	r        *run
	info     backends.ObjectInfo
	partSize int64
	todo     []int32 // the parts to send, ascending
}

var _ multipart.Source[[]byte] = (*rangeSource)(nil)

func (s *rangeSource) Reads() int { return len(s.todo) }

func (s *rangeSource) bounds(i int) (off, length int64) {
	off = int64(s.todo[i]-1) * s.partSize
	return off, min(s.partSize, s.info.Size-off)
}

func (s *rangeSource) Need(i int) []int64 {
	_, length := s.bounds(i)
	return []int64{length}
}

func (s *rangeSource) Read(ctx context.Context, i int, bufs [][]byte) ([]byte, error) {
	off, _ := s.bounds(i)
	buf := bufs[0]
	if _, err := s.r.readSource(ctx, s.info, off, buf); err != nil {
		s.r.limits.Free(buf)
		return nil, err
	}
	return buf, nil
}

func (s *rangeSource) Gather(i int, buf []byte) ([]multipart.Part, error) {
	off, length := s.bounds(i)
	return []multipart.Part{{
		Number: s.todo[i], Body: bytes.NewReader(buf), Size: length,
		State: journal.PartState{End: off + length},
		Done:  func() { s.r.limits.Free(buf) },
	}}, nil
}

func (s *rangeSource) Drop(buf []byte) { s.r.limits.Free(buf) }

func insertPart(parts []journal.PartState, p journal.PartState) []journal.PartState {
	i, found := slices.BinarySearchFunc(parts, p.Number, func(a journal.PartState, n int32) int { return int(a.Number - n) })
	if found {
		parts[i] = p
		return parts
	}
	return slices.Insert(parts, i, p)
}

// complete checks that the parts cover the source exactly and assembles
// the upload.
func (r *run) complete(ctx context.Context, c journal.Change, info backends.ObjectInfo, cp journal.Checkpoint, nparts int32) error {
	var plain int64
	for i, p := range cp.Parts {
		if p.Number != int32(i+1) || p.End <= plain {
			r.discardUpload(ctx, c.Key, cp)
			return fmt.Errorf("complete %s: part %d does not follow part %d", cp.DestKey, p.Number, i)
		}
		plain = p.End
	}
	if int32(len(cp.Parts)) != nparts || plain != info.Size {
		r.discardUpload(ctx, c.Key, cp)
		return fmt.Errorf("complete %s: %d parts cover %d bytes, the source has %d bytes in %d parts", cp.DestKey, len(cp.Parts), plain, info.Size, nparts)
	}
	obj, err := multipart.Complete(ctx, r.job.Dest, cp.DestKey, cp.UploadID, cp.Parts)
	if err != nil {
		return err
	}
	if err := r.renewRetention(ctx, cp, obj); err != nil {
		return err
	}
	r.abortOthers(ctx, cp.DestKey, cp.UploadID)
	// The part bytes were already counted in the progress.
	return r.commit(c, info, cp.DestKey, obj, 0)
}

// renewAfter is how old an upload may be at completion before its
// retention is renewed: an hour short of Days is no broken promise, and
// uploads completed in one go make no extra request.
const renewAfter = time.Hour

// renewRetention moves the retention of a completed upload that began more
// than renewAfter ago (one resumed by a later run) to Days after now:
// CreateMultipart dated it from when the upload started, and a replica is
// to stay locked Days after it was written. Moving the date later is
// allowed in both modes.
func (r *run) renewRetention(ctx context.Context, cp journal.Checkpoint, obj backends.ObjectInfo) error {
	rt := r.job.Retention
	if rt == nil || !cp.Locked || time.Since(cp.Created) < renewAfter {
		return nil
	}
	return r.job.Dest.ExtendRetention(ctx, cp.DestKey, obj.VersionID, rt.Mode, time.Now().UTC().AddDate(0, 0, rt.Days))
}

// resume checks a checkpoint against the source and the destination. It
// keeps the parts ListParts confirms (encrypted: the longest run of them
// from part 1, since each part's counters and hash chain from the one
// before), discards the upload when the source changed, and recognizes an
// upload that was completed before the journal could record it (done).
func (r *run) resume(ctx context.Context, c journal.Change, info backends.ObjectInfo, destKey string, partSize int64, cp journal.Checkpoint) (journal.Checkpoint, bool, bool, error) {
	// An upload locked otherwise than the job now wants starts over: it
	// would complete unprotected, or locked against the job's settings.
	// One checkpointed before checkpoints recorded the lock counts as
	// unlocked, and its parts would lack the Content-MD5 a lock needs.
	if cp.SourceETag != info.ETag || cp.SourceVersion != info.VersionID || cp.Size != info.Size ||
		cp.DestKey != destKey || cp.PartSize != partSize || (cp.Writer != nil) != (r.job.Encryption != nil) ||
		cp.Locked != (r.job.Retention != nil) {
		r.log.Info("source or settings changed since the interrupted upload, starting over", "key", c.Key)
		r.discardUpload(ctx, c.Key, cp)
		return journal.Checkpoint{}, false, false, nil
	}
	kept, err := multipart.Resume(ctx, r.job.Dest, destKey, cp.UploadID, cp.Parts, cp.Writer != nil)
	if errors.Is(err, backends.ErrNoSuchUpload) {
		if obj, ok := r.completedEarlier(ctx, info, cp); ok {
			r.log.Info("upload was completed before the crash, recording it", "key", c.Key)
			if err := r.renewRetention(ctx, cp, obj); err != nil {
				return cp, false, false, err
			}
			return cp, false, true, r.commit(c, info, destKey, obj, 0)
		}
		if err := r.jb.DeleteCheckpoint(c.Key); err != nil {
			return cp, false, false, err
		}
		return journal.Checkpoint{}, false, false, nil
	}
	if err != nil {
		return cp, false, false, err
	}
	cp.Parts = kept
	r.log.Info("resuming multipart upload", "key", c.Key, "parts_done", len(kept))
	return cp, true, false, nil
}

// completedEarlier returns the destination object when it is exactly the
// one the checkpoint's parts assemble to, covering the whole source.
func (r *run) completedEarlier(ctx context.Context, info backends.ObjectInfo, cp journal.Checkpoint) (backends.ObjectInfo, bool) {
	if len(cp.Parts) == 0 || cp.Parts[len(cp.Parts)-1].End != info.Size {
		return backends.ObjectInfo{}, false
	}
	return multipart.Completed(ctx, r.job.Dest, cp.DestKey, cp.Parts)
}

// abortOthers aborts the incomplete uploads of destKey other than keep,
// once keep completed: a CreateMultipart whose answer was lost, then
// retried, left one that no checkpoint knows, and it should not wait for the
// next run's clean-up (or cost storage until then). One worker at a time
// works on a key and the journal lock keeps other processes out, so no such
// upload is in use. A failed listing leaves them to that clean-up.
func (r *run) abortOthers(ctx context.Context, destKey, keep string) {
	for up, err := range r.job.Dest.ListMultipartUploads(ctx, destKey) {
		if err != nil {
			return
		}
		if up.Key == destKey && up.UploadID != keep {
			r.log.Info("aborting a leftover multipart upload of the same object", "key", destKey, "upload", up.UploadID)
			r.abort(ctx, up.Key, up.UploadID)
		}
	}
}

// discardUpload aborts a checkpointed upload and forgets the checkpoint.
func (r *run) discardUpload(ctx context.Context, key string, cp journal.Checkpoint) {
	r.abort(ctx, cp.DestKey, cp.UploadID)
	if err := r.jb.DeleteCheckpoint(key); err != nil {
		r.log.Warn("could not delete checkpoint", "key", key, "err", err)
	}
}

func (r *run) abort(ctx context.Context, destKey, uploadID string) {
	if err := multipart.Abort(ctx, r.job.Dest, destKey, uploadID); err != nil {
		r.log.Warn("could not abort multipart upload; the next run retries", "key", destKey, "err", err)
	}
}
