package main

import (
	"os"
	"runtime/debug"

	"github.com/voyageur-ca/voyageur/replicator"
)

// memoryHeadroom is what a run holds besides its jobs' transfer buffers:
// zstd encoders, HTTP connections, listing pages, journal transactions.
// The buffers are counted by the budget, recycled and freed as parts are
// acknowledged, so the collector needs little room beyond them.
const memoryHeadroom = 32 << 20

// limitMemory sets the Go runtime's soft memory limit from the jobs'
// transfer.memory budgets: the sum for jobs that run together (watch), the
// largest for jobs that run one after the other (sync). The budget bounds
// the live buffers; without a limit the collector lets the heap grow to
// twice them. An explicit GOMEMLIMIT wins.
func limitMemory(jobs []replicator.Job, together bool) {
	if os.Getenv("GOMEMLIMIT") != "" || len(jobs) == 0 {
		return
	}
	var budget int64
	for _, j := range jobs {
		t := j.Transfer
		if t.Normalize(j.Encryption != nil) != nil {
			return // the run reports it
		}
		if together {
			budget += t.Memory
		} else {
			budget = max(budget, t.Memory)
		}
	}
	debug.SetMemoryLimit(budget + memoryHeadroom)
}
