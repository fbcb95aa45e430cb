// Package multipart drives one multipart upload: the parts of an object are
// read a bounded window ahead, gathered in order into parts, and uploaded
// concurrently within the run's transfer slots; each part the destination
// acknowledged goes to a checkpoint hook, so that a killed run resumes from
// what the destination confirms (Resume), and Complete recognizes an upload
// an earlier try completed whose answer was lost.
//
// Sync (plain and encrypted) and restore to a bucket use it with their own
// Source: ranged source reads, compressed and sealed parts, file sections.
package multipart

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/voyageur-ca/voyageur/backends"
	"github.com/voyageur-ca/voyageur/journal"
)

// Budget is the run's share of memory and of the destination link.
type Budget interface {
	// Alloc returns buffers of the given sizes, all at once, waiting until
	// the memory budget has room for them; it fails only when ctx is done.
	Alloc(ctx context.Context, sizes ...int64) ([][]byte, error)
	// Free gives a buffer from Alloc back to the budget.
	Free(b []byte)
	// Shrink returns a buffer holding b's bytes and weighing no more than
	// them, and frees b: for data that turned out smaller than its room.
	Shrink(b []byte) []byte
	// Slot waits until the bandwidth limit lets n bytes go out, then takes
	// one transfer slot, which release gives back. The bandwidth wait holds
	// no slot, and requests get their slots in the order they asked.
	Slot(ctx context.Context, n int64) (release func(), err error)
}

// Part is one part ready to be sent.
type Part struct {
	// Number is the part's number; 0 means the one after the previous
	// part's (Upload.First for the first).
	Number int32
	Body   io.ReadSeeker // Size bytes, read again from the start on a retry
	Size   int64
	// State is what the checkpoint keeps about the part besides its number,
	// ETag and size, which Send fills in: where it ends in the source, and
	// for sealed parts the stream counter and hash chain.
	State journal.PartState
	// Done, if not nil, is called once the upload of the part ended,
	// successfully or not: it gives the part's memory back.
	Done func()
}

// Source produces the parts of one object. Reads run concurrently, at most
// Upload.Window at a time ahead of Gather, which sees them one at a time in
// order and turns them into parts: one per read for plain copies, any number
// of reads per part for compressed ones.
type Source[R any] interface {
	// Reads is how many reads the object takes.
	Reads() int
	// Need is the buffers read i needs. Send takes them from the budget in
	// read order, so the oldest read never waits for memory that later
	// ones hold.
	Need(i int) []int64
	// Read does read i (0 ≤ i < Reads()) into bufs, and on failure frees
	// them. It may run concurrently with other reads and with Gather.
	Read(ctx context.Context, i int, bufs [][]byte) (R, error)
	// Gather takes read i, in order, and returns the parts it completed;
	// after the last read every byte must be in a returned part.
	Gather(i int, r R) ([]Part, error)
	// Drop gives back what a read holds when it will never be gathered.
	Drop(r R)
}

// Upload is one multipart upload being sent.
type Upload struct {
	Bucket   backends.Bucket
	Key, ID  string
	Options  backends.PartOptions
	Budget   Budget
	Window   int   // reads in flight ahead of Gather (at least 1)
	First    int32 // number of the first part to send (1 unless resuming)
	Progress func(sent int64)
	// Saved, if not nil, records a part the destination acknowledged;
	// calls do not overlap. An error stops the upload.
	Saved func(journal.PartState) error
}

type result[R any] struct {
	r   R
	err error
}

// Send sends the parts src produces, numbered from u.First, and returns
// them as the destination acknowledged them, in part order. On failure the
// upload is left as it is for the caller to resume or Abort.
func Send[R any](ctx context.Context, u Upload, src Source[R]) ([]journal.PartState, error) {
	n := src.Reads()
	results := make([]chan result[R], n)
	for i := range results {
		results[i] = make(chan result[R], 1)
	}
	window := make(chan struct{}, max(u.Window, 1))
	var (
		mu   sync.Mutex // guards sent and serializes Saved
		sent []journal.PartState
	)
	g, gctx := errgroup.WithContext(ctx)
	// Reads go out in order, each once the window has room: a read ahead of
	// the window would only wait for memory that earlier parts need.
	g.Go(func() error {
		for i := range n {
			select {
			case window <- struct{}{}:
			case <-gctx.Done():
				return nil
			}
			var bufs [][]byte
			if need := src.Need(i); len(need) > 0 {
				var err error
				if bufs, err = u.Budget.Alloc(gctx, need...); err != nil {
					return nil // gctx is done: Wait reports why
				}
			}
			g.Go(func() error {
				r, err := src.Read(gctx, i, bufs)
				results[i] <- result[R]{r, err}
				return err
			})
		}
		return nil
	})
	// Gathered parts go to the pacer in part order. The gather loop never
	// waits for the wire limit or a slot itself: it goes on gathering, so
	// reads (and their compression) free their buffers and continue while
	// the part before waits to go out. One part waiting is enough for that;
	// more would only hold memory (C bw: 134 MiB peak with a window's worth
	// waiting, 122 MiB with one, at the same speed).
	ready := make(chan Part, 1)
	g.Go(func() error {
		defer close(ready)
		for i := range n {
			var res result[R]
			select {
			case res = <-results[i]:
			case <-gctx.Done():
				return gctx.Err()
			}
			<-window
			if res.err != nil {
				return res.err
			}
			parts, err := src.Gather(i, res.r)
			if err != nil {
				return err
			}
			for j, p := range parts {
				select {
				case ready <- p:
				case <-gctx.Done():
					for _, q := range parts[j:] {
						done(q)
					}
					return gctx.Err()
				}
			}
		}
		return nil
	})
	g.Go(func() error {
		number := u.First
		var err error
		for p := range ready {
			if err != nil {
				done(p) // after a failure: give back what the rest hold
				continue
			}
			// Slots are taken here, in part order, so parts go out in
			// order as far as concurrency allows: the checkpoint's leading
			// run, all an encrypted resume keeps, is then as long as it
			// can be.
			var release func()
			if release, err = u.Budget.Slot(gctx, p.Size); err != nil {
				done(p)
				continue
			}
			if p.Number != 0 {
				number = p.Number
			}
			p.State.Number, p.State.Size = number, p.Size
			number++
			g.Go(func() error {
				defer done(p)
				defer release()
				etag, err := u.Bucket.UploadPart(gctx, u.Key, u.ID, p.State.Number, p.Body, p.Size, u.Options)
				if err != nil {
					return err
				}
				if u.Progress != nil {
					u.Progress(p.Size)
				}
				p.State.ETag = etag
				mu.Lock()
				defer mu.Unlock()
				sent = append(sent, p.State)
				if u.Saved != nil {
					return u.Saved(p.State)
				}
				return nil
			})
		}
		return err
	})
	err := g.Wait()
	// Reads finished but never gathered give back what they hold.
	for _, ch := range results {
		select {
		case res := <-ch:
			if res.err == nil {
				src.Drop(res.r)
			}
		default:
		}
	}
	slices.SortFunc(sent, func(a, b journal.PartState) int { return cmp.Compare(a.Number, b.Number) })
	return sent, err
}

func done(p Part) {
	if p.Done != nil {
		p.Done()
	}
}

// Resume returns the parts of done that the destination holds for the
// upload, as ListParts confirms them (same number, ETag and size). With
// leading, only the run of them from part 1 is kept: sealed parts chain
// their counters and hashes, so a part after a gap cannot be kept. An
// upload the destination no longer has returns an error satisfying
// backends.ErrNoSuchUpload.
func Resume(ctx context.Context, b backends.Bucket, key, id string, done []journal.PartState, leading bool) ([]journal.PartState, error) {
	listed, err := b.ListParts(ctx, key, id)
	if err != nil {
		return nil, err
	}
	confirmed := make(map[int32]backends.Part, len(listed))
	for _, p := range listed {
		confirmed[p.Number] = p
	}
	var kept []journal.PartState
	for _, p := range done {
		l, ok := confirmed[p.Number]
		ok = ok && sameETag(l.ETag, p.ETag) && l.Size == p.Size
		switch {
		case ok && (!leading || p.Number == int32(len(kept)+1)):
			kept = append(kept, p)
		case leading:
			return kept, nil
		}
	}
	return kept, nil
}

// Complete assembles the parts (numbered 1..n, in order) into the object.
// When the destination no longer knows the upload, an earlier try may have
// completed it and lost the answer: the object is returned if it is exactly
// what the parts assemble to (Completed).
func Complete(ctx context.Context, b backends.Bucket, key, id string, parts []journal.PartState) (backends.ObjectInfo, error) {
	list := make([]backends.Part, len(parts))
	for i, p := range parts {
		if p.Number != int32(i+1) {
			return backends.ObjectInfo{}, fmt.Errorf("complete %s: part %d does not follow part %d", key, p.Number, i)
		}
		list[i] = backends.Part{Number: p.Number, ETag: p.ETag, Size: p.Size}
	}
	obj, err := b.CompleteMultipart(ctx, key, id, list)
	if errors.Is(err, backends.ErrNoSuchUpload) {
		if done, ok := Completed(ctx, b, key, parts); ok {
			return done, nil
		}
	}
	return obj, err
}

// Completed returns the destination object when it is the one parts
// (numbered 1..n) assemble to: its multipart ETag is the MD5 of the part
// MD5s and their count, a fingerprint no other content has.
func Completed(ctx context.Context, b backends.Bucket, key string, parts []journal.PartState) (backends.ObjectInfo, bool) {
	if len(parts) == 0 {
		return backends.ObjectInfo{}, false
	}
	sums := make([][]byte, len(parts))
	var size int64
	for i, p := range parts {
		raw, err := backends.PartMD5(p.ETag)
		if err != nil || p.Number != int32(i+1) {
			return backends.ObjectInfo{}, false
		}
		sums[i] = raw
		size += p.Size
	}
	obj, err := b.Stat(ctx, key, "")
	if err != nil || obj.Size != size {
		return backends.ObjectInfo{}, false
	}
	return obj, sameETag(obj.ETag, backends.MultipartETag(sums))
}

// Abort discards the upload, even when ctx is done: an abandoned upload
// costs storage until someone aborts it. An upload already gone is no error.
func Abort(ctx context.Context, b backends.Bucket, key, id string) error {
	err := b.AbortMultipart(context.WithoutCancel(ctx), key, id)
	if errors.Is(err, backends.ErrNoSuchUpload) {
		return nil
	}
	return err
}

func sameETag(a, b string) bool { return strings.Trim(a, `"`) == strings.Trim(b, `"`) }
