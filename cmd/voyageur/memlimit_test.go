package main

import (
	"math"
	"runtime/debug"
	"testing"

	"github.com/voyageur-ca/voyageur/replicator"
)

func TestLimitMemory(t *testing.T) {
	t.Setenv("GOMEMLIMIT", "")
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	const mib = 1 << 20
	jobs := []replicator.Job{
		{Transfer: replicator.Transfer{Memory: 100 * mib}},
		{Transfer: replicator.Transfer{Memory: 200 * mib}},
	}
	limitMemory(jobs, false)
	if got, want := debug.SetMemoryLimit(-1), int64(200*mib+memoryHeadroom); got != want {
		t.Errorf("one after the other: limit %d, want %d", got, want)
	}
	limitMemory(jobs, true)
	if got, want := debug.SetMemoryLimit(-1), int64(300*mib+memoryHeadroom); got != want {
		t.Errorf("together: limit %d, want %d", got, want)
	}
	// Defaults count as what the run will use: 64 MiB.
	limitMemory([]replicator.Job{{}}, false)
	if got, want := debug.SetMemoryLimit(-1), int64(64*mib+memoryHeadroom); got != want {
		t.Errorf("defaults: limit %d, want %d", got, want)
	}

	t.Setenv("GOMEMLIMIT", "1GiB")
	debug.SetMemoryLimit(math.MaxInt64)
	limitMemory(jobs, true)
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Errorf("GOMEMLIMIT set: the limit changed to %d", got)
	}
}
