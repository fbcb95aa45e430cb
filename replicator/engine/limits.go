package engine

import (
	"github.com/voyageur-ca/voyageur/crypto"
	"github.com/voyageur-ca/voyageur/replicator"
	"github.com/voyageur-ca/voyageur/replicator/multipart"
)

// newLimits returns the run's memory budget, transfer slots and wire
// limit. The buffer classes are the job's part size and, encrypted, its
// compressed bound: the sizes a long run allocates over and over.
func newLimits(job replicator.Job) *multipart.Limits {
	t := job.Transfer
	classes := []int64{t.PartSize}
	if job.Encryption != nil {
		classes = append(classes, crypto.CompressedBound(t.PartSize))
	}
	return multipart.NewLimits(t.Memory, t.Concurrency, replicator.NewLimiter(t.Bandwidth), classes...)
}
