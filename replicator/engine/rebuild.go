package engine

import (
	"context"
	"crypto/hmac"
	"encoding/hex"
	"fmt"
	"hash/maphash"
	"slices"
	"strings"
	"time"

	"github.com/voyageur-ca/voyageur/backends"
	"github.com/voyageur-ca/voyageur/crypto"
	"github.com/voyageur-ca/voyageur/journal"
	"github.com/voyageur-ca/voyageur/replicator"
)

// reasonRebuild marks the changes of a scan that rebuilds a lost index:
// before copying, the worker looks for an up-to-date replica. It also
// marks the deletes of replicas whose source key was gone before the
// index was (addOrphans).
const reasonRebuild = "rebuild"

// valueRebuild is set from the start of a rebuild until a scan completes,
// so that a rebuild interrupted mid-listing goes on at the next run.
const valueRebuild = "rebuild"

// fingerprint names the source object's state as this job stores it: the
// same facts upToDate compares, and the recipients. It is "" when the job
// writes none.
func (r *run) fingerprint(info backends.ObjectInfo) string {
	if r.fpKey == nil {
		return ""
	}
	return crypto.Fingerprint(r.fpKey, r.fpFormat, info.Key, info.Size, info.ETag)
}

// rebuilding reports whether this scan rebuilds the index from the
// destination: an earlier rebuild did not finish its scan, or the index is
// empty (a first sync, or a lost journal) while the destination prefix
// holds objects. A dry run writes nothing, so it never rebuilds.
func (r *run) rebuilding(ctx context.Context) (bool, error) {
	if r.opts.DryRun {
		return false, nil
	}
	if v, err := r.jb.Value(valueRebuild); err != nil || len(v) > 0 {
		return len(v) > 0, err
	}
	if n, err := r.jb.IndexCount(); err != nil || n > 0 {
		return false, err
	}
	found := false
	for obj, err := range r.job.Dest.List(ctx, backends.ListOptions{Prefix: r.job.DestPrefix}) {
		if err != nil {
			return false, fmt.Errorf("list destination %s/%s: %w", r.job.Dest.Name(), r.job.DestPrefix, err)
		}
		if r.job.Reserved(obj.Key) {
			continue
		}
		found = true
		break // one replica is enough to know
	}
	switch {
	case !found:
		return false, nil
	case r.fpKey == nil:
		// Watch scans again and again while its source is empty: once
		// per run is enough.
		r.noFingerprints.Do(func() {
			r.log.Warn("journal rebuilt without fingerprints: every object will be re-sent",
				"why", "an encrypted job keys fingerprints with its name secret, and this one has no name_secret_file")
		})
		return false, nil
	}
	r.log.Info("the journal has no index for this job and the destination holds replicas: rebuilding the index from their fingerprints")
	return true, r.jb.SetValue(valueRebuild, []byte{1})
}

// adopt records the replica at the destination as the index entry of
// c.Key when its fingerprint says it holds info as this job stores it, and
// reports whether it did. A missing replica, one without a fingerprint
// (written by an older voyageur) or with another one is copied again.
func (r *run) adopt(ctx context.Context, c journal.Change, info backends.ObjectInfo) (bool, error) {
	want := r.fingerprint(info)
	if want == "" {
		return false, nil
	}
	destKey := r.job.DestKey(c.Key)
	obj, err := r.job.Dest.Stat(ctx, destKey, "")
	if backends.IsNotExist(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if !hmac.Equal([]byte(obj.Metadata[replicator.FingerprintMeta]), []byte(want)) {
		r.log.Debug("replica has no matching fingerprint, copying again", "key", c.Key)
		return false, nil
	}
	err = r.jb.Complete(c, journal.Record{
		SourceETag: info.ETag, SourceVersion: info.VersionID, Size: info.Size, MTime: info.LastModified,
		DestKey: destKey, DestETag: obj.ETag, DestVersion: obj.VersionID, ReplicatedAt: time.Now().UTC(),
		Format: r.format(),
	})
	if err != nil {
		return false, err
	}
	r.adopted.Add(1)
	r.count.Skipped.Add(1)
	r.count.Done(0)
	return true, nil
}

// replicaNames holds the replica names a rebuild's listing accounts for:
// those of the source keys it listed and of the index entries it met. A
// replica of the run's range named otherwise has lost its source key. A
// name is held as a 64-bit hash, 8 bytes a key: a collision only keeps a
// replica that could have been deleted.
type replicaNames struct {
	seed maphash.Seed
	sums []uint64
}

func newReplicaNames() *replicaNames { return &replicaNames{seed: maphash.MakeSeed()} }

func (n *replicaNames) add(name string) { n.sums = append(n.sums, maphash.String(n.seed, name)) }

// has is valid once sort has run.
func (n *replicaNames) has(name string) bool {
	_, ok := slices.BinarySearch(n.sums, maphash.String(n.seed, name))
	return ok
}

func (n *replicaNames) sort() { slices.Sort(n.sums) }

// findsOrphans reports whether a rebuild looks for replicas whose source
// key was deleted before the journal was (a lost journal, or the fresh
// journals of a new shard layout): no index remembers those keys, so no
// scan would ever queue their deletes. It must tell each replica's key,
// or that no key of the source has it: plain names give the key, hashed
// names only the latter, so a run with hashed names lists the whole
// source (a shard lists the other shards' ranges too, see nameOthers). A
// watch copies the keys of its events during the scan, whose replicas a
// hashed name would not tell from orphans (a plain one is checked against
// the source before its delete): with hashed names it deletes none.
func (r *run) findsOrphans() bool {
	if r.job.Deletes != replicator.DeletesPropagate {
		return false
	}
	if e := r.job.Encryption; e != nil && e.HashedNames && r.kick != nil {
		r.log.Warn("this rebuild cannot tell which replicas with hashed names lost their source key: "+
			"keys deleted at the source before this journal existed keep their replicas "+
			"(a verify lists them as extra; a sync on a fresh journal deletes them)", "shard", r.shardName())
		return false
	}
	return true
}

// orphanSlice is where a shard with hashed names looks for orphans: its
// share of the replica name space, which hashed names spread evenly, as
// sharded restore and verify split it. Every replica is in one shard's.
func (r *run) orphanSlice() replicator.KeyRange {
	s := r.job.Shard.Shard
	return replicator.EvenLayout(r.job.DestPrefix, s.Count, replicator.HexDigits).Range(s.Index)
}

// nameOthers adds to names the replica names of the source keys outside
// the shard's range, so that a shard with hashed names knows every name a
// source key gives. The other shards may be copying while it lists: a key
// created after the listing passed it has a replica named by no key listed.
// It returns the destination's clock before the listing began (an empty
// object put under the reserved prefix, and removed): only a replica
// written before then can be an orphan.
func (r *run) nameOthers(ctx context.Context, names *replicaNames) (time.Time, error) {
	mark := time.Now() // a dry run writes nothing, not even the clock object
	if !r.opts.DryRun {
		var err error
		if mark, err = r.destClock(ctx); err != nil {
			return time.Time{}, err
		}
	}
	rng := r.keyRange()
	list := func(after string, stop func(string) bool) error {
		for obj, err := range r.job.Source.List(ctx, backends.ListOptions{Prefix: r.job.SourcePrefix, StartAfter: after}) {
			if err != nil {
				return fmt.Errorf("list source %s/%s: %w", r.job.Source.Name(), r.job.SourcePrefix, err)
			}
			if stop(obj.Key) {
				return nil
			}
			names.add(r.job.DestKey(obj.Key))
		}
		return nil
	}
	if rng.After != "" {
		if err := list("", func(k string) bool { return k > rng.After }); err != nil {
			return time.Time{}, err
		}
	}
	if rng.Bounded {
		if err := list(rng.Upto, func(string) bool { return false }); err != nil {
			return time.Time{}, err
		}
	}
	return mark, nil
}

// destClock returns the destination's time now, as the Last-Modified of an
// empty object it stores under the reserved prefix (then deleted): the
// replicas' times are the destination's, and this host's clock may differ.
func (r *run) destClock(ctx context.Context) (time.Time, error) {
	key := r.job.DestPrefix + replicator.ReservedPrefix + "clock/" + strings.ReplaceAll(r.shardName(), "/", "-of-")
	if _, err := r.job.Dest.Put(ctx, key, strings.NewReader(""), 0, backends.PutOptions{ContentType: "application/octet-stream"}); err != nil {
		return time.Time{}, fmt.Errorf("read the destination's clock (put %s): %w", key, err)
	}
	info, err := r.job.Dest.Stat(ctx, key, "")
	if err != nil {
		return time.Time{}, fmt.Errorf("read the destination's clock (stat %s): %w", key, err)
	}
	if err := r.job.Dest.Delete(ctx, key, ""); err != nil {
		r.log.Warn("could not remove the clock object", "key", key, "err", err)
	}
	return info.LastModified, nil
}

// addOrphans adds to p the replicas of the run's range that names does
// not account for, after a complete listing: their source key is gone.
// A replica whose key cannot be told (a plain name that no source key
// maps to, a name not of the hashed form) is never a candidate, nor an
// object without a fingerprint. It costs a listing of the range and a
// HEAD per candidate; a shard with hashed names lists the rest of the
// source too, and looks in its slice of the replica names.
func (r *run) addOrphans(ctx context.Context, p *deletePlan, names *replicaNames) error {
	indexed, err := r.jb.IndexCount()
	if err != nil {
		return err
	}
	hashed := r.job.Encryption != nil && r.job.Encryption.HashedNames
	rng := r.keyRange().Mapped(r.job.SourcePrefix, r.job.DestPrefix)
	var before time.Time // zero: no other writer, any replica may be one
	if hashed && !r.keyRange().Whole() {
		if before, err = r.nameOthers(ctx, names); err != nil {
			return err
		}
		rng = r.orphanSlice()
	}
	names.sort()
	for obj, lerr := range r.job.Dest.List(ctx, backends.ListOptions{Prefix: r.job.DestPrefix, StartAfter: rng.After}) {
		if lerr != nil {
			return fmt.Errorf("list destination %s/%s: %w", r.job.Dest.Name(), r.job.DestPrefix, lerr)
		}
		if rng.Past(obj.Key) {
			break
		}
		if r.job.Reserved(obj.Key) || names.has(obj.Key) {
			continue
		}
		key := ""
		if hashed {
			if !hashedName(strings.TrimPrefix(obj.Key, r.job.DestPrefix)) {
				continue
			}
		} else if key = r.replicaOf(obj.Key); key == "" {
			continue
		}
		// Every replica voyageur writes carries a fingerprint; an object
		// without one was put under the prefix by other means (or by a
		// voyageur older than fingerprints) and is not known to be a
		// replica.
		info, err := r.job.Dest.Stat(ctx, obj.Key, "")
		if backends.IsNotExist(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("stat replica %s/%s: %w", r.job.Dest.Name(), obj.Key, err)
		}
		if _, ok := info.Metadata[replicator.FingerprintMeta]; !ok {
			continue
		}
		if !before.IsZero() && !info.LastModified.Before(before) {
			continue // maybe another shard's copy of a key created since
		}
		p.addOrphan(r, indexed, key, obj.Key)
	}
	return nil
}

// replicaOf returns the source key of this run whose plain replica is
// named destKey, "" when there is none: a name plainName does not make,
// or a key outside the run's range or the job's filter.
func (r *run) replicaOf(destKey string) string {
	rel := r.job.PlainKey(strings.TrimPrefix(destKey, r.job.DestPrefix))
	key := r.job.SourcePrefix + rel
	if r.job.DestKey(key) != destKey || !r.keyRange().Contains(key) || !r.job.Filter.Match(rel) {
		return ""
	}
	return key
}

// hashedName reports whether name has the form of crypto.HashedName.
func hashedName(name string) bool {
	h, ok := strings.CutSuffix(name, ".age")
	if !ok || len(h) != 64 {
		return false
	}
	_, err := hex.DecodeString(h)
	return err == nil && strings.ToLower(h) == h
}

// deleteOrphan deletes a replica with a hashed name whose source key is
// gone. Its key is unknown, so it has no change in the queue: until every
// such delete is done, the rebuild cursor stays set and the next run
// looks for them again.
func (r *run) deleteOrphan(ctx context.Context, destKey string) error {
	r.count.Queue(0)
	defer r.count.Done(0)
	r.log.Info("deleting replica: no source key has its name", "replica", destKey)
	if err := r.job.Dest.Delete(ctx, destKey, ""); err != nil {
		r.noteFailure(destKey, journal.OpDelete.String(), err)
		return err
	}
	r.count.Deleted.Add(1)
	if o := r.opts.Observer; o != nil {
		o.Deleted(r.job.Name)
	}
	return nil
}
