package retry

import (
	"context"
	"fmt"
	"io"
	"iter"
	"time"

	"github.com/voyageur-ca/voyageur/backends"
)

// watchdog cancels a stream's context when one wait on the store (a Read,
// the next listing entry) lasts longer than the per-attempt timeout. It is
// armed only while the wrapper waits on the store, never while the caller
// holds the data, so a slow consumer is not mistaken for a stalled store.
type watchdog struct {
	t *time.Timer
	d time.Duration
}

func (r *bucket) watch(parent context.Context) (context.Context, context.CancelCauseFunc, *watchdog) {
	ctx, cancel := context.WithCancelCause(parent)
	w := &watchdog{d: r.p.AttemptTimeout}
	if w.d > 0 {
		w.t = time.AfterFunc(w.d, func() { cancel(errAttemptTimeout) })
		w.t.Stop()
	}
	return ctx, cancel, w
}

func (w *watchdog) arm() {
	if w.t != nil {
		w.t.Reset(w.d)
	}
}

func (w *watchdog) disarm() {
	if w.t != nil {
		w.t.Stop()
	}
}

// Get retries opening key. The returned reader, when the body fails with a
// retryable error (a reset, a cut body, a stalled read), reopens key at the
// offset reached, pinned to the version and ETag of the first open (or to
// opts' own), so the bytes delivered always belong to one object; if the
// object changed meanwhile, Read fails with ErrPreconditionFailed. Attempts
// bounds the consecutive failed tries without a byte of progress.
func (r *bucket) Get(ctx context.Context, key string, opts backends.GetOptions) (io.ReadCloser, backends.ObjectInfo, error) {
	g := &getReader{r: r, ctx: ctx, key: key}
	err := r.loop(ctx, "get", key, func() (context.Context, error) { return g.open(opts) })
	if err != nil {
		return nil, backends.ObjectInfo{}, err
	}
	g.pin = opts
	if g.pin.VersionID == "" {
		g.pin.VersionID = g.info.VersionID
	}
	if g.pin.IfMatch == "" {
		g.pin.IfMatch = g.info.ETag
	}
	g.offset = opts.Offset
	g.remaining = g.info.Size - opts.Offset
	if opts.Length > 0 && opts.Length < g.remaining {
		g.remaining = opts.Length
	}
	return g, g.info, nil
}

type getReader struct {
	r   *bucket
	ctx context.Context
	key string
	pin backends.GetOptions // version and ETag every reopen asks for

	info      backends.ObjectInfo
	offset    int64 // of the next byte
	remaining int64 // bytes still to deliver

	body   io.ReadCloser // nil between a failure and the reopen
	tctx   context.Context
	cancel context.CancelCauseFunc
	wd     *watchdog

	failures int   // consecutive failed tries without progress
	lastErr  error // the latest failure
	err      error // sticky final error
}

// open makes one try at opening the object with opts.
func (g *getReader) open(opts backends.GetOptions) (context.Context, error) {
	tctx, cancel, wd := g.r.watch(g.ctx)
	wd.arm()
	body, info, err := g.r.b.Get(tctx, g.key, opts)
	wd.disarm()
	if err != nil {
		cancel(nil)
		return tctx, err
	}
	g.body, g.tctx, g.cancel, g.wd = body, tctx, cancel, wd
	if g.info.Key == "" {
		g.info = info
	}
	return tctx, nil
}

func (g *getReader) closeBody() {
	if g.body == nil {
		return
	}
	g.wd.disarm()
	g.body.Close()
	g.cancel(nil)
	g.body = nil
}

// fail records a failed try and returns the final error when there is to
// be no other.
func (g *getReader) fail(tctx context.Context, err error) error {
	retry := retryable(g.ctx, tctx, err)
	err = annotate(tctx, err)
	g.failures++
	g.lastErr = err
	switch {
	case !retry:
		return giveUp("get", g.key, g.failures, false, g.ctx, err)
	case g.failures >= g.r.p.Attempts:
		return giveUp("get", g.key, g.failures, true, g.ctx, err)
	}
	return nil
}

// resume waits and reopens the object where the last body stopped.
func (g *getReader) resume() error {
	for {
		if !g.r.wait(g.ctx, "get", g.key, g.failures, g.lastErr) {
			return giveUp("get", g.key, g.failures, false, g.ctx, g.lastErr)
		}
		opts := g.pin
		opts.Offset, opts.Length = g.offset, g.remaining
		tctx, err := g.open(opts)
		if err == nil {
			return nil
		}
		if err := g.fail(tctx, err); err != nil {
			return err
		}
	}
}

func (g *getReader) Read(p []byte) (int, error) {
	for {
		if g.err != nil {
			return 0, g.err
		}
		if g.remaining <= 0 {
			return 0, io.EOF
		}
		if g.body == nil {
			if g.err = g.resume(); g.err != nil {
				return 0, g.err
			}
		}
		if int64(len(p)) > g.remaining {
			p = p[:g.remaining]
		}
		g.wd.arm()
		n, err := g.body.Read(p)
		g.wd.disarm()
		if n > 0 {
			g.offset += int64(n)
			g.remaining -= int64(n)
			g.failures = 0
		}
		switch {
		case err == nil:
			return n, nil
		case err == io.EOF && g.remaining == 0:
			return n, io.EOF
		case err == io.EOF:
			err = fmt.Errorf("body ended %d bytes early: %w", g.remaining, io.ErrUnexpectedEOF)
		}
		tctx := g.tctx
		g.closeBody()
		g.err = g.fail(tctx, fmt.Errorf("get %s: read at offset %d: %w", g.key, g.offset, err))
		if n > 0 {
			return n, nil // the error, or the reopen, comes with the next Read
		}
	}
}

// Close releases the current body.
func (g *getReader) Close() error {
	if g.body == nil {
		return nil
	}
	g.wd.disarm()
	err := g.body.Close()
	g.cancel(nil)
	g.body = nil
	return err
}

// List resumes a listing cut by a retryable error after the last key it
// yielded (by StartAfter). A version listing cannot be resumed: it starts
// over when nothing was yielded yet, and otherwise yields the error.
// Attempts bounds the consecutive failed tries without an entry yielded.
func (r *bucket) List(ctx context.Context, opts backends.ListOptions) iter.Seq2[backends.ObjectInfo, error] {
	return stream(r, ctx, "list", opts.Prefix, !opts.Versions, func(ctx context.Context, last *backends.ObjectInfo) iter.Seq2[backends.ObjectInfo, error] {
		o := opts
		if last != nil {
			o.StartAfter = last.Key
		}
		return r.b.List(ctx, o)
	})
}

// ListMultipartUploads starts over after a retryable error when nothing was
// yielded yet, and otherwise yields the error.
func (r *bucket) ListMultipartUploads(ctx context.Context, prefix string) iter.Seq2[backends.Upload, error] {
	return stream(r, ctx, "list multipart uploads", prefix, false, func(ctx context.Context, _ *backends.Upload) iter.Seq2[backends.Upload, error] {
		return r.b.ListMultipartUploads(ctx, prefix)
	})
}

// stream retries a listing. open starts it over, after last when
// resumable and last is not nil.
func stream[T any](r *bucket, ctx context.Context, op, key string, resumable bool,
	open func(ctx context.Context, last *T) iter.Seq2[T, error]) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		var zero T
		var last *T
		failures := 0
		for {
			tctx, cancel, wd := r.watch(ctx)
			var failed error
			progressed := false
			wd.arm()
			for v, err := range open(tctx, last) {
				wd.disarm()
				if err != nil {
					failed = err
					break
				}
				progressed = true
				if resumable {
					last = &v
				}
				if !yield(v, nil) {
					cancel(nil)
					return
				}
				wd.arm()
			}
			wd.disarm()
			cancel(nil)
			if failed == nil {
				return
			}
			if progressed {
				failures = 0
			}
			failures++
			retry := retryable(ctx, tctx, failed)
			failed = annotate(tctx, failed)
			if retry && !resumable && progressed {
				yield(zero, fmt.Errorf("%s %s: cut after entries were yielded, and this listing cannot resume: %w", op, key, failed))
				return
			}
			if !retry {
				yield(zero, giveUp(op, key, failures, false, ctx, failed))
				return
			}
			if failures >= r.p.Attempts {
				yield(zero, giveUp(op, key, failures, true, ctx, failed))
				return
			}
			if !r.wait(ctx, op, key, failures, failed) {
				yield(zero, giveUp(op, key, failures, false, ctx, failed))
				return
			}
		}
	}
}
