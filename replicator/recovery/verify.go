package recovery

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"

	"filippo.io/age"
	"golang.org/x/sync/errgroup"

	"github.com/voyageur-ca/voyageur/backends"
	"github.com/voyageur-ca/voyageur/crypto"
	"github.com/voyageur-ca/voyageur/journal"
	"github.com/voyageur-ca/voyageur/replicator"
)

// VerifyOptions are per-verify settings.
type VerifyOptions struct {
	// Identities, when given, let verify read META (original names, source
	// ETags) and decrypt replicas to compare their SHA-256 with the source.
	Identities []age.Identity
	// Sample limits the deep (SHA-256) check to a random Sample objects; 0
	// checks every object present on both sides.
	Sample int
	// Journal, when given, is the job's journal on the replicating host:
	// each replica's ETag at the destination is compared with the one
	// sync recorded when it wrote it, which tells a replica changed since
	// (a byte flip, a truncation, another replica copied over it) without
	// an identity; and its record says which source state it is a copy of.
	Journal *journal.Section
	Logger  *slog.Logger
	// Range, when set, limits verify to one shard's destination keys, and
	// to the source keys whose replicas they are.
	Range replicator.KeyRange
}

// VerifyReport lists how the replica differs from the source.
type VerifyReport struct {
	Job     string `json:"job"`
	Source  int    `json:"source_objects"`
	Replica int    `json:"replica_objects"`
	// Missing are source keys without a replica; Extra, replicas of keys
	// the source no longer has; Stale, replicas of another version of the
	// source object (by source ETag and size).
	Missing []string `json:"missing"`
	Extra   []string `json:"extra"`
	Stale   []string `json:"stale"`
	// Deep is the number of objects whose bytes were compared; Corrupt
	// lists those whose replica does not decrypt, fails its own SHA-256, or
	// differs from the source.
	Deep    int                  `json:"deep_checked"`
	Corrupt []replicator.Failure `json:"corrupt"`
	// JournalChecked says that replica ETags were compared with the
	// journal's records.
	JournalChecked bool `json:"journal_checked"`
}

// OK reports whether the replica matches the source.
func (r *VerifyReport) OK() bool {
	return len(r.Missing)+len(r.Extra)+len(r.Stale)+len(r.Corrupt) == 0
}

// replicaFacts is what verify knows of one replica.
type replicaFacts struct {
	destKey, versionID string
	destETag           string // at the destination, as listed
	size               int64  // of the source object, when known
	etag               string // of the source object, when known
	srcETag            string // the source object's ETag at listing time
	srcSize            int64
}

// Verify compares the job's source with its replica. Without identities it
// compares by name (hashed names are recomputed from the source keys) and,
// for plain replicas, by size and ETag; with identities it compares META's
// source ETag and size and decrypts replicas to compare SHA-256. It holds
// one entry per object in memory.
func Verify(ctx context.Context, job replicator.Job, opts VerifyOptions) (VerifyReport, error) {
	rep := VerifyReport{Job: job.Name, Missing: []string{}, Extra: []string{}, Stale: []string{}, Corrupt: []replicator.Failure{}}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	enc := job.Encryption != nil
	deep := !enc || len(opts.Identities) > 0
	rep.JournalChecked = opts.Journal != nil
	v := &verifier{job: job, opts: opts}
	hashed := enc && job.Encryption.HashedNames
	if hashed && job.Encryption.NameSecret == nil && opts.Range != (replicator.KeyRange{}) {
		return rep, fmt.Errorf("verify %s by shard: with hashed names, telling which source keys a shard holds needs the name secret (name_secret_file)", job.Name)
	}
	replicas, unreadable, err := collectReplicas(ctx, job, opts.Identities, opts.Range)
	if err != nil {
		return rep, err
	}
	rep.Replica = len(replicas) + len(unreadable)
	// Plain names keep the source order: the shard's source keys are its
	// destination range moved to the source prefix. Hashed names scatter
	// them, so the whole source is listed and the others' keys passed over.
	srcRange := replicator.KeyRange{}
	if !hashed && opts.Range != (replicator.KeyRange{}) {
		srcRange = opts.Range.Mapped(job.DestPrefix, job.SourcePrefix)
	}
	matched := map[string]replicaFacts{} // source key → replica, for the deep check
	var suspects []string                // keys the deep check must include
	for src, err := range job.Source.List(ctx, backends.ListOptions{Prefix: job.SourcePrefix, StartAfter: srcRange.After}) {
		if err != nil {
			return rep, fmt.Errorf("list source %s/%s: %w", job.Source.Name(), job.SourcePrefix, err)
		}
		if srcRange.Past(src.Key) {
			break
		}
		if !job.Filter.Match(strings.TrimPrefix(src.Key, job.SourcePrefix)) || !opts.Range.Contains(job.DestKey(src.Key)) {
			continue
		}
		rep.Source++
		f, ok := replicas[replicaKey(job, src.Key, opts.Identities)]
		if !ok {
			if err, bad := unreadable[job.DestKey(src.Key)]; bad {
				delete(unreadable, job.DestKey(src.Key))
				rep.Corrupt = append(rep.Corrupt, replicator.Failure{Key: src.Key, Op: "verify", Error: err.Error()})
			} else {
				rep.Missing = append(rep.Missing, src.Key)
			}
			continue
		}
		delete(replicas, replicaKey(job, src.Key, opts.Identities))
		f.srcETag, f.srcSize = src.ETag, src.Size
		verdict, why, err := v.classify(ctx, src, f)
		if err != nil {
			return rep, err
		}
		switch verdict {
		case verdictStale:
			rep.Stale = append(rep.Stale, src.Key)
		case verdictCorrupt:
			opts.Logger.Warn("replica differs", "key", src.Key, "err", why)
			rep.Corrupt = append(rep.Corrupt, replicator.Failure{Key: src.Key, Op: "verify", Error: why})
		case verdictSuspect:
			suspects = append(suspects, src.Key)
			fallthrough
		default:
			matched[src.Key] = f
		}
	}
	for key := range replicas {
		rep.Extra = append(rep.Extra, key)
	}
	for destKey, err := range unreadable {
		rep.Corrupt = append(rep.Corrupt, replicator.Failure{Key: destKey, Op: "verify", Error: err.Error()})
	}
	slices.Sort(rep.Extra)
	if !deep {
		return rep, nil
	}
	both := slices.Sorted(maps.Keys(matched))
	if opts.Sample > 0 && opts.Sample < len(both) {
		rand.Shuffle(len(both), func(i, j int) { both[i], both[j] = both[j], both[i] })
		both = both[:opts.Sample]
		for _, k := range suspects {
			if !slices.Contains(both, k) {
				both = append(both, k)
			}
		}
		slices.Sort(both)
	}
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(job.Transfer.Concurrency, 1))
	for _, key := range both {
		f := matched[key]
		g.Go(func() error {
			err := compareBytes(gctx, job, key, f, opts.Identities)
			mu.Lock()
			defer mu.Unlock()
			rep.Deep++
			if errors.Is(err, backends.ErrPreconditionFailed) {
				rep.Stale = append(rep.Stale, key) // the source changed since the listing
				return nil
			}
			if errors.Is(err, errBytesDiffer) && v.claimsOlder(gctx, key, f) {
				rep.Stale = append(rep.Stale, key) // a copy of an older version
				return nil
			}
			if err != nil {
				if gctx.Err() != nil {
					return gctx.Err()
				}
				opts.Logger.Warn("replica differs", "key", key, "err", err)
				rep.Corrupt = append(rep.Corrupt, replicator.Failure{Key: key, Op: "verify", Error: err.Error()})
			}
			return nil
		})
	}
	err = g.Wait()
	slices.Sort(rep.Stale)
	slices.SortFunc(rep.Corrupt, func(a, b replicator.Failure) int { return strings.Compare(a.Key, b.Key) })
	return rep, err
}

// collectReplicas maps the replicas by the key Verify looks them up with
// (replicaKey): the original key, or without identities for hashed names,
// the destination key. Replicas whose META cannot be read are returned
// apart, by destination key; an identity that opens none stops it.
func collectReplicas(ctx context.Context, job replicator.Job, ids []age.Identity, rng replicator.KeyRange) (map[string]replicaFacts, map[string]error, error) {
	out, unreadable := map[string]replicaFacts{}, map[string]error{}
	if job.Encryption != nil && job.Encryption.HashedNames && len(ids) == 0 {
		for o, err := range job.Dest.List(ctx, backends.ListOptions{Prefix: job.DestPrefix, StartAfter: rng.After}) {
			if err != nil {
				return nil, nil, fmt.Errorf("list replica %s/%s: %w", job.Dest.Name(), job.DestPrefix, err)
			}
			if rng.Past(o.Key) {
				break
			}
			if job.Reserved(o.Key) {
				continue
			}
			out[o.Key] = replicaFacts{destKey: o.Key, destETag: o.ETag}
		}
		return out, unreadable, nil
	}
	for r, err := range Catalog(ctx, job, CatalogOptions{Identities: ids, Concurrency: job.Transfer.Concurrency, Range: rng}) {
		if err != nil && r.DestKey == "" {
			return nil, nil, err
		}
		if err != nil {
			unreadable[r.DestKey] = err
			continue
		}
		f := replicaFacts{destKey: r.DestKey, versionID: r.VersionID, destETag: r.ETag}
		if job.Encryption != nil {
			f.size, f.etag = r.Meta.Size, r.Meta.ETag
		}
		out[r.Meta.Key] = f
	}
	return out, unreadable, nil
}

// replicaKey is the key collectReplicas maps src's replica under: without
// identities, hashed names are recomputed from the source key.
func replicaKey(job replicator.Job, src string, ids []age.Identity) string {
	if job.Encryption != nil && job.Encryption.HashedNames && len(ids) == 0 {
		return job.DestKey(src)
	}
	return src
}

// compareBytes reads the replica (decrypting and checking its own SHA-256
// when encrypted) and the source, and compares their SHA-256.
func compareBytes(ctx context.Context, job replicator.Job, key string, f replicaFacts, ids []age.Identity) error {
	rc, _, err := job.Dest.Get(ctx, f.destKey, backends.GetOptions{VersionID: f.versionID})
	if err != nil {
		return err
	}
	defer rc.Close()
	replica := sha256.New()
	if job.Encryption != nil {
		if _, _, err := crypto.Decrypt(rc, replica, ids...); err != nil {
			return fmt.Errorf("decrypt %s: %w", f.destKey, err)
		}
	} else if _, err := io.Copy(replica, rc); err != nil {
		return fmt.Errorf("read %s: %w", f.destKey, err)
	}
	src, _, err := job.Source.Get(ctx, key, backends.GetOptions{IfMatch: f.srcETag})
	if err != nil {
		return err
	}
	defer src.Close()
	source := sha256.New()
	if _, err := io.Copy(source, src); err != nil {
		return fmt.Errorf("read source %s: %w", key, err)
	}
	if !bytes.Equal(replica.Sum(nil), source.Sum(nil)) {
		return errBytesDiffer
	}
	return nil
}

// errBytesDiffer is a replica whose bytes are not the source's.
var errBytesDiffer = errors.New("the replica's bytes differ from the source's")

type verdict int

const (
	verdictMatch   verdict = iota // names the current source state; bytes to compare
	verdictStale                  // a copy of another version of the source object
	verdictCorrupt                // changed at the destination, or not what it claims
	verdictSuspect                // to compare byte for byte, sampled or not
)

// verifier holds what classify needs.
type verifier struct {
	job  replicator.Job
	opts VerifyOptions
}

// classify tells, before any byte is read, whether the replica f of the
// source object src is stale, corrupt, or to be compared byte for byte:
//
//   - its ETag differs from the one the journal recorded when sync wrote
//     it: corrupt, whatever the source did since (sync rewrites the record
//     with every replica it writes);
//   - the journal's record, or META, names another source state: stale;
//   - a plain replica and its source both have MD5 ETags that differ: it
//     is stale when it says it is a copy of another state (claimsOlder);
//     otherwise its bytes are compared whatever the sample, since a store
//     whose ETags are not MD5s (SSE-KMS) gives such a pair for equal bytes.
func (v *verifier) classify(ctx context.Context, src backends.ObjectInfo, f replicaFacts) (verdict, string, error) {
	if v.opts.Journal != nil {
		rec, ok, err := v.opts.Journal.Lookup(src.Key)
		if err != nil {
			return 0, "", err
		}
		// A record of another name is about another replica (the job's
		// names changed since): it says nothing of this one.
		ok = ok && rec.DestKey == f.destKey
		if ok && rec.DestETag != "" && backends.TrimETag(rec.DestETag) != backends.TrimETag(f.destETag) {
			return verdictCorrupt, fmt.Sprintf("replica %s changed at the destination after sync wrote it: its ETag is %s, sync recorded %s",
				f.destKey, backends.TrimETag(f.destETag), backends.TrimETag(rec.DestETag)), nil
		}
		if ok && (rec.SourceETag != src.ETag || rec.Size != src.Size) {
			return verdictStale, "", nil
		}
	}
	if f.etag != "" && (backends.TrimETag(f.etag) != backends.TrimETag(src.ETag) || f.size != src.Size) {
		return verdictStale, "", nil // META names another state
	}
	if v.job.Encryption == nil {
		dst, dok := plainMD5(f.destETag)
		want, sok := plainMD5(src.ETag)
		if dok && sok && dst != want {
			if v.claimsOlder(ctx, src.Key, f) {
				return verdictStale, "", nil
			}
			return verdictSuspect, "", nil
		}
	}
	return verdictMatch, "", nil
}

// claimsOlder reports whether a plain replica whose bytes differ from the
// source's says it is a copy of another source state: by the journal's
// record, else by its fingerprint (docs/FORMAT.md §7), which names the
// source key, size and ETag it was written from. A replica that claims the
// current state, or has no fingerprint (voyageur writes one on every plain
// replica; an upload by other means drops it), has bytes it should not
// have: corrupt.
func (v *verifier) claimsOlder(ctx context.Context, key string, f replicaFacts) bool {
	if v.job.Encryption != nil {
		return false // META or the journal decided already
	}
	if v.opts.Journal != nil {
		if rec, ok, err := v.opts.Journal.Lookup(key); err == nil && ok && rec.DestKey == f.destKey {
			return rec.SourceETag != f.srcETag || rec.Size != f.srcSize
		}
	}
	info, err := v.job.Dest.Stat(ctx, f.destKey, f.versionID)
	if err != nil {
		return false
	}
	fp, ok := info.Metadata[replicator.FingerprintMeta]
	if !ok {
		return false
	}
	fpKey, err := v.job.FingerprintKey()
	if err != nil {
		return false
	}
	return fp != crypto.Fingerprint(fpKey, "", key, f.srcSize, backends.TrimETag(f.srcETag))
}
