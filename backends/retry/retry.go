// Package retry wraps a backends.Bucket with the one retry policy of
// voyageur: a bounded number of tries, capped exponential backoff with
// jitter (Backoff), and retries only for errors backends.IsRetryable accepts
// (throttling, 5xx, resets, timeouts), never for client errors, missing
// objects or a done context.
//
// Beyond single calls it resumes streams: a Get body cut mid-way is reopened
// at the offset reached, pinned to the same object; a listing that fails
// mid-way resumes after the last key it yielded.
package retry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/voyageur-ca/voyageur/backends"
)

// Policy says how often and how patiently to retry. The zero Policy uses
// the defaults.
type Policy struct {
	// Attempts is the total number of tries of one call (default 5). For a
	// Get body or a listing it bounds the consecutive failed tries without
	// progress.
	Attempts int
	// Base and Max bound the backoff: before try n+1 the wrapper sleeps
	// Backoff(Base, Max, n), within [d/2, d] for d = min(Max, Base·2^(n-1))
	// (defaults 200ms, 10s).
	Base, Max time.Duration
	// AttemptTimeout bounds one try of a small call (Stat, CreateMultipart,
	// ListParts, CompleteMultipart, AbortMultipart, Delete), the wait for
	// one listing page, and one Read of a Get body: a try that takes longer
	// is cancelled and counts as a retryable failure. Zero means the
	// default, 60s; a negative value means no limit. Put and UploadPart,
	// whose duration grows with their size, are not bounded.
	AttemptTimeout time.Duration
	// Logger receives one record per retry (nil: no logging).
	Logger *slog.Logger
	// Sleep waits d or until ctx is done (tests replace it; default: a
	// timer honouring ctx).
	Sleep func(ctx context.Context, d time.Duration) error
}

const (
	defaultAttempts = 5
	defaultBase     = 200 * time.Millisecond
	defaultMax      = 10 * time.Second
)

// DefaultAttemptTimeout is Policy.AttemptTimeout when it is zero.
const DefaultAttemptTimeout = 60 * time.Second

// errAttemptTimeout is the cancellation cause of a try that ran past
// Policy.AttemptTimeout.
var errAttemptTimeout = errors.New("try exceeded the per-attempt timeout")

// Wrap returns b with retries according to p.
func Wrap(b backends.Bucket, p Policy) backends.Bucket {
	if p.Attempts <= 0 {
		p.Attempts = defaultAttempts
	}
	if p.Base <= 0 {
		p.Base = defaultBase
	}
	if p.Max <= 0 {
		p.Max = defaultMax
	}
	if p.Max < p.Base {
		p.Max = p.Base
	}
	switch {
	case p.AttemptTimeout == 0:
		p.AttemptTimeout = DefaultAttemptTimeout
	case p.AttemptTimeout < 0:
		p.AttemptTimeout = 0
	}
	if p.Logger == nil {
		p.Logger = slog.New(slog.DiscardHandler)
	}
	if p.Sleep == nil {
		p.Sleep = sleep
	}
	return &bucket{b: b, p: p}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

type bucket struct {
	b backends.Bucket
	p Policy
}

var _ backends.Bucket = (*bucket)(nil)

func (r *bucket) Name() string { return r.b.Name() }

// retryable reports whether a failed try is worth another: the parent ctx
// is live and either the error is transient or the try ran out of time.
func retryable(ctx, tryCtx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	if tryCtx != nil && context.Cause(tryCtx) == errAttemptTimeout {
		return true
	}
	return backends.IsRetryable(err)
}

// annotate marks an error caused by the per-attempt timeout as such.
func annotate(tryCtx context.Context, err error) error {
	if tryCtx != nil && context.Cause(tryCtx) == errAttemptTimeout && !errors.Is(err, errAttemptTimeout) {
		return fmt.Errorf("%w: %w", errAttemptTimeout, err)
	}
	return err
}

// wait logs the failure of try n and sleeps before the next one. It
// returns false when ctx ended the wait.
func (r *bucket) wait(ctx context.Context, op, key string, n int, err error) bool {
	d := Backoff(r.p.Base, r.p.Max, n)
	r.p.Logger.LogAttrs(ctx, slog.LevelWarn, "retrying storage request",
		slog.String("bucket", r.b.Name()), slog.String("op", op), slog.String("key", key),
		slog.Int("try", n), slog.Int("attempts", r.p.Attempts), slog.Duration("backoff", d),
		slog.String("error", err.Error()))
	return r.p.Sleep(ctx, d) == nil
}

// tryCtx returns the context of one try of a small call.
func (r *bucket) tryCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if r.p.AttemptTimeout <= 0 {
		return ctx, func() {}
	}
	return context.WithTimeoutCause(ctx, r.p.AttemptTimeout, errAttemptTimeout)
}

// do runs fn until it succeeds, fails for good, or runs out of tries.
// Small calls get a per-try timeout.
func (r *bucket) do(ctx context.Context, op, key string, small bool, fn func(ctx context.Context) error) error {
	return r.loop(ctx, op, key, func() (context.Context, error) {
		if !small {
			return nil, fn(ctx)
		}
		tctx, cancel := r.tryCtx(ctx)
		defer cancel()
		return tctx, fn(tctx)
	})
}

// loop runs try until it succeeds, fails for good, or runs out of tries.
// try returns the context of the try (nil when it is ctx), whose
// cancellation cause tells a timed-out try.
func (r *bucket) loop(ctx context.Context, op, key string, try func() (context.Context, error)) error {
	for n := 1; ; n++ {
		tctx, err := try()
		if err == nil {
			return nil
		}
		retry := retryable(ctx, tctx, err)
		err = annotate(tctx, err)
		if !retry {
			return giveUp(op, key, n, false, ctx, err)
		}
		if n >= r.p.Attempts {
			return giveUp(op, key, n, true, ctx, err)
		}
		if !r.wait(ctx, op, key, n, err) {
			return giveUp(op, key, n, false, ctx, err)
		}
	}
}

// giveUpError is the last error of a call tried more than once.
type giveUpError struct {
	op, key   string
	tries     int
	exhausted bool
	ctxErr    error // set when ctx ended the retries
	err       error
}

// giveUp returns err as is after a single try, and otherwise says how many
// tries were made.
func giveUp(op, key string, tries int, exhausted bool, ctx context.Context, err error) error {
	ge := &giveUpError{op: op, key: key, tries: tries, exhausted: exhausted, err: err}
	if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		ge.ctxErr = ctx.Err()
	}
	if tries == 1 && ge.ctxErr == nil {
		return err
	}
	return ge
}

func (e *giveUpError) Error() string {
	var b strings.Builder
	prefix := e.op + " " + e.key + ": "
	if e.key == "" {
		prefix = e.op + ": "
	}
	b.WriteString(prefix)
	switch {
	case e.ctxErr != nil:
		fmt.Fprintf(&b, "stopped after %d tries: %v: ", e.tries, e.ctxErr)
	case e.exhausted:
		fmt.Fprintf(&b, "giving up after %d tries: ", e.tries)
	default:
		fmt.Fprintf(&b, "failed on try %d: ", e.tries)
	}
	// The backend's error already names the operation and key.
	b.WriteString(strings.TrimPrefix(e.err.Error(), prefix))
	return b.String()
}

func (e *giveUpError) Unwrap() []error {
	if e.ctxErr != nil {
		return []error{e.err, e.ctxErr}
	}
	return []error{e.err}
}

func (r *bucket) Stat(ctx context.Context, key, versionID string) (backends.ObjectInfo, error) {
	var oi backends.ObjectInfo
	err := r.do(ctx, "stat", key, true, func(ctx context.Context) error {
		var err error
		oi, err = r.b.Stat(ctx, key, versionID)
		return err
	})
	return oi, err
}

// rewinder returns a function that seeks rs back to where it is now.
func rewinder(rs io.ReadSeeker) (func() error, error) {
	start, err := rs.Seek(0, io.SeekCurrent)
	if err != nil {
		return nil, err
	}
	return func() error {
		_, err := rs.Seek(start, io.SeekStart)
		return err
	}, nil
}

// Put rewinds r to its position at the call before each try.
func (r *bucket) Put(ctx context.Context, key string, rs io.ReadSeeker, size int64, opts backends.PutOptions) (backends.ObjectInfo, error) {
	rewind, err := rewinder(rs)
	if err != nil {
		return backends.ObjectInfo{}, fmt.Errorf("put %s: %w", key, err)
	}
	var oi backends.ObjectInfo
	err = r.do(ctx, "put", key, false, func(ctx context.Context) error {
		if err := rewind(); err != nil {
			return fmt.Errorf("put %s: rewind body: %w", key, err)
		}
		var err error
		oi, err = r.b.Put(ctx, key, rs, size, opts)
		return err
	})
	return oi, err
}

func (r *bucket) CreateMultipart(ctx context.Context, key string, opts backends.PutOptions) (string, error) {
	var id string
	err := r.do(ctx, "create multipart upload of", key, true, func(ctx context.Context) error {
		var err error
		id, err = r.b.CreateMultipart(ctx, key, opts)
		return err
	})
	return id, err
}

// UploadPart rewinds r to its position at the call before each try.
func (r *bucket) UploadPart(ctx context.Context, key, uploadID string, number int32, rs io.ReadSeeker, size int64, opts backends.PartOptions) (string, error) {
	op := fmt.Sprintf("upload part %d of", number)
	rewind, err := rewinder(rs)
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", op, key, err)
	}
	var etag string
	err = r.do(ctx, op, key, false, func(ctx context.Context) error {
		if err := rewind(); err != nil {
			return fmt.Errorf("%s %s: rewind body: %w", op, key, err)
		}
		var err error
		etag, err = r.b.UploadPart(ctx, key, uploadID, number, rs, size, opts)
		return err
	})
	return etag, err
}

func (r *bucket) ListParts(ctx context.Context, key, uploadID string) ([]backends.Part, error) {
	var parts []backends.Part
	err := r.do(ctx, "list parts of", key, true, func(ctx context.Context) error {
		var err error
		parts, err = r.b.ListParts(ctx, key, uploadID)
		return err
	})
	return parts, err
}

// CompleteMultipart retries like any small call. A retry after a try that
// did complete the upload on the store fails with ErrNoSuchUpload; the
// caller can then Stat the key.
func (r *bucket) CompleteMultipart(ctx context.Context, key, uploadID string, parts []backends.Part) (backends.ObjectInfo, error) {
	var oi backends.ObjectInfo
	err := r.do(ctx, "complete multipart upload of", key, true, func(ctx context.Context) error {
		var err error
		oi, err = r.b.CompleteMultipart(ctx, key, uploadID, parts)
		return err
	})
	return oi, err
}

func (r *bucket) AbortMultipart(ctx context.Context, key, uploadID string) error {
	return r.do(ctx, "abort multipart upload of", key, true, func(ctx context.Context) error {
		return r.b.AbortMultipart(ctx, key, uploadID)
	})
}

func (r *bucket) ObjectLockEnabled(ctx context.Context) (bool, error) {
	var on bool
	err := r.do(ctx, "get object lock configuration of", r.b.Name(), true, func(ctx context.Context) error {
		var err error
		on, err = r.b.ObjectLockEnabled(ctx)
		return err
	})
	return on, err
}

// ExtendRetention retries like any small call: setting the same date
// again is harmless.
func (r *bucket) ExtendRetention(ctx context.Context, key, versionID string, mode backends.LockMode, until time.Time) error {
	return r.do(ctx, "extend retention of", key, true, func(ctx context.Context) error {
		return r.b.ExtendRetention(ctx, key, versionID, mode, until)
	})
}

func (r *bucket) Delete(ctx context.Context, key, versionID string) error {
	return r.do(ctx, "delete", key, true, func(ctx context.Context) error {
		return r.b.Delete(ctx, key, versionID)
	})
}
