package replicator

import "strings"

// ReservedPrefix, below a job's destination prefix, holds voyageur's own
// objects (the drill reports of docs/disaster-recovery.md), never replicas:
// the catalog (restore, ls, verify, drill) and the journal rebuild skip it.
// Hashed names never fall in it; with plain names, a source key starting
// with it (below the source prefix) would be hidden, so it is reserved.
const ReservedPrefix = ".voyageur/"

// reserved reports whether a destination key is in the job's reserved
// prefix.
func (job *Job) reserved(destKey string) bool {
	return strings.HasPrefix(destKey, job.DestPrefix+ReservedPrefix)
}
