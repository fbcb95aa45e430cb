package replicator

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/voyageur-ca/voyageur/backends"
	"github.com/voyageur-ca/voyageur/journal"
)

// errSourceChanged means the source object changed while it was being
// copied (a pinned read failed); the copy starts over once from a new Stat.
//
// Errors of Bucket calls are returned as they are: they already name the
// operation and the key.
var errSourceChanged = errors.New("source changed during copy")

// put replicates the current state of one source key.
func (r *run) put(ctx context.Context, c journal.Change) error {
	for attempt := 0; ; attempt++ {
		err := r.putOnce(ctx, c, attempt > 0)
		if errors.Is(err, errSourceChanged) && attempt == 0 {
			r.log.Info("source changed during copy, starting over", "key", c.Key)
			continue
		}
		return err
	}
}

func (r *run) putOnce(ctx context.Context, c journal.Change, restat bool) error {
	cp, hasCP, err := r.jb.Checkpoint(c.Key)
	if err != nil {
		return err
	}
	info := backends.ObjectInfo{Key: c.Key, ETag: c.ETag, Size: c.Size, VersionID: c.VersionID}
	// The listing's facts suffice for a small object (the pinned GET returns
	// its headers); otherwise ask the source, which is the truth.
	if restat || hasCP || c.ETag == "" || c.Size > r.job.Transfer.PartSize {
		info, err = r.job.Source.Stat(ctx, c.Key, "")
		if backends.IsNotExist(err) {
			r.log.Debug("source object is gone, nothing to copy", "key", c.Key)
			if hasCP {
				r.discardUpload(ctx, c.Key, cp)
			}
			r.skipped.Add(1)
			r.noteDone(0)
			return r.jb.Drop(c)
		}
		if err != nil {
			return err
		}
	}
	if rec, ok, err := r.jb.Lookup(c.Key); err != nil {
		return err
	} else if ok && rec.SourceETag == info.ETag && rec.Size == info.Size {
		// Already replicated (a duplicate event, or a leftover whose
		// journal commit landed): nothing to send.
		r.skipped.Add(1)
		r.noteDone(0)
		return r.jb.Drop(c)
	}
	destKey := r.destKey(c.Key)
	if info.Size <= r.job.Transfer.PartSize && !hasCP {
		return r.single(ctx, c, info, destKey)
	}
	return r.multipart(ctx, c, info, destKey, cp, hasCP)
}

// readSource reads exactly len(buf) bytes of key at off, pinned to the
// version or ETag seen at plan time.
func (r *run) readSource(ctx context.Context, info backends.ObjectInfo, off int64, buf []byte) (backends.ObjectInfo, error) {
	rc, full, err := r.job.Source.Get(ctx, info.Key, backends.GetOptions{
		Offset: off, Length: int64(len(buf)), VersionID: info.VersionID, IfMatch: info.ETag,
	})
	if errors.Is(err, backends.ErrPreconditionFailed) || (info.VersionID == "" && backends.IsNotExist(err)) {
		return full, fmt.Errorf("read %s: %w", info.Key, errSourceChanged)
	}
	if err != nil {
		return full, err
	}
	defer rc.Close()
	var src io.Reader = rc
	if r.limiter != nil {
		src = &limitedReader{ctx: ctx, r: rc, lim: r.limiter}
	}
	n, err := io.ReadFull(src, buf)
	r.bytesRead.Add(int64(n))
	if err != nil {
		return full, fmt.Errorf("read %s at %d: got %d of %d bytes: %w", info.Key, off, n, len(buf), err)
	}
	return full, nil
}

// acquire takes n bytes of the memory budget (clamped to it) and one
// transfer slot, always in that order so waiting cannot deadlock.
func (r *run) acquire(ctx context.Context, n int64) (release func(), err error) {
	n = min(max(n, 1), r.job.Transfer.Memory)
	if err := r.mem.Acquire(ctx, n); err != nil {
		return nil, err
	}
	if err := r.slots.Acquire(ctx, 1); err != nil {
		r.mem.Release(n)
		return nil, err
	}
	return func() { r.slots.Release(1); r.mem.Release(n) }, nil
}

// single copies an object in one GET and one PUT.
func (r *run) single(ctx context.Context, c journal.Change, info backends.ObjectInfo, destKey string) error {
	release, err := r.acquire(ctx, info.Size)
	if err != nil {
		return err
	}
	defer release()
	buf := r.bufs.get(info.Size)
	defer r.bufs.put(buf)
	full, err := r.readSource(ctx, info, 0, buf)
	if err != nil {
		return err
	}
	if full.Size != info.Size {
		return fmt.Errorf("read %s: %w (size %d, expected %d)", c.Key, errSourceChanged, full.Size, info.Size)
	}
	obj, err := r.job.Dest.Put(ctx, destKey, bytes.NewReader(buf), info.Size, putOptions(full))
	if err != nil {
		return err
	}
	r.bytesWritten.Add(info.Size)
	return r.commit(c, full, destKey, obj, info.Size)
}

func putOptions(info backends.ObjectInfo) backends.PutOptions {
	return backends.PutOptions{ContentType: info.ContentType, Metadata: info.Metadata}
}

// commit records the replica in the index and removes the queue item in one
// journal transaction, after the destination confirmed the write.
func (r *run) commit(c journal.Change, src backends.ObjectInfo, destKey string, dest backends.ObjectInfo, size int64) error {
	err := r.jb.Complete(c, journal.Record{
		SourceETag: src.ETag, SourceVersion: src.VersionID, Size: src.Size, MTime: src.LastModified,
		DestKey: destKey, DestETag: dest.ETag, DestVersion: dest.VersionID, ReplicatedAt: time.Now().UTC(),
	})
	if err != nil {
		return err
	}
	r.copied.Add(1)
	r.noteDone(size)
	r.log.Debug("copied", "key", c.Key, "size", size)
	return nil
}

// partSizeFor grows the part size so that an object needs at most MaxParts
// parts, rounding up to a whole MiB.
func partSizeFor(size, base int64) int64 {
	ps := base
	if need := (size + MaxParts - 1) / MaxParts; need > ps {
		ps = (need + (1<<20 - 1)) &^ (1<<20 - 1)
	}
	return min(ps, MaxPartSize)
}

// multipart copies a large object with concurrent ranged reads and part
// uploads, checkpointing every finished part so that a killed run resumes.
func (r *run) multipart(ctx context.Context, c journal.Change, info backends.ObjectInfo, destKey string, cp journal.Checkpoint, hasCP bool) error {
	partSize := partSizeFor(info.Size, r.job.Transfer.PartSize)
	nparts := int32((info.Size + partSize - 1) / partSize)
	if hasCP {
		var done bool
		var err error
		cp, hasCP, done, err = r.resume(ctx, c, info, destKey, partSize, nparts, cp)
		if err != nil || done {
			return err
		}
	}
	if !hasCP {
		id, err := r.job.Dest.CreateMultipart(ctx, destKey, putOptions(info))
		if err != nil {
			return err
		}
		cp = journal.Checkpoint{
			UploadID: id, DestKey: destKey, SourceETag: info.ETag, SourceVersion: info.VersionID,
			Size: info.Size, PartSize: partSize, Created: time.Now().UTC(),
		}
		if err := r.jb.SaveCheckpoint(c.Key, cp); err != nil {
			r.abort(ctx, destKey, id)
			return err
		}
	}
	have := make(map[int32]bool, len(cp.Parts))
	for _, p := range cp.Parts {
		have[p.Number] = true
	}

	var mu sync.Mutex // guards cp while parts finish concurrently
	g, gctx := errgroup.WithContext(ctx)
	for n := int32(1); n <= nparts; n++ {
		if have[n] {
			continue
		}
		off := int64(n-1) * partSize
		length := min(partSize, info.Size-off)
		release, err := r.acquire(gctx, length)
		if err != nil {
			break // gctx is done: g.Wait reports why
		}
		g.Go(func() error {
			defer release()
			buf := r.bufs.get(length)
			defer r.bufs.put(buf)
			if _, err := r.readSource(gctx, info, off, buf); err != nil {
				return err
			}
			etag, err := r.job.Dest.UploadPart(gctx, destKey, cp.UploadID, n, bytes.NewReader(buf), length)
			if err != nil {
				return err
			}
			r.bytesWritten.Add(length)
			if p := r.opts.Progress; p != nil {
				p.BytesDone.Add(length)
			}
			mu.Lock()
			defer mu.Unlock()
			cp.Parts = insertPart(cp.Parts, journal.PartState{Number: n, ETag: etag, Size: length, End: off + length})
			return r.jb.SaveCheckpoint(c.Key, cp)
		})
	}
	if err := g.Wait(); err != nil {
		if errors.Is(err, errSourceChanged) {
			r.discardUpload(ctx, c.Key, cp)
		}
		return err
	}
	return r.complete(ctx, c, info, cp)
}

func insertPart(parts []journal.PartState, p journal.PartState) []journal.PartState {
	i, found := slices.BinarySearchFunc(parts, p.Number, func(a journal.PartState, n int32) int { return int(a.Number - n) })
	if found {
		parts[i] = p
		return parts
	}
	return slices.Insert(parts, i, p)
}

// complete checks the byte count and assembles the upload.
func (r *run) complete(ctx context.Context, c journal.Change, info backends.ObjectInfo, cp journal.Checkpoint) error {
	var total int64
	parts := make([]backends.Part, len(cp.Parts))
	for i, p := range cp.Parts {
		total += p.Size
		parts[i] = backends.Part{Number: p.Number, ETag: p.ETag, Size: p.Size}
	}
	if total != info.Size {
		r.discardUpload(ctx, c.Key, cp)
		return fmt.Errorf("complete %s: parts hold %d bytes, the source has %d", cp.DestKey, total, info.Size)
	}
	obj, err := r.job.Dest.CompleteMultipart(ctx, cp.DestKey, cp.UploadID, parts)
	if err != nil {
		return err
	}
	// The part bytes were already counted in the progress.
	if err := r.commit(c, info, cp.DestKey, obj, 0); err != nil {
		return err
	}
	return nil
}

// resume checks a checkpoint against the source and the destination. It
// keeps the parts ListParts confirms, discards the upload when the source
// changed, and recognizes an upload that was completed before the journal
// could record it (done).
func (r *run) resume(ctx context.Context, c journal.Change, info backends.ObjectInfo, destKey string, partSize int64, nparts int32, cp journal.Checkpoint) (journal.Checkpoint, bool, bool, error) {
	if cp.SourceETag != info.ETag || cp.SourceVersion != info.VersionID || cp.Size != info.Size ||
		cp.DestKey != destKey || cp.PartSize != partSize {
		r.log.Info("source changed since the interrupted upload, starting over", "key", c.Key)
		r.discardUpload(ctx, c.Key, cp)
		return journal.Checkpoint{}, false, false, nil
	}
	listed, err := r.job.Dest.ListParts(ctx, destKey, cp.UploadID)
	if errors.Is(err, backends.ErrNoSuchUpload) {
		if r.completedEarlier(ctx, info, cp, nparts) {
			r.log.Info("upload was completed before the crash, recording it", "key", c.Key)
			obj, err := r.job.Dest.Stat(ctx, destKey, "")
			if err != nil {
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
	confirmed := make(map[int32]backends.Part, len(listed))
	for _, p := range listed {
		confirmed[p.Number] = p
	}
	kept := cp.Parts[:0]
	for _, p := range cp.Parts {
		if l, ok := confirmed[p.Number]; ok && strings.Trim(l.ETag, `"`) == strings.Trim(p.ETag, `"`) && l.Size == p.Size {
			kept = append(kept, p)
		}
	}
	cp.Parts = kept
	r.log.Info("resuming multipart upload", "key", c.Key, "parts_done", len(kept), "parts", nparts)
	return cp, true, false, nil
}

// completedEarlier reports whether the destination holds exactly the object
// the checkpoint's parts assemble to: its multipart ETag is the MD5 of the
// part MD5s, a fingerprint no other content has.
func (r *run) completedEarlier(ctx context.Context, info backends.ObjectInfo, cp journal.Checkpoint, nparts int32) bool {
	if int32(len(cp.Parts)) != nparts {
		return false
	}
	obj, err := r.job.Dest.Stat(ctx, cp.DestKey, "")
	if err != nil || obj.Size != info.Size {
		return false
	}
	h := md5.New()
	for _, p := range cp.Parts {
		b, err := hex.DecodeString(strings.Trim(p.ETag, `"`))
		if err != nil {
			return false
		}
		h.Write(b)
	}
	return obj.ETag == fmt.Sprintf("%x-%d", h.Sum(nil), len(cp.Parts))
}

// discardUpload aborts a checkpointed upload and forgets the checkpoint.
func (r *run) discardUpload(ctx context.Context, key string, cp journal.Checkpoint) {
	r.abort(ctx, cp.DestKey, cp.UploadID)
	if err := r.jb.DeleteCheckpoint(key); err != nil {
		r.log.Warn("could not delete checkpoint", "key", key, "err", err)
	}
}

func (r *run) abort(ctx context.Context, destKey, uploadID string) {
	if err := r.job.Dest.AbortMultipart(context.WithoutCancel(ctx), destKey, uploadID); err != nil && !errors.Is(err, backends.ErrNoSuchUpload) {
		r.log.Warn("could not abort multipart upload; the next run retries", "key", destKey, "err", err)
	}
}

// del propagates a delete after checking that the source key is still gone.
func (r *run) del(ctx context.Context, c journal.Change) error {
	if _, err := r.job.Source.Stat(ctx, c.Key, ""); err == nil {
		r.log.Info("source object is back, not deleting its replica", "key", c.Key)
		r.noteDone(0)
		return r.jb.Drop(c)
	} else if !backends.IsNotExist(err) {
		return err
	}
	destKey := r.destKey(c.Key)
	if rec, ok, err := r.jb.Lookup(c.Key); err != nil {
		return err
	} else if ok && rec.DestKey != "" {
		destKey = rec.DestKey
	}
	if err := r.job.Dest.Delete(ctx, destKey, ""); err != nil {
		return err
	}
	if err := r.jb.CompleteDelete(c); err != nil {
		return err
	}
	r.deleted.Add(1)
	r.noteDone(0)
	return nil
}
