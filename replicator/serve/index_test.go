package serve

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rclone/gofakes3"
	"go.etcd.io/bbolt"

	"github.com/voyageur-ca/voyageur/backends"
	"github.com/voyageur-ca/voyageur/crypto"
	"github.com/voyageur-ca/voyageur/replicator/recovery"
)

// testStore is a temporary catalog store for one test.
func testStore(t testing.TB) *store {
	t.Helper()
	s, err := openTempStore()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.close() })
	return s
}

// testReplica is the replica of key as the tests list it: named r/KEY.
func testReplica(key, etag string) recovery.Replica {
	return recovery.Replica{DestKey: "r/" + key, ETag: etag, Size: 100,
		Meta: crypto.Meta{Key: key, Size: 100, MTime: time.Date(2026, 11, 24, 18, 0, 0, 0, time.UTC), ContentType: "text/csv",
			ETag: `"0123456789abcdef0123456789abcdef"`, Metadata: map[string]string{"owner": "finance"}}}
}

// testCatalog merges one listing of replicas into a catalog named name,
// in destination order, as a load does.
func testCatalog(t testing.TB, s *store, name string, reps []recovery.Replica) *catalog {
	t.Helper()
	c := &catalog{db: s.db, name: []byte(name)}
	slices.SortFunc(reps, func(a, b recovery.Replica) int { return bytes.Compare(repVersionKey(&a), repVersionKey(&b)) })
	m := &merge{c: c}
	for batch := range slices.Chunk(reps, loadBatch) {
		var l []listed
		for _, r := range batch {
			l = append(l, listed{rep: r, key: r.Meta.Key})
		}
		if _, err := m.apply(l); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.finish(); err != nil {
		t.Fatal(err)
	}
	return c
}

func testIndex(t testing.TB, s *store, name string, keys []string) *catalog {
	var reps []recovery.Replica
	for _, k := range keys {
		reps = append(reps, testReplica(k, "e"))
	}
	return testCatalog(t, s, name, reps)
}

// stepCounter counts the moves of a listing's cursor.
type stepCounter struct {
	c     cursor
	steps int
}

func (s *stepCounter) Seek(k []byte) ([]byte, []byte) { s.steps++; return s.c.Seek(k) }
func (s *stepCounter) Next() ([]byte, []byte)         { s.steps++; return s.c.Next() }

// servedKeys returns every served key, in order.
func servedKeys(t testing.TB, c *catalog) []string {
	t.Helper()
	var keys []string
	if err := c.view(func(b *bbolt.Bucket) error {
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, _ []byte) error { keys = append(keys, string(k)); return nil })
	}); err != nil {
		t.Fatal(err)
	}
	return keys
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

func page(t testing.TB, c *catalog, p, d, marker string, hasMarker bool, max int64) (items []string, next string, truncated bool, steps int) {
	t.Helper()
	pre := &gofakes3.Prefix{HasPrefix: p != "", Prefix: p, HasDelimiter: d != "", Delimiter: d}
	var l *gofakes3.ObjectList
	err := c.view(func(keys *bbolt.Bucket) error {
		if keys == nil {
			l = gofakes3.NewObjectList()
			return nil
		}
		sc := &stepCounter{c: keys.Cursor()}
		var err error
		l, err = listPage(sc, pre, gofakes3.ListBucketPage{Marker: marker, HasMarker: hasMarker, MaxKeys: max}, true)
		steps = sc.steps
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range l.Contents {
		items = append(items, c.Key)
	}
	for _, c := range l.CommonPrefixes {
		items = append(items, c.Prefix)
	}
	slices.Sort(items)
	return items, l.NextMarker, l.IsTruncated, steps
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
	s := testStore(t)
	for round := range 300 {
		var keys []string
		for range r.IntN(60) {
			keys = append(keys, word())
		}
		slices.Sort(keys)
		keys = slices.Compact(keys)
		x := testIndex(t, s, fmt.Sprint(round), keys)
		if got := servedKeys(t, x); fmt.Sprint(got) != fmt.Sprint(keys) {
			t.Fatalf("round %d: catalog holds %q, want %q", round, got, keys)
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
			items, next, truncated, _ := page(t, x, p, d, m, has, max)
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
// directory, finds every object, and takes the same few cursor steps per
// page whatever the listing: a page never walks the catalog.
func TestListLargeCatalog(t *testing.T) {
	x := testIndex(t, testStore(t), "large", largeKeys(100_000))
	n, pages, maxSteps := 0, 0, 0
	for m, has := "", false; ; pages++ {
		items, next, truncated, steps := page(t, x, "", "", m, has, 1000)
		n += len(items)
		maxSteps = max(maxSteps, steps)
		if !truncated {
			break
		}
		m, has = next, true
	}
	if n != 100_000 || pages != 99 {
		t.Fatalf("flat listing: %d objects in %d pages", n, pages+1)
	}
	if maxSteps > 1003 { // seek to the prefix, to the marker, past it, then one per key
		t.Errorf("flat listing: a page of 1000 took %d cursor steps", maxSteps)
	}
	dirs, _, truncated, steps := page(t, x, "", "/", "", false, 1000)
	if len(dirs) != 250 || truncated {
		t.Fatalf("root listing: %d common prefixes, truncated %v", len(dirs), truncated)
	}
	// One seek to start, one past each of the 250 directories (of 400
	// objects each): not one step per object.
	if steps > 251 {
		t.Errorf("root listing: %d cursor steps for 250 common prefixes", steps)
	}
	// Paged by 10 common prefixes, from the middle: each page seeks to
	// its marker and past each prefix (and the marker's own).
	dirs, next, truncated, steps := page(t, x, "", "/", "d120/", true, 10)
	if len(dirs) != 10 || dirs[0] != "d121/" || next != "d130/" || !truncated || steps > 13 {
		t.Errorf("root listing after d120/: %q next %q truncated %v in %d steps", dirs, next, truncated, steps)
	}
	files, _, _, steps := page(t, x, "d007/", "/", "", false, 1000)
	if len(files) != 400 || steps > 401 {
		t.Fatalf("d007/: %d objects in %d steps", len(files), steps)
	}
}

// largeKeys names n objects in 250 directories.
func largeKeys(n int) []string {
	keys := make([]string, 0, n)
	for i := range n {
		keys = append(keys, fmt.Sprintf("d%03d/f%06d.parquet", i%250, i))
	}
	return keys
}

// heapInuse is the heap in use after a collection.
func heapInuse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// TestCatalogFlatMemory: a 100 000-object catalog lives in the store, not
// the heap: listing it all page by page, flat and by directory, keeps the
// heap within a few MB of where it was, and a catalog ten times larger
// holds no more heap once loaded. For scale, the same entries held in a
// slice (the previous in-memory index) are measured too.
func TestCatalogFlatMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two catalogs of 10 000 and 100 000 objects")
	}
	const mib = 1 << 20
	s := testStore(t)
	h0 := heapInuse()
	small := testIndex(t, s, "small", largeKeys(10_000))
	hSmall := heapInuse()
	large := testIndex(t, s, "large", largeKeys(100_000))
	hLarge := heapInuse()
	t.Logf("heap in use: %.1f MiB before, %.1f MiB with 10 000 objects, %.1f MiB with 10 000 and 100 000", float64(h0)/mib, float64(hSmall)/mib, float64(hLarge)/mib)
	if hLarge > hSmall+2*mib {
		t.Errorf("the 100 000-object catalog added %.1f MiB of heap", float64(hLarge-hSmall)/mib)
	}

	for _, x := range []*catalog{small, large} {
		base := heapInuse()
		var peak uint64
		var ms runtime.MemStats
		n := 0
		for _, d := range []string{"", "/"} {
			for m, has := "", false; ; {
				items, next, truncated, _ := page(t, x, "", d, m, has, 1000)
				if d == "" {
					n += len(items)
				}
				runtime.ReadMemStats(&ms)
				peak = max(peak, ms.HeapInuse)
				if !truncated {
					break
				}
				m, has = next, true
			}
		}
		after := heapInuse()
		t.Logf("%s (%d objects): heap %.1f MiB before listing, peak %.1f MiB while listing, %.1f MiB after", x.name, n, float64(base)/mib, float64(peak)/mib, float64(after)/mib)
		if peak > base+8*mib || after > base+mib {
			t.Errorf("%s: listing all pages grew the heap from %.1f to a peak of %.1f MiB (%.1f after)", x.name, float64(base)/mib, float64(peak)/mib, float64(after)/mib)
		}
	}

	var held []entry
	if err := large.view(func(keys *bbolt.Bucket) error {
		return keys.ForEach(func(k, v []byte) error {
			e := entry{key: string(k)}
			held = append(held, e)
			return json.Unmarshal(v, &held[len(held)-1].rep)
		})
	}); err != nil {
		t.Fatal(err)
	}
	inMemory := heapInuse()
	t.Logf("the same 100 000 entries in a slice: %.1f MiB of heap", float64(inMemory-hLarge)/mib)
	runtime.KeepAlive(held)
}

// TestCatalogMerge loads random listings one after another into the same
// catalog, in batches of random sizes, as refreshes do: objects appear,
// disappear and change version, and keys that two replicas claim are left
// out until one of them is gone. After each load the catalog must hold
// exactly what that listing alone would give.
func TestCatalogMerge(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	s := testStore(t)
	c := &catalog{db: s.db, name: []byte("merge")}
	for round := range 200 {
		// Replica names r00..r39, each the replica of one of 30 keys (a
		// name always maps to the same key, as plain or hashed names do),
		// in one of two versions; a key listed under two names is a
		// conflict.
		var listing []recovery.Replica
		for i := range 40 {
			if r.IntN(3) == 0 {
				continue
			}
			rep := testReplica(fmt.Sprintf("k%02d", i*7%30), fmt.Sprint(r.IntN(2)))
			rep.DestKey = fmt.Sprintf("r%02d", i)
			listing = append(listing, rep)
		}
		claims := map[string][]recovery.Replica{}
		for _, rep := range listing {
			claims[rep.Meta.Key] = append(claims[rep.Meta.Key], rep)
		}
		m := &merge{c: c}
		for rest := listing; len(rest) > 0; {
			n := min(len(rest), 1+r.IntN(8))
			var l []listed
			for _, rep := range rest[:n] {
				l = append(l, listed{rep: rep, key: rep.Meta.Key})
			}
			if _, err := m.apply(l); err != nil {
				t.Fatal(err)
			}
			rest = rest[n:]
		}
		if err := m.finish(); err != nil {
			t.Fatal(err)
		}
		// The same listing again, in batches of another size, as a
		// refresh that finds nothing new: nothing is written.
		st := s.db.Stats()
		writes := st.TxStats.GetWrite()
		again := &merge{c: c}
		for batch := range slices.Chunk(listing, 1+r.IntN(8)) {
			var l []listed
			for _, rep := range batch {
				l = append(l, listed{rep: rep, key: rep.Meta.Key})
			}
			if _, err := again.apply(l); err != nil {
				t.Fatal(err)
			}
		}
		if err := again.finish(); err != nil {
			t.Fatal(err)
		}
		st = s.db.Stats()
		if w := st.TxStats.GetWrite(); w != writes {
			t.Fatalf("round %d: merging an unchanged listing wrote %d times", round, w-writes)
		}

		var want []string
		for k, reps := range claims {
			if len(reps) == 1 {
				want = append(want, k)
			}
		}
		slices.Sort(want)
		if got := servedKeys(t, c); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("round %d: served %q, want %q", round, got, want)
		}
		for _, k := range want {
			e, ok, err := c.find(k)
			if err != nil || !ok || e.rep.DestKey != claims[k][0].DestKey || e.rep.ETag != claims[k][0].ETag {
				t.Fatalf("round %d: %s is %+v %v %v, want %s (ETag %s)", round, k, e, ok, err, claims[k][0].DestKey, claims[k][0].ETag)
			}
		}
		if n, err := c.objects(); err != nil || n != int64(len(want)) {
			t.Fatalf("round %d: %d objects counted (%v), want %d", round, n, err, len(want))
		}
		conflicts, err := c.conflicts()
		if err != nil {
			t.Fatal(err)
		}
		for k, reps := range claims {
			if _, ok := conflicts[k]; ok != (len(reps) > 1) {
				t.Fatalf("round %d: %s claimed by %d replicas, recorded as a conflict: %v", round, k, len(reps), ok)
			}
		}
		for _, rep := range listing {
			if _, ok := c.known(backends.ObjectInfo{Key: rep.DestKey, ETag: rep.ETag}); !ok {
				t.Fatalf("round %d: listed version %s/%s not known", round, rep.DestKey, rep.ETag)
			}
		}
		var versions int
		if err := s.db.View(func(tx *bbolt.Tx) error {
			versions = tx.Bucket(c.name).Bucket(replicasBucket).Stats().KeyN
			return nil
		}); err != nil || versions != len(listing) {
			t.Fatalf("round %d: %d versions kept (%v), %d listed", round, versions, err, len(listing))
		}
	}
}
