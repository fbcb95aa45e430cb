package events

import (
	"context"
	"strings"
	"time"

	"github.com/voyageur-ca/voyageur/journal"
)

// Event is a hint that one source key changed. Events are at-least-once,
// may come out of order and may be lost: the watcher stats the source before
// acting, coalesces events per key in the journal queue, and reconciles with
// a scan after every gap and on a timer.
type Event struct {
	Bucket    string     // source bucket the event is about ("" = the job's)
	Key       string     // source key, already URL-decoded
	Op        journal.Op // journal.OpPut or journal.OpDelete
	VersionID string
	ETag      string
	Size      int64
	// Sequencer is S3's per-key ordering token (hex); "" when absent.
	Sequencer string
	Time      time.Time // when the change happened at the source
	Source    string    // "listen", "sqs", "webhook"
}

// Intake records events durably: it returns nil only after they are
// fsync'd in the journal queue, so a source acknowledges an event (deletes
// the SQS message, answers 200) only after Intake returned nil. Events for
// other buckets, or outside the job's prefix and filters, are dropped.
type Intake func(ctx context.Context, events []Event) error

// EventSource delivers change events to a watcher.
type EventSource interface {
	// Name describes the source in logs and metrics ("listen", "sqs",
	// "webhook").
	Name() string
	// Run delivers events to intake until ctx is done, then returns nil.
	// It calls gap whenever events may have been lost (a reconnect): the
	// watcher then reconciles with a scan. It returns an error only when
	// it cannot go on (bad configuration); transient failures are retried
	// inside, with backoff.
	Run(ctx context.Context, intake Intake, gap func()) error
}

// SequencerLess reports whether S3 sequencer a is older than b. Sequencers
// are hex strings comparable only for the same key; the shorter one is
// right-padded with zeros before a string comparison. An empty sequencer is
// never less nor greater (no ordering information).
func SequencerLess(a, b string) bool {
	if a == "" || b == "" {
		return false
	}
	n := max(len(a), len(b))
	a += strings.Repeat("0", n-len(a))
	b += strings.Repeat("0", n-len(b))
	return strings.ToUpper(a) < strings.ToUpper(b)
}
