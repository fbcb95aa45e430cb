package serve

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

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

// index is a job's catalog sorted by served key, built once per load and
// then only read: a listing page is a binary search and a short scan.
type index struct {
	entries []entry
	loaded  time.Time
}

// find returns the entry for key.
func (x *index) find(key string) (*entry, bool) {
	i := sort.Search(len(x.entries), func(i int) bool { return x.entries[i].key >= key })
	if i < len(x.entries) && x.entries[i].key == key {
		return &x.entries[i], true
	}
	return nil, false
}

// loadIndex reads the job's catalog. A replica that cannot be read is
// logged and left out; a listing error or a wrong identity fails the load.
// Keys two replicas claim (hashed names without the name secret) are left
// out, as restore does: nothing tells which one the job wrote.
func loadIndex(ctx context.Context, job replicator.Job, opts recovery.CatalogOptions, log *slog.Logger, progress func(int)) (*index, error) {
	var entries []entry
	for rep, err := range recovery.Catalog(ctx, job, opts) {
		if err != nil && rep.DestKey == "" {
			return nil, err
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
		entries = append(entries, entry{key: key, rep: rep})
		if progress != nil {
			progress(len(entries))
		}
	}
	sort.SliceStable(entries, func(i, j int) bool { return entries[i].key < entries[j].key })
	kept := entries[:0]
	for i := 0; i < len(entries); {
		j := i + 1
		for j < len(entries) && entries[j].key == entries[i].key {
			j++
		}
		if j-i > 1 {
			names := make([]string, 0, j-i)
			for _, e := range entries[i:j] {
				names = append(names, e.rep.DestKey)
			}
			log.Warn("key left out of the catalog: several replicas claim it and names are not checked without name_secret_file", "job", job.Name, "key", entries[i].key, "replicas", strings.Join(names, ", "))
		} else {
			kept = append(kept, entries[i])
		}
		i = j
	}
	return &index{entries: kept, loaded: time.Now()}, nil
}

// list answers one page of a listing: keys after page.Marker under the
// prefix, with keys that have the delimiter after the prefix folded into
// common prefixes, at most page.MaxKeys of both. It seeks to the marker and
// skips each common prefix with a binary search, so a page costs
// O(MaxKeys × log n) whatever the catalog's size.
func (x *index) list(prefix *gofakes3.Prefix, page gofakes3.ListBucketPage, encrypted bool) *gofakes3.ObjectList {
	var p, delim string
	if prefix != nil {
		p = prefix.Prefix
		if prefix.HasDelimiter {
			delim = prefix.Delimiter
		}
	}
	keys := x.entries
	i := sort.Search(len(keys), func(i int) bool { return keys[i].key >= p })
	if page.HasMarker {
		i += sort.Search(len(keys)-i, func(j int) bool { return keys[i+j].key > page.Marker })
	}
	max := page.MaxKeys
	if max <= 0 {
		max = gofakes3.DefaultMaxBucketKeys
	}
	out := gofakes3.NewObjectList()
	var n int64
	for i < len(keys) && strings.HasPrefix(keys[i].key, p) {
		e := &keys[i]
		cp := ""
		if delim != "" {
			if k := strings.Index(e.key[len(p):], delim); k >= 0 {
				cp = e.key[:len(p)+k+len(delim)]
			}
		}
		if cp != "" && page.HasMarker && cp == page.Marker {
			// The previous page ended with this common prefix.
			i = skipPrefix(keys, i, cp)
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
			i = skipPrefix(keys, i, cp)
			continue
		}
		out.Add(&gofakes3.Content{
			Key:          e.key,
			LastModified: gofakes3.NewContentTime(e.rep.Meta.MTime),
			ETag:         e.etag(encrypted),
			Size:         e.rep.Meta.Size,
			StorageClass: gofakes3.StorageStandard,
		})
		out.NextMarker = e.key
		i++
	}
	if !out.IsTruncated {
		out.NextMarker = ""
	}
	return out
}

// skipPrefix returns the first position at or after i whose key does not
// start with cp: keys with a prefix are contiguous in sorted order.
func skipPrefix(keys []entry, i int, cp string) int {
	return i + sort.Search(len(keys)-i, func(j int) bool { return !strings.HasPrefix(keys[i+j].key, cp) })
}

// errNotLoaded answers requests for a job whose catalog is not loaded yet.
func errNotLoaded(job string) error {
	return gofakes3.ErrorMessage(gofakes3.ErrSlowDown, fmt.Sprintf("the catalog of %s is still loading", job))
}
