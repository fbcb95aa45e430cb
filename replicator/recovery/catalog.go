package recovery

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"strings"
	"sync"
	"time"

	"filippo.io/age"

	"github.com/voyageur-ca/voyageur/backends"
	"github.com/voyageur-ca/voyageur/crypto"
	"github.com/voyageur-ca/voyageur/replicator"
)

// metaProbe is how much of a replica a META read fetches: the age header
// (at most 64 KiB) and the first two STREAM chunks, which hold all of META.
const metaProbe = 64<<10 + 2*(crypto.ChunkSize+16) + 16

// ErrNeedIdentity is returned when a replica's names or contents can only be
// read with an identity and none was given.
var ErrNeedIdentity = errors.New("encrypted replica: an identity (--identity) is needed")

// ErrNotVersioned is returned for a point-in-time listing of a destination
// that does not keep versions.
var ErrNotVersioned = errors.New("destination is not versioned")

// Replica is one object of a job's replica, as restore, ls and verify see
// it: where it is at the destination and what it is a copy of.
type Replica struct {
	DestKey      string
	VersionID    string
	ETag         string    // at the destination
	Size         int64     // bytes at the destination
	LastModified time.Time // when the destination stored it
	// Meta describes the source object: read from META for encrypted
	// replicas; for plain ones, the original key, size and time come from
	// the destination listing (content type and metadata are not listed).
	Meta crypto.Meta
}

// CatalogOptions selects replicas.
type CatalogOptions struct {
	// Prefix selects by original (source) key.
	Prefix string
	// AsOf, when set, selects per key the newest version the destination
	// stored at or before it, and skips keys whose newest version then is a
	// delete marker. It needs a versioned destination.
	AsOf time.Time
	// Identities decrypt META; needed for encrypted replicas with hashed
	// names, and for anything but names otherwise.
	Identities []age.Identity
	// Concurrency bounds the META reads in flight (0: 16).
	Concurrency int
	// KnownMeta, when set, is asked for the META of an encrypted replica
	// version before it is read: a cache (serve's) that spares the GET
	// when the version was read before. It is called concurrently.
	KnownMeta func(obj backends.ObjectInfo) (crypto.Meta, bool)
	// Range, when set, limits the catalog to one shard's destination keys:
	// the listing starts after its low key and stops past its high one.
	Range replicator.KeyRange
}

// Catalog lists the job's replica with the original key of every object,
// in destination key order. It reads META of encrypted replicas (a ranged
// GET of their first chunks each), opts.Concurrency at a time. An error
// reading one replica is yielded with that replica's DestKey and iteration
// goes on; a listing error, or a replica that none of the identities opens
// (IsWrongIdentity), is yielded with an empty DestKey and ends it.
func Catalog(ctx context.Context, job replicator.Job, opts CatalogOptions) iter.Seq2[Replica, error] {
	return func(yield func(Replica, error) bool) {
		if job.Encryption != nil && job.Encryption.HashedNames && len(opts.Identities) == 0 {
			yield(Replica{}, fmt.Errorf("list %s with hashed names: %w", job.Dest.Name(), ErrNeedIdentity))
			return
		}
		workers := opts.Concurrency
		if workers <= 0 {
			workers = 16
		}
		ctx, cancel := context.WithCancel(ctx)
		// Results come back in listing order: each listed object gets a
		// channel, queued in order, that its META read fills.
		queue := make(chan chan described, workers)
		sem := make(chan struct{}, workers)
		var wg sync.WaitGroup
		go func() {
			defer close(queue)
			for obj, err := range latestAt(ctx, job.Dest, job.DestPrefix, opts.AsOf, opts.Range) {
				if err == nil && job.Reserved(obj.Key) {
					continue
				}
				ch := make(chan described, 1)
				if err != nil {
					ch <- described{err: fmt.Errorf("list replica %s/%s: %w", job.Dest.Name(), job.DestPrefix, err)}
				} else {
					select {
					case sem <- struct{}{}:
					case <-ctx.Done():
						return
					}
					wg.Go(func() {
						defer func() { <-sem }()
						ch <- describe(ctx, job, obj, opts)
					})
				}
				select {
				case queue <- ch:
				case <-ctx.Done():
					return
				}
				if err != nil {
					return
				}
			}
		}()
		defer func() {
			cancel()
			for range queue {
			}
			wg.Wait()
		}()
		for ch := range queue {
			d := <-ch
			if d.skip {
				continue
			}
			if d.err != nil && IsWrongIdentity(d.err) {
				// The identity file is almost always the cause: every other
				// replica would fail the same way, each for a GET and a line.
				yield(Replica{}, wrongIdentity(job.Name, d.err))
				return
			}
			if !yield(d.rep, d.err) || (d.err != nil && d.rep.DestKey == "") {
				return
			}
		}
	}
}

// IsWrongIdentity reports whether err says that none of the identities
// opens a replica.
func IsWrongIdentity(err error) bool {
	var nm *age.NoIdentityMatchError
	return errors.As(err, &nm)
}

// wrongIdentity words err, from a replica none of the identities opens, the
// one way restore, ls and verify stop on it.
func wrongIdentity(job string, err error) error {
	return fmt.Errorf("job %s: the identity does not match the replica's recipients: %w", job, err)
}

// described is one listed replica, told apart: skip when it is outside the
// selection.
type described struct {
	rep  Replica
	err  error
	skip bool
}

// describe finds what one listed object is a replica of.
func describe(ctx context.Context, job replicator.Job, obj backends.ObjectInfo, opts CatalogOptions) described {
	enc := job.Encryption != nil
	hashed := enc && job.Encryption.HashedNames
	rep := Replica{DestKey: obj.Key, VersionID: obj.VersionID, ETag: obj.ETag, Size: obj.Size, LastModified: obj.LastModified}
	rep.Meta = crypto.Meta{Key: job.SourcePrefix + job.PlainKey(strings.TrimPrefix(obj.Key, job.DestPrefix)), Size: obj.Size, MTime: obj.LastModified}
	if !enc {
		// A plain replica is the source's bytes: its ETag is theirs (an
		// MD5 when it was written in one PUT).
		rep.Meta.ETag = obj.ETag
	}
	if !hashed && !strings.HasPrefix(rep.Meta.Key, opts.Prefix) {
		return described{skip: true} // cheap: the name is known without META
	}
	if enc && len(opts.Identities) > 0 {
		m, known := crypto.Meta{}, false
		if opts.KnownMeta != nil {
			m, known = opts.KnownMeta(obj)
		}
		if !known {
			var err error
			if m, err = readMeta(ctx, job.Dest, obj, opts.Identities); err != nil {
				return described{rep: rep, err: err}
			}
		}
		rep.Meta = m
		// Anyone may encrypt to a public recipient, and a replica copied to
		// another name keeps its META: a replica whose name is not the one
		// its META key maps to (the key itself with plain names, its hash
		// with hashed ones) was not written there by this job. Plain names
		// are checked without any secret.
		if (!hashed || job.Encryption.NameSecret != nil) && obj.Key != job.DestKey(m.Key) {
			return described{rep: rep, err: fmt.Errorf("replica %s: its name does not match the key in its META (%q): not written by this job, refusing it", obj.Key, m.Key)}
		}
	}
	if !strings.HasPrefix(rep.Meta.Key, opts.Prefix) || !job.Filter.Match(strings.TrimPrefix(rep.Meta.Key, job.SourcePrefix)) {
		return described{skip: true}
	}
	return described{rep: rep}
}

// readMeta decrypts the META frame of one replica version.
func readMeta(ctx context.Context, b backends.Bucket, obj backends.ObjectInfo, ids []age.Identity) (crypto.Meta, error) {
	rc, _, err := b.Get(ctx, obj.Key, backends.GetOptions{Length: min(obj.Size, metaProbe), VersionID: obj.VersionID})
	if err != nil {
		return crypto.Meta{}, err
	}
	defer rc.Close()
	m, err := crypto.ReadMeta(rc, ids...)
	if err != nil {
		return crypto.Meta{}, fmt.Errorf("read META of %s: %w", obj.Key, err)
	}
	return m, nil
}

// latestAt yields the objects under prefix in rng: the current ones, or
// with asOf set, per key the newest version stored at or before asOf that
// is not a delete marker.
func latestAt(ctx context.Context, b backends.Bucket, prefix string, asOf time.Time, rng replicator.KeyRange) iter.Seq2[backends.ObjectInfo, error] {
	if asOf.IsZero() {
		return func(yield func(backends.ObjectInfo, error) bool) {
			for obj, err := range b.List(ctx, backends.ListOptions{Prefix: prefix, StartAfter: rng.After}) {
				if err == nil && rng.Past(obj.Key) {
					return
				}
				if !yield(obj, err) {
					return
				}
			}
		}
	}
	return func(yield func(backends.ObjectInfo, error) bool) {
		var key string // the key whose version at asOf was decided
		// A version listing cannot start after a key (ListOptions), so
		// the keys before the range are read and passed over.
		for v, err := range b.List(ctx, backends.ListOptions{Prefix: prefix, Versions: true}) {
			if err != nil {
				yield(backends.ObjectInfo{}, err)
				return
			}
			if rng.Past(v.Key) {
				return
			}
			if !rng.Contains(v.Key) {
				continue
			}
			if v.VersionID == "" {
				// An unversioned object keeps no past: a state at asOf
				// cannot be told, and silence would restore a wrong one.
				yield(backends.ObjectInfo{}, fmt.Errorf("%s holds unversioned objects (%s): --as-of needs a destination with versioning enabled before the replicas were written: %w", b.Name(), v.Key, ErrNotVersioned))
				return
			}
			// Versions come newest first within a key.
			if v.Key == key || v.LastModified.After(asOf) {
				continue
			}
			key = v.Key
			if v.DeleteMarker {
				continue
			}
			if !yield(v, nil) {
				return
			}
		}
	}
}
