package replicator

import (
	"context"
	"fmt"
	"iter"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/voyageur-ca/voyageur/backends"
	"github.com/voyageur-ca/voyageur/crypto"
)

// listing is a source that only lists (the plan reads nothing else): the
// plan's arithmetic is tested here on many keys; the integration tests run
// it on MinIO.
type listing struct {
	backends.Bucket
	keys []string
}

func (l listing) Name() string { return "listing" }

func (l listing) List(_ context.Context, opts backends.ListOptions) iter.Seq2[backends.ObjectInfo, error] {
	return func(yield func(backends.ObjectInfo, error) bool) {
		for _, k := range l.keys {
			if strings.HasPrefix(k, opts.Prefix) && k > opts.StartAfter && !yield(backends.ObjectInfo{Key: k}, nil) {
				return
			}
		}
	}
}

func TestParseShard(t *testing.T) {
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == "JOB_COMPLETION_INDEX" {
				return v
			}
			return ""
		}
	}
	for _, tc := range []struct {
		in, idx string
		want    Shard
		bad     string
	}{
		{in: "0/1", want: Shard{0, 1}},
		{in: "3/4", want: Shard{3, 4}},
		{in: "auto/8", idx: "5", want: Shard{5, 8}},
		{in: "4/4", bad: "from 0 to 3"},
		{in: "x", bad: "I/N"},
		{in: "1/0", bad: "at least 1"},
		{in: "-1/4", bad: "from 0 to 3"},
		{in: "1/x", bad: "at least 1"},
		{in: "auto/4", bad: "JOB_COMPLETION_INDEX"},
		{in: "auto/4", idx: "4", bad: "from 0 to 3"},
	} {
		got, err := ParseShard(tc.in, env(tc.idx))
		switch {
		case tc.bad == "" && (err != nil || got != tc.want):
			t.Errorf("ParseShard(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		case tc.bad != "" && (err == nil || !strings.Contains(err.Error(), tc.bad)):
			t.Errorf("ParseShard(%q) error = %v; want one saying %q", tc.in, err, tc.bad)
		}
	}
}

// checkLayout asserts that every key is in exactly one shard's range, the
// one ShardOf names.
func checkLayout(t *testing.T, l Layout, keys []string) []int {
	t.Helper()
	counts := make([]int, l.Count())
	for _, k := range keys {
		in := -1
		for i := range l.Count() {
			if l.Range(i).Contains(k) {
				if in >= 0 {
					t.Fatalf("key %q in shards %d and %d (bounds %q)", k, in, i, l.Bounds)
				}
				in = i
			}
		}
		if in < 0 {
			t.Fatalf("key %q in no shard (bounds %q)", k, l.Bounds)
		}
		if s := l.ShardOf(k); s != in {
			t.Fatalf("ShardOf(%q) = %d, its range is shard %d", k, s, in)
		}
		counts[in]++
	}
	return counts
}

// keySets are layouts a source may have: skewed prefixes, unicode past
// the BMP, bytes sorting above any UTF-8 (binary order is what S3 sorts
// by, not code points), keys that are prefixes of others.
func keySets() map[string][]string {
	r := rand.New(rand.NewPCG(1, 2))
	sets := map[string][]string{}
	var skew []string
	for p, n := range []int{1, 3, 900, 20, 2500, 7, 400, 60, 1100, 2, 5, 300} {
		for i := range n {
			skew = append(skew, fmt.Sprintf("p%02d/%06d", p, i))
		}
	}
	skew = append(skew, "odd", "p", "p00", "zz-last")
	sets["skewed prefixes"] = skew
	var uni []string
	for i := range 3000 {
		uni = append(uni, fmt.Sprintf("%c/%d", rune(0x41+r.IntN(0x10FFFF-0x41)), i))
	}
	uni = append(uni, "é", "e\u0301", "\U0001F600", "\uFFFD", "\U0010FFFF", "\U0010FFFFz", "日本/語")
	sets["unicode"] = slices.DeleteFunc(uni, func(s string) bool { return !strings.ContainsFunc(s, func(r rune) bool { return r != 0xFFFD }) })
	var bin []string
	for range 2000 {
		b := make([]byte, 1+r.IntN(6))
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		bin = append(bin, string(b))
	}
	bin = append(bin, "\x00", "\xff", "\xff\xff", "a", "a\x00", "ab")
	sets["binary"] = bin
	var hex []string
	for i := range 4000 {
		hex = append(hex, crypto.HashedName([]byte("secret"), fmt.Sprint(i)))
	}
	sets["hashed"] = hex
	sets["empty"] = nil
	sets["one"] = []string{"only"}
	return sets
}

func TestLayoutsDisjointAndComplete(t *testing.T) {
	for _, keys := range keySets() {
		for _, n := range []int{1, 2, 3, 4, 7, 8, 16} {
			checkLayout(t, EvenLayout("", n, HexDigits), keys)
			checkLayout(t, EvenLayout("p", n, HexDigits), keys)
			// Unsorted bounds would break it: any sorted ones must not.
			r := rand.New(rand.NewPCG(uint64(n), 9))
			var bounds []string
			for range n - 1 {
				if len(keys) > 0 {
					bounds = append(bounds, keys[r.IntN(len(keys))])
				} else {
					bounds = append(bounds, "m")
				}
			}
			slices.Sort(bounds)
			checkLayout(t, Layout{Bounds: bounds}, keys)
			// The plan of an empty source: empty bounds, empty shards.
			checkLayout(t, Layout{Bounds: slices.Repeat([]string{""}, n-1)}, keys)
		}
	}
}

func TestEvenLayoutBalancesHashedNames(t *testing.T) {
	keys := keySets()["hashed"]
	for _, n := range []int{2, 4, 8, 16} {
		counts := checkLayout(t, EvenLayout("", n, HexDigits), keys)
		mean := float64(len(keys)) / float64(n)
		for i, c := range counts {
			if float64(c) < 0.75*mean || float64(c) > 1.25*mean {
				t.Errorf("%d shards: shard %d holds %d hashed names, mean %.0f: outside ±25%%", n, i, c, mean)
			}
		}
	}
}

func TestEvenLayoutsNest(t *testing.T) {
	// The bounds of 4 shards are bounds of 8: shard i of 8 is inside shard
	// i/2 of 4, so a journal of 4 covers a shard of 8 below it.
	l4, l8 := EvenLayout("x/", 4, HexDigits), EvenLayout("x/", 8, HexDigits)
	for i := range 8 {
		if !l4.Range(i / 2).Covers(l8.Range(i)) {
			t.Errorf("shard %d/8 %v is not inside shard %d/4 %v", i, l8.Range(i), i/2, l4.Range(i/2))
		}
	}
	if l4.Range(0).Covers(l8.Range(2)) || !(KeyRange{}).Covers(l8.Range(3)) || l8.Range(3).Covers(KeyRange{}) {
		t.Error("Covers is wrong about disjoint or whole ranges")
	}
}

func TestShardPlanBalancesSkewedSource(t *testing.T) {
	ctx := context.Background()
	var keys []string
	for _, k := range keySets()["skewed prefixes"] {
		keys = append(keys, "src/"+k)
	}
	slices.Sort(keys)
	src := listing{keys: keys}
	filter, _ := NewFilter(nil, nil)
	job := Job{Name: "j", Source: src, SourcePrefix: "src/", Dest: src, DestPrefix: "dst/", Filter: filter}
	for _, n := range []int{1, 4, 8} {
		plan, err := MakeShardPlan(ctx, job, n)
		if err != nil {
			t.Fatal(err)
		}
		if plan.Keys != int64(len(keys)) {
			t.Fatalf("plan counted %d keys, the source has %d", plan.Keys, len(keys))
		}
		l, err := plan.Layout(job)
		if err != nil {
			t.Fatal(err)
		}
		counts := checkLayout(t, l, keys)
		mean := float64(len(keys)) / float64(n)
		for i, c := range counts {
			if float64(c) < 0.75*mean || float64(c) > 1.25*mean {
				t.Errorf("%d shards: shard %d holds %d keys, mean %.0f: outside ±25%% (bounds %q)", n, i, c, mean, l.Bounds)
			}
		}
	}
	empty, err := MakeShardPlan(ctx, Job{Name: "e", Source: listing{}, Dest: listing{}, Filter: filter}, 4)
	if err != nil || len(empty.Bounds) != 3 {
		t.Fatalf("plan of an empty source: %+v, %v", empty, err)
	}
	if counts := checkLayout(t, Layout{Bounds: empty.Bounds}, []string{"a", "z"}); counts[3] != 2 {
		t.Errorf("with the plan of an empty source, new keys go to shards %v, want all in the last", counts)
	}
	other := job
	other.Name = "k"
	plan, _ := MakeShardPlan(ctx, job, 2)
	if _, err := plan.Layout(other); err == nil || !strings.Contains(err.Error(), `job "j"`) {
		t.Errorf("a plan for job j read for job k: %v", err)
	}
}
