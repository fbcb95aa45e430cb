package engine

import (
	"context"
	"crypto/hmac"
	"fmt"
	"time"

	"github.com/voyageur-ca/voyageur/backends"
	"github.com/voyageur-ca/voyageur/crypto"
	"github.com/voyageur-ca/voyageur/journal"
	"github.com/voyageur-ca/voyageur/replicator"
)

// reasonRebuild marks the changes of a scan that rebuilds a lost index:
// before copying, the worker looks for an up-to-date replica.
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
