package replicator

import (
	"strings"

	"github.com/voyageur-ca/voyageur/crypto"
)

// markerLeaf names the replica of a folder marker (a key ending in "/") in
// an encrypted job with plain names (docs/FORMAT.md §8). The replica of
// "folder/" is not stored at "folder/": an encrypted replica has bytes,
// and stores that keep objects as files (versitygw's POSIX backend, the fs
// backend) hold a key ending in "/" as a directory, which holds none. It is
// "folder/.voyageur-folder", a file inside that directory. To keep the
// mapping one to one, a key whose last segment starts with markerLeaf gets
// one more markerLeaf in front of that segment.
const markerLeaf = ".voyageur-folder"

// plainName is the replica name of rel (a key relative to the source
// prefix) with plain names: rel itself, except in encrypted jobs, where
// folder markers and the keys that could be mistaken for their replicas
// are escaped (markerLeaf).
func (job *Job) plainName(rel string) string {
	if job.Encryption == nil {
		return rel
	}
	dir, leaf := splitLeaf(rel)
	if leaf == "" || strings.HasPrefix(leaf, markerLeaf) {
		return dir + markerLeaf + leaf
	}
	return rel
}

// PlainKey is the key, relative to the source prefix, of a replica name
// (relative to the destination prefix) with plain names: it undoes
// plainName.
func (job *Job) PlainKey(name string) string {
	if job.Encryption == nil {
		return name
	}
	dir, leaf := splitLeaf(name)
	if strings.HasPrefix(leaf, markerLeaf) {
		return dir + strings.TrimPrefix(leaf, markerLeaf)
	}
	return name
}

// splitLeaf splits a key after its last "/".
func splitLeaf(key string) (dir, leaf string) {
	i := strings.LastIndexByte(key, '/')
	return key[:i+1], key[i+1:]
}

// DestKey maps a source key to its replica's key.
func (job *Job) DestKey(key string) string {
	if e := job.Encryption; e != nil && e.HashedNames {
		return job.DestPrefix + crypto.HashedName(e.NameSecret, key)
	}
	return job.DestPrefix + job.plainName(strings.TrimPrefix(key, job.SourcePrefix))
}

// ReservedPrefix, below a job's destination prefix, holds voyageur's own
// objects (the drill reports of docs/disaster-recovery.md), never replicas:
// the catalog (restore, ls, verify, drill) and the journal rebuild skip it.
// Hashed names never fall in it; with plain names, a source key starting
// with it (below the source prefix) would be hidden, so it is reserved.
const ReservedPrefix = ".voyageur/"

// Reserved reports whether a destination key is in the job's reserved
// prefix.
func (job *Job) Reserved(destKey string) bool {
	return strings.HasPrefix(destKey, job.DestPrefix+ReservedPrefix)
}
