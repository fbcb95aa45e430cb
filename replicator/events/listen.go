package events

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/voyageur-ca/voyageur/backends/minio"
	"github.com/voyageur-ca/voyageur/backends/retry"
	"github.com/voyageur-ca/voyageur/journal"
)

const (
	// defaultListenBackoff is Listen's reconnect delay base.
	defaultListenBackoff = time.Second
	// listenBackoffCap caps the reconnect delay, as a multiple of the base.
	listenBackoffCap = 32
	// listenBatch is the most events Listen hands to intake at once.
	listenBatch = 100
)

// Listen is the EventSource over a MinIO source's bucket notification
// stream (minio.Bucket.Listen). The stream is live, so Listen calls gap
// every time it is connected, the first time included: the watcher's
// reconcile covers what happened while it was not.
type Listen struct {
	Bucket *minio.Bucket // the source
	Prefix string        // only keys under it
	Logger *slog.Logger  // nil discards
	// Backoff is the base reconnect delay (default 1s). The delay doubles
	// with every connection that fails without coming up, up to 32 times
	// the base, with jitter.
	Backoff time.Duration
}

var _ EventSource = (*Listen)(nil)

// Name implements EventSource.
func (l *Listen) Name() string { return "listen" }

// Run implements EventSource. Events that arrive together go to intake in
// one call (at most 100). When intake fails, the events are dropped, the
// failure is logged and gap is called. When the stream fails or ends,
// Run logs it, waits (see Backoff) and reconnects. A nil Bucket is the
// only error.
func (l *Listen) Run(ctx context.Context, intake Intake, gap func()) error {
	if l.Bucket == nil {
		return errors.New("listen: no source bucket")
	}
	log := l.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	base := l.Backoff
	if base <= 0 {
		base = defaultListenBackoff
	}
	failures := 0
	for {
		connected, err := l.stream(ctx, log, intake, gap)
		if ctx.Err() != nil {
			return nil
		}
		if connected {
			failures = 0
		}
		failures++
		d := retry.Backoff(base, base*listenBackoffCap, failures)
		log.Warn("listen: stream failed; reconnecting", "source", l.Bucket.Name(), "err", err, "retry_in", d)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// listenItem is one item of a stream: an event, the stream's error, or
// the news that it is connected.
type listenItem struct {
	ev  Event
	err error
	up  bool
}

// stream runs one connection until it fails or ctx is done, and reports
// whether it came up.
func (l *Listen) stream(ctx context.Context, log *slog.Logger, intake Intake, gap func()) (connected bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	items := make(chan listenItem)
	go func() {
		defer close(items)
		send := func(it listenItem) bool {
			select {
			case items <- it:
				return true
			case <-ctx.Done():
				return false
			}
		}
		up := func() { send(listenItem{up: true}) }
		for ev, err := range l.Bucket.Listen(ctx, l.Prefix, up) {
			if err != nil {
				send(listenItem{err: err})
				return
			}
			if !send(listenItem{ev: toEvent(ev)}) {
				return
			}
		}
	}()
	defer func() {
		cancel()
		for range items {
		}
	}()

	var batch []Event
	flush := func() {
		if len(batch) == 0 {
			return
		}
		if err := intake(ctx, batch); err != nil && ctx.Err() == nil {
			log.Error("listen: intake failed; the events are left to a reconcile", "events", len(batch), "err", err)
			gap()
		}
		batch = nil
	}
	for {
		var it listenItem
		var ok bool
		if len(batch) == 0 {
			select {
			case it, ok = <-items:
			case <-ctx.Done():
				return connected, ctx.Err()
			}
		} else {
			select {
			case it, ok = <-items:
			default:
				flush()
				continue
			}
		}
		switch {
		case !ok:
			flush()
			return connected, ctx.Err()
		case it.up:
			connected = true
			log.Info("listen: connected", "source", l.Bucket.Name(), "prefix", l.Prefix)
			gap()
		case it.err != nil:
			flush()
			return connected, it.err
		default:
			batch = append(batch, it.ev)
			if len(batch) >= listenBatch {
				flush()
			}
		}
	}
}

// toEvent converts a stream event for the watcher.
func toEvent(ev minio.ListenEvent) Event {
	op := journal.OpPut
	if ev.Removed {
		op = journal.OpDelete
	}
	return Event{
		Key:       ev.Key,
		Op:        op,
		VersionID: ev.VersionID,
		ETag:      ev.ETag,
		Size:      ev.Size,
		Sequencer: ev.Sequencer,
		Time:      ev.Time,
		Source:    "listen",
	}
}
