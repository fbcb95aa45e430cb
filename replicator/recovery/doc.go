// Package recovery is the disaster-recovery read path: it reads a job's
// replica with the destination alone, as after the loss of the source and
// of the host that ran the journal.
//
// Catalog lists the replicas with the keys, sizes and metadata their META
// frames hold (voyageur ls), Restore writes them back to a directory or a
// bucket after checking every byte, and Verify compares the replica with
// the source.
package recovery
