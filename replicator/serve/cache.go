package serve

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/voyageur-ca/voyageur/backends"
	"github.com/voyageur-ca/voyageur/crypto"
	"github.com/voyageur-ca/voyageur/replicator"
	"github.com/voyageur-ca/voyageur/replicator/recovery"
)

// store is the bbolt file holding the served jobs' catalogs, so that a
// catalog costs disk (and page cache), not heap, whatever its size: a
// listing page is a cursor seek, a GET a lookup. It is serve's own file
// (not the sync journal, which may be gone in a disaster), kept across
// runs so that a restart reads only the META of replica versions it has
// not seen; or a temporary file of this run only. It holds original keys
// and metadata in clear, so the file is private to its owner.
type store struct {
	db      *bbolt.DB
	tempDir string // removed on close: the file is this run's only
}

// ErrCacheLocked says that another serve holds the cache file.
var ErrCacheLocked = errors.New("the catalog cache is used by another voyageur serve")

// oldMetaPrefix names the buckets of the cache's previous layout (META by
// replica version only, the catalog in memory): superseded, dropped.
const oldMetaPrefix = "meta\x00"

// openStore opens (or creates) the cache file.
func openStore(path string) (*store, error) {
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
	err = db.Update(func(tx *bbolt.Tx) error {
		var old [][]byte
		if err := tx.ForEach(func(name []byte, _ *bbolt.Bucket) error {
			if bytes.HasPrefix(name, []byte(oldMetaPrefix)) {
				old = append(old, bytes.Clone(name))
			}
			return nil
		}); err != nil {
			return err
		}
		for _, name := range old {
			if err := tx.DeleteBucket(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("catalog cache %s: drop the previous layout: %w", path, err)
	}
	return &store{db: db}, nil
}

// openTempStore creates a store for this run only, when there is no cache
// file to use.
func openTempStore() (*store, error) {
	dir, err := os.MkdirTemp("", "voyageur-serve-")
	if err != nil {
		return nil, fmt.Errorf("temporary catalog file: %w", err)
	}
	db, err := bbolt.Open(filepath.Join(dir, "catalog.db"), 0o600, nil)
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("temporary catalog file: %w", err)
	}
	// Lost with the process anyway: no commit needs to reach the disk.
	db.NoSync = true
	return &store{db: db, tempDir: dir}, nil
}

func (s *store) close() error {
	err := s.db.Close()
	if s.tempDir != "" {
		if rerr := os.RemoveAll(s.tempDir); err == nil {
			err = rerr
		}
	}
	return err
}

// Inside a job's bucket: the replica versions in the catalog by version
// key (destination order, the order a load lists them in), the served
// objects by key, the keys that several replicas claim, and the count of
// served objects.
var (
	replicasBucket  = []byte("replicas")  // versionKey → META (JSON)
	keysBucket      = []byte("keys")      // served key → recovery.Replica (JSON)
	conflictsBucket = []byte("conflicts") // served key → []recovery.Replica (JSON), two or more
	objectsKey      = []byte("objects")   // uint64
)

// catalog is one job's catalog in the store.
type catalog struct {
	db     *bbolt.DB
	name   []byte
	prefix string // the job's source prefix: a served key is the original key below it
}

// catalogOf names a job's catalog in the file by the job and where its
// replica is, so that a job pointed elsewhere, or that serves another
// source prefix or point in time, starts afresh.
func (s *store) catalogOf(job replicator.Job, asOf time.Time) *catalog {
	name := "catalog\x00" + job.Name + "\x00" + job.Dest.Name() + "\x00" + job.DestPrefix + "\x00" + job.SourcePrefix
	if !asOf.IsZero() {
		name += "\x00as-of " + asOf.UTC().Format(time.RFC3339Nano)
	}
	return &catalog{db: s.db, name: []byte(name), prefix: job.SourcePrefix}
}

// versionKey names one replica version as a listing shows it; its order
// is the destination key order.
func versionKey(key, versionID, etag string) []byte {
	return []byte(key + "\x00" + versionID + "\x00" + etag)
}

func repVersionKey(r *recovery.Replica) []byte { return versionKey(r.DestKey, r.VersionID, r.ETag) }

// known returns the META of a listed replica version already in the
// catalog: a load reads META only for versions it has not seen.
func (c *catalog) known(obj backends.ObjectInfo) (crypto.Meta, bool) {
	var m crypto.Meta
	found := false
	_ = c.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(c.name)
		if b == nil {
			return nil
		}
		if v := b.Bucket(replicasBucket).Get(versionKey(obj.Key, obj.VersionID, obj.ETag)); v != nil {
			found = json.Unmarshal(v, &m) == nil
		}
		return nil
	})
	return m, found
}

// view runs fn on the served keys in one read transaction; keys is nil
// while the catalog was never written.
func (c *catalog) view(fn func(keys *bbolt.Bucket) error) error {
	return c.db.View(func(tx *bbolt.Tx) error {
		var keys *bbolt.Bucket
		if b := tx.Bucket(c.name); b != nil {
			keys = b.Bucket(keysBucket)
		}
		return fn(keys)
	})
}

// find returns the served object at key.
func (c *catalog) find(key string) (*entry, bool, error) {
	var e *entry
	err := c.view(func(keys *bbolt.Bucket) error {
		if keys == nil || key == "" {
			return nil
		}
		v := keys.Get([]byte(key))
		if v == nil {
			return nil
		}
		e = &entry{key: key}
		return json.Unmarshal(v, &e.rep)
	})
	if err != nil {
		return nil, false, fmt.Errorf("catalog lookup of %s: %w", key, err)
	}
	return e, e != nil, nil
}

// objects is the number of served objects.
func (c *catalog) objects() (int64, error) {
	var n int64
	err := c.db.View(func(tx *bbolt.Tx) error {
		if b := tx.Bucket(c.name); b != nil {
			if v := b.Get(objectsKey); len(v) == 8 {
				n = int64(binary.BigEndian.Uint64(v))
			}
		}
		return nil
	})
	return n, err
}

// conflicts returns each key that several replicas claim, with their
// names.
func (c *catalog) conflicts() (map[string][]string, error) {
	out := map[string][]string{}
	err := c.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(c.name)
		if b == nil {
			return nil
		}
		return b.Bucket(conflictsBucket).ForEach(func(k, v []byte) error {
			var reps []recovery.Replica
			if err := json.Unmarshal(v, &reps); err != nil {
				return err
			}
			for _, r := range reps {
				out[string(k)] = append(out[string(k)], r.DestKey)
			}
			return nil
		})
	})
	return out, err
}

// update is one load's write transaction on the catalog.
type update struct {
	replicas, keys, conflicts *bbolt.Bucket
	top                       *bbolt.Bucket
	objects                   int64
	prefix                    string
	// claimed are keys that a second replica claimed in this
	// transaction: the load logs them.
	claimed []string
}

func (c *catalog) update(fn func(u *update) error) error {
	return c.db.Update(func(tx *bbolt.Tx) error {
		top, err := tx.CreateBucketIfNotExists(c.name)
		if err != nil {
			return err
		}
		u := &update{top: top, prefix: c.prefix}
		for _, nb := range []struct {
			name []byte
			b    **bbolt.Bucket
		}{{replicasBucket, &u.replicas}, {keysBucket, &u.keys}, {conflictsBucket, &u.conflicts}} {
			if *nb.b, err = top.CreateBucketIfNotExists(nb.name); err != nil {
				return err
			}
		}
		if v := top.Get(objectsKey); len(v) == 8 {
			u.objects = int64(binary.BigEndian.Uint64(v))
		}
		if err := fn(u); err != nil {
			return err
		}
		return top.Put(objectsKey, binary.BigEndian.AppendUint64(nil, uint64(u.objects)))
	})
}

// add puts a replica version that is not in the catalog yet under its
// served key. A replica of the same name (a newer version of it) replaces
// the one there; a replica of another name that claims the same key
// makes the key a conflict, served by neither: nothing tells which one
// the job wrote.
func (u *update) add(rep recovery.Replica, key string) error {
	meta, err := json.Marshal(rep.Meta)
	if err != nil {
		return err
	}
	if err := u.replicas.Put(repVersionKey(&rep), meta); err != nil {
		return err
	}
	k := []byte(key)
	if v := u.conflicts.Get(k); v != nil {
		var reps []recovery.Replica
		if err := json.Unmarshal(v, &reps); err != nil {
			return err
		}
		if reps, err = u.replace(reps, rep); err != nil {
			return err
		}
		return putJSON(u.conflicts, k, reps)
	}
	if v := u.keys.Get(k); v != nil {
		var old recovery.Replica
		if err := json.Unmarshal(v, &old); err != nil {
			return err
		}
		if old.DestKey == rep.DestKey {
			if err := u.replicas.Delete(repVersionKey(&old)); err != nil {
				return err
			}
			return putJSON(u.keys, k, rep)
		}
		if err := u.keys.Delete(k); err != nil {
			return err
		}
		u.objects--
		u.claimed = append(u.claimed, key)
		return putJSON(u.conflicts, k, []recovery.Replica{old, rep})
	}
	u.objects++
	return putJSON(u.keys, k, rep)
}

// replace adds rep to the replicas claiming a key, in place of an older
// version of the same name.
func (u *update) replace(reps []recovery.Replica, rep recovery.Replica) ([]recovery.Replica, error) {
	for i := range reps {
		if reps[i].DestKey == rep.DestKey {
			if err := u.replicas.Delete(repVersionKey(&reps[i])); err != nil {
				return nil, err
			}
			reps[i] = rep
			return reps, nil
		}
	}
	return append(reps, rep), nil
}

// remove takes a replica version out of the catalog: its key is no
// longer served, or served by the one replica left claiming it.
func (u *update) remove(vk, meta []byte) error {
	var m crypto.Meta
	if err := json.Unmarshal(meta, &m); err != nil {
		return err
	}
	if err := u.replicas.Delete(vk); err != nil {
		return err
	}
	key, _ := strings.CutPrefix(m.Key, u.prefix)
	k := []byte(key)
	if v := u.keys.Get(k); v != nil {
		var r recovery.Replica
		if err := json.Unmarshal(v, &r); err != nil {
			return err
		}
		if !bytes.Equal(repVersionKey(&r), vk) {
			return nil
		}
		u.objects--
		return u.keys.Delete(k)
	}
	v := u.conflicts.Get(k)
	if v == nil {
		return nil
	}
	var reps []recovery.Replica
	if err := json.Unmarshal(v, &reps); err != nil {
		return err
	}
	kept := reps[:0]
	for _, r := range reps {
		if !bytes.Equal(repVersionKey(&r), vk) {
			kept = append(kept, r)
		}
	}
	switch len(kept) {
	case 0:
		return u.conflicts.Delete(k)
	case 1:
		if err := u.conflicts.Delete(k); err != nil {
			return err
		}
		u.objects++
		return putJSON(u.keys, k, kept[0])
	}
	return putJSON(u.conflicts, k, kept)
}

// removeBetween removes the replica versions after from and before to
// (nil: no bound), in destination order: those a load passed without
// listing them. It deletes in rounds, seeking again after each, as a
// bbolt cursor must not be used across changes to its bucket.
func (u *update) removeBetween(from, to []byte) error {
	const round = 1024
	for {
		var stale [][2][]byte
		c := u.replicas.Cursor()
		k, v := c.First()
		if from != nil {
			if k, v = c.Seek(from); k != nil && bytes.Equal(k, from) {
				k, v = c.Next()
			}
		}
		for ; k != nil && (to == nil || bytes.Compare(k, to) < 0) && len(stale) < round; k, v = c.Next() {
			stale = append(stale, [2][]byte{bytes.Clone(k), bytes.Clone(v)})
		}
		for _, kv := range stale {
			if err := u.remove(kv[0], kv[1]); err != nil {
				return err
			}
		}
		if len(stale) < round {
			return nil
		}
	}
}

func putJSON(b *bbolt.Bucket, k []byte, v any) error {
	p, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(k, p)
}

// listed is one replica a load listed, with its served key.
type listed struct {
	rep recovery.Replica
	key string
}

// merge brings the catalog to one load's listing, batch by batch, in
// destination order: a listed version the catalog holds is left as it is,
// one it lacks is added, and the versions the listing passed without
// naming are removed. So a refresh writes what changed, not the catalog,
// and needs no memory of what it saw beyond where it is. A listing out of
// order is still merged right (an out-of-order version is looked up and
// added again if removed), only with more writes.
type merge struct {
	c   *catalog
	pos []byte // version key of the last version listed; nil before the first
}

// apply merges the next batch of the listing and returns the keys that a
// second replica claimed.
func (m *merge) apply(batch []listed) ([]string, error) {
	if len(batch) == 0 {
		return nil, nil
	}
	unchanged, err := m.unchanged(batch)
	if err != nil {
		return nil, err
	}
	if unchanged {
		m.pos = repVersionKey(&batch[len(batch)-1].rep)
		return nil, nil
	}
	var claimed []string
	err = m.c.update(func(u *update) error {
		for _, l := range batch {
			vk := repVersionKey(&l.rep)
			if m.pos == nil || bytes.Compare(vk, m.pos) > 0 {
				if err := u.removeBetween(m.pos, vk); err != nil {
					return err
				}
				m.pos = vk
			}
			if u.replicas.Get(vk) != nil {
				continue
			}
			if err := u.add(l.rep, l.key); err != nil {
				return err
			}
		}
		claimed = u.claimed
		return nil
	})
	return claimed, err
}

// unchanged reports whether the catalog holds, after pos, exactly the
// versions of batch and none between them: a refresh that finds nothing
// new then reads, and writes (and syncs) nothing.
func (m *merge) unchanged(batch []listed) (bool, error) {
	same := false
	err := m.c.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(m.c.name)
		if b == nil {
			return nil
		}
		c := b.Bucket(replicasBucket).Cursor()
		k, _ := m.seekAfterPos(c)
		for _, l := range batch {
			if !bytes.Equal(k, repVersionKey(&l.rep)) {
				return nil
			}
			k, _ = c.Next()
		}
		same = true
		return nil
	})
	return same, err
}

// seekAfterPos moves c to the first version after pos.
func (m *merge) seekAfterPos(c *bbolt.Cursor) ([]byte, []byte) {
	if m.pos == nil {
		return c.First()
	}
	k, v := c.Seek(m.pos)
	if bytes.Equal(k, m.pos) {
		return c.Next()
	}
	return k, v
}

// finish removes what the listing did not reach: versions after its last.
func (m *merge) finish() error {
	rest := true
	if err := m.c.db.View(func(tx *bbolt.Tx) error {
		if b := tx.Bucket(m.c.name); b != nil {
			k, _ := m.seekAfterPos(b.Bucket(replicasBucket).Cursor())
			rest = k != nil
		}
		return nil
	}); err != nil || !rest {
		return err
	}
	return m.c.update(func(u *update) error { return u.removeBetween(m.pos, nil) })
}
