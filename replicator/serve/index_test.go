package serve

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/rclone/gofakes3"

	"github.com/voyageur-ca/voyageur/replicator/recovery"
)

func testIndex(keys []string) *index {
	slices.Sort(keys)
	keys = slices.Compact(keys)
	x := &index{}
	for _, k := range keys {
		x.entries = append(x.entries, entry{key: k, rep: recovery.Replica{DestKey: "r/" + k}})
	}
	return x
}

// reference lists as S3 does, the slow way: every key after the marker
// under the prefix, rolled up at the delimiter, without the item the
// marker names.
func reference(keys []string, p, d, marker string, hasMarker bool) []string {
	var out []string
	for _, k := range keys {
		if !strings.HasPrefix(k, p) || hasMarker && k <= marker {
			continue
		}
		item := k
		if i := strings.Index(k[len(p):], d); d != "" && i >= 0 {
			item = k[:len(p)+i+len(d)]
		}
		if hasMarker && item == marker || len(out) > 0 && out[len(out)-1] == item {
			continue
		}
		out = append(out, item)
	}
	return out
}

func page(x *index, p, d, marker string, hasMarker bool, max int64) (items []string, next string, truncated bool) {
	pre := &gofakes3.Prefix{HasPrefix: p != "", Prefix: p, HasDelimiter: d != "", Delimiter: d}
	l := x.list(pre, gofakes3.ListBucketPage{Marker: marker, HasMarker: hasMarker, MaxKeys: max}, true)
	for _, c := range l.Contents {
		items = append(items, c.Key)
	}
	for _, c := range l.CommonPrefixes {
		items = append(items, c.Prefix)
	}
	slices.Sort(items)
	return items, l.NextMarker, l.IsTruncated
}

// TestListMatchesReference pages random catalogs with random prefixes,
// delimiters, markers and page sizes, and compares with reference.
func TestListMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	alphabet := []string{"a", "b", "/", "-", "é", "+"}
	word := func() string {
		var sb strings.Builder
		for range 1 + r.IntN(6) {
			sb.WriteString(alphabet[r.IntN(len(alphabet))])
		}
		return sb.String()
	}
	for round := range 300 {
		var keys []string
		for range r.IntN(60) {
			keys = append(keys, word())
		}
		x := testIndex(keys)
		keys = nil
		for _, e := range x.entries {
			keys = append(keys, e.key)
		}
		p := ""
		if r.IntN(2) == 0 {
			p = word()[:1]
		}
		d := []string{"", "/", "-"}[r.IntN(3)]
		marker, hasMarker := "", r.IntN(3) == 0
		if hasMarker {
			marker = word()
		}
		want := reference(keys, p, d, marker, hasMarker)
		max := int64(1 + r.IntN(5))
		var got []string
		m, has := marker, hasMarker
		for pages := 0; ; pages++ {
			items, next, truncated := page(x, p, d, m, has, max)
			if int64(len(items)) > max {
				t.Fatalf("round %d: a page of %d items, max-keys %d", round, len(items), max)
			}
			got = append(got, items...)
			if !truncated {
				break
			}
			if next == "" || pages > len(keys)+1 {
				t.Fatalf("round %d: truncated page without a usable next marker %q", round, next)
			}
			m, has = next, true
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("round %d: keys %q prefix %q delimiter %q marker %q/%v max %d:\n got %q\nwant %q", round, keys, p, d, marker, hasMarker, max, got, want)
		}
	}
}

// TestListLargeCatalog pages a 100 000-object catalog, flat and by
// directory, and finds every object.
func TestListLargeCatalog(t *testing.T) {
	var keys []string
	for i := range 100_000 {
		keys = append(keys, fmt.Sprintf("d%03d/f%06d.parquet", i%250, i))
	}
	x := testIndex(keys)
	n, pages := 0, 0
	for m, has := "", false; ; pages++ {
		items, next, truncated := page(x, "", "", m, has, 1000)
		n += len(items)
		if !truncated {
			break
		}
		m, has = next, true
	}
	if n != 100_000 || pages != 99 {
		t.Fatalf("flat listing: %d objects in %d pages", n, pages+1)
	}
	dirs, _, truncated := page(x, "", "/", "", false, 1000)
	if len(dirs) != 250 || truncated {
		t.Fatalf("root listing: %d common prefixes, truncated %v", len(dirs), truncated)
	}
	files, _, _ := page(x, "d007/", "/", "", false, 1000)
	if len(files) != 400 {
		t.Fatalf("d007/: %d objects", len(files))
	}
}
