package serve

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"

	"github.com/rclone/gofakes3"

	"github.com/voyageur-ca/voyageur/replicator"
	"github.com/voyageur-ca/voyageur/replicator/recovery"
)

// entry is one served object: its key in the bucket (the original key
// relative to the job's source prefix) and the replica that holds it.
type entry struct {
	key string
	rep recovery.Replica
}

// etag is the object's ETag as served, quoted: the source's where the
// replica records it; otherwise the plain replica's own (the same bytes),
// or for an encrypted replica one derived from the replica version, which
// is stable and, not being MD5-shaped, is never taken for a checksum.
func (e *entry) etag(encrypted bool) string {
	if t := strings.Trim(e.rep.Meta.ETag, `"`); t != "" {
		return `"` + t + `"`
	}
	if !encrypted {
		return `"` + strings.Trim(e.rep.ETag, `"`) + `"`
	}
	sum := sha256.Sum256([]byte(e.rep.DestKey + "\x00" + e.rep.VersionID + "\x00" + e.rep.ETag))
	return `"` + hex.EncodeToString(sum[:12]) + `-1"`
}

// hash is the 16 bytes gofakes3 sends, hex-encoded, as the GET/HEAD ETag:
// an MD5-shaped ETag itself, else a digest of the ETag that the front
// handler maps back (see rewriteETags).
func hashOf(etag string) []byte {
	t := strings.Trim(etag, `"`)
	if b, err := hex.DecodeString(t); err == nil && len(b) == md5.Size {
		return b
	}
	sum := md5.Sum([]byte(etag))
	return sum[:]
}

// loadBatch is how many listed replicas a catalog load merges per write
// transaction: what it holds in memory, whatever the catalog's size.
const loadBatch = 512

// loadCatalog brings the job's catalog in the store to the replicas
// listed now and returns the number of served objects. A replica that
// cannot be read is logged and left out; a listing error or a wrong
// identity fails the load (what was merged before it stays). Keys two
// replicas claim (hashed names without the name secret) are left out, as
// restore does: nothing tells which one the job wrote. They are logged
// on the first load and when they arise.
func loadCatalog(ctx context.Context, job replicator.Job, cat *catalog, opts recovery.CatalogOptions, first bool, log *slog.Logger, progress func(int)) (int64, error) {
	m := &merge{c: cat}
	batch := make([]listed, 0, loadBatch)
	var claimed []string
	flush := func() error {
		c, err := m.apply(batch)
		if err != nil {
			return fmt.Errorf("catalog of job %s: store: %w", job.Name, err)
		}
		claimed = append(claimed, c...)
		batch = batch[:0]
		return nil
	}
	n := 0
	for rep, err := range recovery.Catalog(ctx, job, opts) {
		if err != nil && rep.DestKey == "" {
			return 0, err
		}
		if err != nil {
			log.Warn("replica left out of the catalog", "job", job.Name, "replica", rep.DestKey, "err", err)
			continue
		}
		key, ok := strings.CutPrefix(rep.Meta.Key, job.SourcePrefix)
		if !ok || key == "" {
			log.Warn("replica left out of the catalog: its key is not below the job's source prefix", "job", job.Name, "replica", rep.DestKey)
			continue
		}
		batch = append(batch, listed{rep: rep, key: key})
		if n++; progress != nil {
			progress(n)
		}
		if len(batch) == loadBatch {
			if err := flush(); err != nil {
				return 0, err
			}
		}
	}
	if err := flush(); err != nil {
		return 0, err
	}
	if err := m.finish(); err != nil {
		return 0, fmt.Errorf("catalog of job %s: store: %w", job.Name, err)
	}
	if first || len(claimed) > 0 {
		conflicts, err := cat.conflicts()
		if err != nil {
			return 0, fmt.Errorf("catalog of job %s: store: %w", job.Name, err)
		}
		keys := claimed
		if first {
			keys = slices.Sorted(maps.Keys(conflicts))
		}
		for _, k := range keys {
			if names, ok := conflicts[k]; ok {
				log.Warn("key left out of the catalog: several replicas claim it and names are not checked without name_secret_file", "job", job.Name, "key", k, "replicas", strings.Join(names, ", "))
			}
		}
	}
	objects, err := cat.objects()
	if err != nil {
		return 0, fmt.Errorf("catalog of job %s: store: %w", job.Name, err)
	}
	return objects, nil
}

// cursor is what a listing needs of a bbolt cursor over the served keys.
type cursor interface {
	Seek(seek []byte) (key, value []byte)
	Next() (key, value []byte)
}

// listPage answers one page of a listing from the served keys: keys after
// page.Marker under the prefix, with keys that have the delimiter after
// the prefix folded into common prefixes, at most page.MaxKeys of both.
// It seeks to the marker and past each common prefix, so a page costs
// O(MaxKeys) cursor steps whatever the catalog's size.
func listPage(c cursor, prefix *gofakes3.Prefix, page gofakes3.ListBucketPage, encrypted bool) (*gofakes3.ObjectList, error) {
	var p, delim string
	if prefix != nil {
		p = prefix.Prefix
		if prefix.HasDelimiter {
			delim = prefix.Delimiter
		}
	}
	k, v := c.Seek([]byte(p))
	if page.HasMarker && page.Marker >= p {
		if k, v = c.Seek([]byte(page.Marker)); k != nil && string(k) == page.Marker {
			k, v = c.Next()
		}
	}
	max := page.MaxKeys
	if max <= 0 {
		max = gofakes3.DefaultMaxBucketKeys
	}
	out := gofakes3.NewObjectList()
	var n int64
	for k != nil && bytes.HasPrefix(k, []byte(p)) {
		key := string(k)
		cp := ""
		if delim != "" {
			if i := strings.Index(key[len(p):], delim); i >= 0 {
				cp = key[:len(p)+i+len(delim)]
			}
		}
		if cp != "" && page.HasMarker && cp == page.Marker {
			// The previous page ended with this common prefix.
			k, v = seekPast(c, cp)
			continue
		}
		if n == max {
			out.IsTruncated = true
			break
		}
		n++
		if cp != "" {
			out.AddPrefix(cp)
			out.NextMarker = cp
			k, v = seekPast(c, cp)
			continue
		}
		e := entry{key: key}
		if err := json.Unmarshal(v, &e.rep); err != nil {
			return nil, fmt.Errorf("catalog entry %s: %w", key, err)
		}
		out.Add(&gofakes3.Content{
			Key:          e.key,
			LastModified: gofakes3.NewContentTime(e.rep.Meta.MTime),
			ETag:         e.etag(encrypted),
			Size:         e.rep.Meta.Size,
			StorageClass: gofakes3.StorageStandard,
		})
		out.NextMarker = e.key
		k, v = c.Next()
	}
	if !out.IsTruncated {
		out.NextMarker = ""
	}
	return out, nil
}

// seekPast moves c to the first key past every key starting with cp
// (not empty): cp with its last byte below 0xff incremented and what
// follows it dropped. A cp of 0xff bytes only has no such key.
func seekPast(c cursor, cp string) (key, value []byte) {
	b := []byte(cp)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return c.Seek(b[:i+1])
		}
	}
	return nil, nil
}

// errNotLoaded answers requests for a job whose catalog is not loaded yet.
func errNotLoaded(job string) error {
	return gofakes3.ErrorMessage(gofakes3.ErrSlowDown, fmt.Sprintf("the catalog of %s is still loading", job))
}
