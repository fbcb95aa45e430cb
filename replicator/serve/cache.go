package serve

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/voyageur-ca/voyageur/backends"
	"github.com/voyageur-ca/voyageur/crypto"
	"github.com/voyageur-ca/voyageur/replicator"
)

// metaCache keeps the META of the encrypted replica versions read so far,
// in a bbolt file of serve's own (not the sync journal, which may be gone
// in a disaster): a restart or a refresh lists the destination and reads
// only the META of versions it has not seen. It holds original keys and
// metadata in clear, so the file is private to its owner.
type metaCache struct{ db *bbolt.DB }

// ErrCacheLocked says that another serve holds the cache file.
var ErrCacheLocked = errors.New("the catalog cache is used by another voyageur serve")

// openMetaCache opens (or creates) the cache file.
func openMetaCache(path string) (*metaCache, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("catalog cache %s: %w", path, err)
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: 2 * time.Second})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("catalog cache %s: %w", path, ErrCacheLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("catalog cache %s: %w", path, err)
	}
	return &metaCache{db: db}, nil
}

func (c *metaCache) close() error { return c.db.Close() }

// bucketOf names a job's bucket in the file: the job and where its replica
// is, so that a job pointed at another destination starts afresh.
func bucketOf(job replicator.Job) []byte {
	return []byte("meta\x00" + job.Name + "\x00" + job.Dest.Name() + "\x00" + job.DestPrefix)
}

// versionKey names one replica version as a listing shows it.
func versionKey(key, versionID, etag string) []byte {
	return []byte(key + "\x00" + versionID + "\x00" + etag)
}

// known returns the cached META of a listed replica version.
func (c *metaCache) known(job replicator.Job) func(backends.ObjectInfo) (crypto.Meta, bool) {
	name := bucketOf(job)
	return func(obj backends.ObjectInfo) (crypto.Meta, bool) {
		var m crypto.Meta
		found := false
		_ = c.db.View(func(tx *bbolt.Tx) error {
			b := tx.Bucket(name)
			if b == nil {
				return nil
			}
			if v := b.Get(versionKey(obj.Key, obj.VersionID, obj.ETag)); v != nil {
				found = json.Unmarshal(v, &m) == nil
			}
			return nil
		})
		return m, found
	}
}

// store records the META of a loaded catalog. With prune (a catalog of the
// current state), versions no longer listed are forgotten.
func (c *metaCache) store(job replicator.Job, entries []entry, prune bool) error {
	return c.db.Update(func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketOf(job))
		if err != nil {
			return err
		}
		seen := make(map[string]bool, len(entries))
		for _, e := range entries {
			k := versionKey(e.rep.DestKey, e.rep.VersionID, e.rep.ETag)
			seen[string(k)] = true
			if b.Get(k) != nil {
				continue
			}
			v, err := json.Marshal(e.rep.Meta)
			if err != nil {
				return err
			}
			if err := b.Put(k, v); err != nil {
				return err
			}
		}
		if !prune {
			return nil
		}
		var stale [][]byte
		if err := b.ForEach(func(k, _ []byte) error {
			if !seen[string(k)] {
				stale = append(stale, append([]byte(nil), k...))
			}
			return nil
		}); err != nil {
			return err
		}
		for _, k := range stale {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
}
