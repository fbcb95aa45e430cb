package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"time"

	"github.com/voyageur-ca/voyageur/backends"
	"github.com/voyageur-ca/voyageur/crypto"
	"github.com/voyageur-ca/voyageur/journal"
	"github.com/voyageur-ca/voyageur/replicator"
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
			r.count.Skipped.Add(1)
			r.count.Done(0)
			return r.jb.Drop(c)
		}
		if err != nil {
			return err
		}
	}
	if rec, ok, err := r.jb.Lookup(c.Key); err != nil {
		return err
	} else if ok && r.upToDate(rec, info) {
		// Already replicated (a duplicate event, or a leftover whose
		// journal commit landed): nothing to send.
		r.count.Skipped.Add(1)
		r.count.Done(0)
		return r.jb.Drop(c)
	} else if !ok && c.Reason == reasonRebuild {
		if done, err := r.adopt(ctx, c, info); err != nil || done {
			return err
		}
	}
	destKey := r.job.DestKey(c.Key)
	if info.Size <= r.job.Transfer.PartSize && !hasCP {
		return r.single(ctx, c, info, destKey)
	}
	return r.multipart(ctx, c, info, destKey, cp, hasCP)
}

// upToDate reports whether the index record is a replica of the source
// object as the job now wants it: same source ETag and size, and the same
// destination key and format (a job switched to encryption or hashed names
// replicates everything again).
func (r *run) upToDate(rec journal.Record, src backends.ObjectInfo) bool {
	return rec.SourceETag == src.ETag && rec.Size == src.Size &&
		rec.DestKey == r.job.DestKey(src.Key) && rec.Format == r.format()
}

// format is the index's name for how this job stores replicas.
func (r *run) format() string {
	if r.job.Encryption != nil {
		return "age"
	}
	return ""
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
	src := replicator.PacedReader(ctx, rc, r.readLimit)
	n, err := io.ReadFull(src, buf)
	r.count.BytesRead.Add(int64(n))
	if err != nil {
		return full, fmt.Errorf("read %s at %d: got %d of %d bytes: %w", info.Key, off, n, len(buf), err)
	}
	return full, nil
}

// single copies an object in one GET and one PUT. Encrypted, the object
// is compressed into a second buffer and sealed as it is sent.
func (r *run) single(ctx context.Context, c journal.Change, info backends.ObjectInfo, destKey string) error {
	sizes := []int64{info.Size}
	if r.job.Encryption != nil {
		sizes = append(sizes, crypto.CompressedBound(info.Size))
	}
	bufs, err := r.limits.Alloc(ctx, sizes...)
	if err != nil {
		return err
	}
	for _, b := range bufs {
		defer r.limits.Free(b)
	}
	buf := bufs[0]
	full, err := r.readSource(ctx, info, 0, buf)
	if err != nil {
		return err
	}
	if full.Size != info.Size {
		return fmt.Errorf("read %s: %w (size %d, expected %d)", c.Key, errSourceChanged, full.Size, info.Size)
	}
	var out io.ReadSeeker = bytes.NewReader(buf)
	size := info.Size
	if enc := r.job.Encryption; enc != nil {
		// A fresh file key per attempt: nothing sealed is ever re-sealed.
		w, err := crypto.NewWriter(enc.Options, metaOf(full))
		if err != nil {
			return fmt.Errorf("encrypt %s: %w", c.Key, err)
		}
		sealed, err := sealWhole(w, buf, bufs[1])
		if err != nil {
			return fmt.Errorf("encrypt %s: %w", c.Key, err)
		}
		out, size = sealed, sealed.Size()
	}
	free, err := r.limits.Slot(ctx, size)
	if err != nil {
		return err
	}
	obj, err := r.job.Dest.Put(ctx, destKey, out, size, r.destOptions(full))
	free()
	if err != nil {
		return err
	}
	r.count.BytesWritten.Add(size)
	return r.commit(c, full, destKey, obj, info.Size)
}

// sealWhole compresses plain into scratch and returns the object's one
// sealed part, sealed as it is read.
func sealWhole(w *crypto.Writer, plain, scratch []byte) (*crypto.SealedReader, error) {
	compressed, err := w.CompressTo(scratch[:0], plain)
	if err != nil {
		return nil, err
	}
	part, err := w.NewPart(w.Start())
	if err != nil {
		return nil, err
	}
	if err := part.Add(plain, compressed); err != nil {
		return nil, err
	}
	out, _, err := part.Reader(true, nil)
	return out, err
}

// destOptions is what the destination stores beside a replica: the
// source's content type and metadata in plain mode, nothing about the
// plaintext when encrypting (META carries them inside); the fingerprint
// (keyed when encrypting) and the job's retention.
func (r *run) destOptions(info backends.ObjectInfo) backends.PutOptions {
	opts := backends.PutOptions{ContentType: "application/octet-stream"}
	if r.job.Encryption == nil {
		opts = backends.PutOptions{ContentType: info.ContentType, Metadata: maps.Clone(info.Metadata)}
	}
	if fp := r.fingerprint(info); fp != "" {
		if opts.Metadata == nil {
			opts.Metadata = map[string]string{}
		}
		opts.Metadata[replicator.FingerprintMeta] = fp
	}
	if rt := r.job.Retention; rt != nil {
		opts.LockMode, opts.LockUntil = rt.Mode, time.Now().UTC().AddDate(0, 0, rt.Days)
	}
	return opts
}

func metaOf(info backends.ObjectInfo) crypto.Meta {
	return crypto.Meta{
		Key: info.Key, Size: info.Size, MTime: info.LastModified, ContentType: info.ContentType,
		Metadata: info.Metadata, ETag: info.ETag, VersionID: info.VersionID,
	}
}

// commit records the replica in the index and removes the queue item in one
// journal transaction, after the destination confirmed the write.
//
// In a sync the worker does not wait for it: the transaction goes to the
// journal's group commit while the worker copies its next object, so the
// fsyncs are off every object's critical path (S copies 16 KiB objects in
// about the time of their GET and PUT). Until it lands, the change stays
// queued: a crash in between copies the object again, as a crash between
// a PUT and its commit always did. At most Concurrency commits wait
// (r.commits), so a crash costs at most that many objects more. The run waits for every commit before it
// reports (r.pending); a failed one counts as a failure of the object.
// watch commits before its worker takes the next change of the key.
func (r *run) commit(c journal.Change, src backends.ObjectInfo, destKey string, dest backends.ObjectInfo, size int64) error {
	rec := journal.Record{
		SourceETag: src.ETag, SourceVersion: src.VersionID, Size: src.Size, MTime: src.LastModified,
		DestKey: destKey, DestETag: dest.ETag, DestVersion: dest.VersionID, ReplicatedAt: time.Now().UTC(),
		Format: r.format(),
	}
	if r.kick != nil {
		return r.committed(c, src, size, r.jb.Complete(c, rec))
	}
	r.pending.Add(1)
	r.commits <- struct{}{}
	go func() {
		defer r.pending.Done()
		defer func() { <-r.commits }()
		if err := r.committed(c, src, size, r.jb.Complete(c, rec)); err != nil {
			r.failChange(c, err)
		}
	}()
	return nil
}

// committed counts a replica whose journal commit returned err.
func (r *run) committed(c journal.Change, src backends.ObjectInfo, size int64, err error) error {
	if err != nil {
		return err
	}
	r.count.Copied.Add(1)
	r.count.Done(size)
	r.log.Debug("copied", "key", c.Key, "size", src.Size)
	if o := r.opts.Observer; o != nil {
		o.Replicated(r.job.Name, src.Size, c.EventTime)
	}
	return nil
}

// del propagates a delete after checking that the source key is still gone.
func (r *run) del(ctx context.Context, c journal.Change) error {
	if _, err := r.job.Source.Stat(ctx, c.Key, ""); err == nil {
		r.log.Info("source object is back, not deleting its replica", "key", c.Key)
		r.count.Done(0)
		return r.jb.Drop(c)
	} else if !backends.IsNotExist(err) {
		return err
	}
	destKey := r.job.DestKey(c.Key)
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
	r.count.Deleted.Add(1)
	r.count.Done(0)
	if o := r.opts.Observer; o != nil {
		o.Deleted(r.job.Name)
	}
	return nil
}
