package engine

import (
	"log/slog"
	"time"

	"github.com/voyageur-ca/voyageur/replicator"
)

// Options are per-run settings.
type Options struct {
	// DryRun plans and reports without writing to the destination or the
	// journal.
	DryRun bool
	Logger *slog.Logger
	// Counters, when not nil, are the ones the run counts into, for a
	// caller to read while it goes (a progress bar); nil: its own.
	Counters *replicator.Counters
	// Observer, when not nil, is told of every replicated, deleted and
	// failed object (metrics).
	Observer Observer
}

// Observer is told what replication does, for metrics. Its methods are
// called from many goroutines.
type Observer interface {
	// Replicated reports a replica made durable; eventTime is when the
	// change happened at the source (zero when not known, e.g. a scan).
	Replicated(job string, bytes int64, eventTime time.Time)
	Deleted(job string)
	Failed(job string)
	// Reconciled reports a complete reconcile scan.
	Reconciled(job string, at time.Time)
}
