package replicator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/voyageur-ca/voyageur/backends"
)

// ErrShardChanged reports a journal whose index was built for other keys
// than the shard now asks for.
var ErrShardChanged = errors.New("the journal was built for another shard")

// HexDigits is the alphabet of hashed replica names (crypto.HashedName):
// their name space splits evenly over it without any discovery.
const HexDigits = "0123456789abcdef"

// Shard is worker Index of Count that split one job between them.
type Shard struct{ Index, Count int }

func (s Shard) String() string { return fmt.Sprintf("%d/%d", s.Index, s.Count) }

// ParseShard reads I/N (0 <= I < N), or auto/N with I taken from
// JOB_COMPLETION_INDEX as Kubernetes sets it in the pods of an Indexed Job.
func ParseShard(s string, getenv func(string) string) (Shard, error) {
	is, ns, ok := strings.Cut(s, "/")
	if !ok {
		return Shard{}, errors.New("want I/N (0 <= I < N) or auto/N")
	}
	n, err := strconv.Atoi(ns)
	if err != nil || n < 1 {
		return Shard{}, fmt.Errorf("shard count %q: want a whole number of at least 1", ns)
	}
	if is == "auto" {
		is = getenv("JOB_COMPLETION_INDEX")
		if is == "" {
			return Shard{}, errors.New("auto needs JOB_COMPLETION_INDEX (set in the pods of a Kubernetes Indexed Job)")
		}
	}
	i, err := strconv.Atoi(is)
	if err != nil || i < 0 || i >= n {
		return Shard{}, fmt.Errorf("shard index %q: want a whole number from 0 to %d", is, n-1)
	}
	return Shard{Index: i, Count: n}, nil
}

// KeyRange holds the keys k with After < k, and k <= Upto when Bounded.
// The zero KeyRange holds every key (no key is empty). A listing starts
// after After and stops past Upto, which is what S3 does cheaply
// (start-after, keys in order).
type KeyRange struct {
	After   string `json:"after"`
	Upto    string `json:"upto,omitempty"`
	Bounded bool   `json:"bounded,omitempty"`
}

// Contains reports whether key is in the range.
func (r KeyRange) Contains(key string) bool { return key > r.After && !r.Past(key) }

// Past reports whether key, and every key after it, is beyond the range.
func (r KeyRange) Past(key string) bool { return r.Bounded && key > r.Upto }

// Covers reports whether every key of o is in r.
func (r KeyRange) Covers(o KeyRange) bool {
	return o.After >= r.After && (!r.Bounded || (o.Bounded && o.Upto <= r.Upto))
}

// whole reports whether the range holds every key.
func (r KeyRange) whole() bool { return r == KeyRange{} }

// Layout splits the key space into len(Bounds)+1 contiguous ranges: shard
// i holds the keys after Bounds[i-1] up to Bounds[i]. Any sorted bounds make
// the shards disjoint and complete; how well they fit the keys decides only
// the balance.
type Layout struct{ Bounds []string }

// Count is the number of shards.
func (l Layout) Count() int { return len(l.Bounds) + 1 }

// Range returns shard i's keys.
func (l Layout) Range(i int) KeyRange {
	var r KeyRange
	if i > 0 {
		r.After = l.Bounds[i-1]
	}
	if i < len(l.Bounds) {
		r.Upto, r.Bounded = l.Bounds[i], true
	}
	return r
}

// ShardOf returns the shard that holds key.
func (l Layout) ShardOf(key string) int {
	return sort.Search(len(l.Bounds), func(i int) bool { return key <= l.Bounds[i] })
}

// EvenLayout splits the keys below prefix whose next characters are
// uniform over alphabet (sorted, as hashed names are over HexDigits) into
// n ranges of equal share.
func EvenLayout(prefix string, n int, alphabet string) Layout {
	base := len(alphabet)
	// The same digits for every n, so that the bounds of n shards are
	// bounds of 2n: a shard of 2n lies inside one of n. 2^24 steps keep
	// rounding far below a shard's share.
	digits, span := 1, base
	for span < 1<<24 {
		digits, span = digits+1, span*base
	}
	l := Layout{}
	for i := 1; i < n; i++ {
		v := i * span / n
		b := make([]byte, digits)
		for d := digits - 1; d >= 0; d-- {
			b[d] = alphabet[v%base]
			v /= base
		}
		l.Bounds = append(l.Bounds, prefix+string(b))
	}
	return l
}

// Mapped moves the bounds from below one prefix to below another, as
// plain replica names are the source keys under the destination prefix.
func (l Layout) Mapped(from, to string) Layout {
	m := Layout{Bounds: make([]string, len(l.Bounds))}
	for i, b := range l.Bounds {
		m.Bounds[i] = mapBound(b, from, to)
	}
	return m
}

// Mapped moves the range's bounds as Layout.Mapped does; an open end stays
// open.
func (r KeyRange) Mapped(from, to string) KeyRange {
	m := KeyRange{Bounded: r.Bounded}
	if r.After != "" {
		m.After = mapBound(r.After, from, to)
	}
	if r.Bounded {
		m.Upto = mapBound(r.Upto, from, to)
	}
	return m
}

func mapBound(b, from, to string) string {
	switch {
	case strings.HasPrefix(b, from):
		return to + b[len(from):]
	case b < from:
		return to
	}
	// Past every key below from: past every key below to.
	return to + "\U0010FFFF"
}

// ShardPlan is the layout of a job's source, found by one listing
// (voyageur shard-plan) and read by every shard, so that they all split
// the same way without talking to each other.
type ShardPlan struct {
	Job     string    `json:"job"`
	Target  string    `json:"target"`
	Shards  int       `json:"shards"`
	Keys    int64     `json:"keys"`
	Created time.Time `json:"created"`
	// Bounds are Shards-1 sorted source keys (see Layout).
	Bounds []string `json:"bounds"`
}

// Layout returns the plan's layout after checking it belongs to job.
func (p ShardPlan) Layout(job Job) (Layout, error) {
	switch {
	case p.Job != job.Name:
		return Layout{}, fmt.Errorf("the plan is for job %q, not %q", p.Job, job.Name)
	case p.Target != job.target():
		return Layout{}, fmt.Errorf("the plan is for %s, the config now says %s", p.Target, job.target())
	case len(p.Bounds) != p.Shards-1 || !slices.IsSorted(p.Bounds):
		return Layout{}, fmt.Errorf("the plan's bounds are not %d sorted keys", p.Shards-1)
	}
	return Layout{Bounds: p.Bounds}, nil
}

// planSample caps the keys MakeShardPlan keeps per shard: each bound is
// then within 1/planSample of a shard's share of its ideal place.
const planSample = 1024

// MakeShardPlan lists the job's source once and returns the bounds that
// give n shards the same number of (filtered) keys. Memory is bounded: it
// keeps every step-th key, doubling step as the listing grows.
func MakeShardPlan(ctx context.Context, job Job, n int) (ShardPlan, error) {
	var sample []string
	step, total := int64(1), int64(0)
	for obj, err := range job.Source.List(ctx, backends.ListOptions{Prefix: job.SourcePrefix}) {
		if err != nil {
			return ShardPlan{}, fmt.Errorf("list source %s/%s: %w", job.Source.Name(), job.SourcePrefix, err)
		}
		if !job.Filter.Match(strings.TrimPrefix(obj.Key, job.SourcePrefix)) {
			continue
		}
		if total%step == 0 {
			sample = append(sample, obj.Key)
			if len(sample) >= 2*planSample*n {
				sample = decimate(sample)
				step *= 2
			}
		}
		total++
	}
	p := ShardPlan{Job: job.Name, Target: job.target(), Shards: n, Keys: total, Created: time.Now().UTC(), Bounds: []string{}}
	for i := 1; i < n; i++ {
		// The key at rank i*total/n - 1 ends shard i-1.
		rank := int64(i)*total/int64(n) - 1
		j := min(max(rank/step, 0), int64(len(sample))-1)
		b := job.SourcePrefix // no keys: any bound will do
		if j >= 0 {
			b = sample[j]
		}
		// JSON carries only valid UTF-8; any string is a bound, so a
		// binary key is cut to its valid part (and the bounds re-sorted).
		p.Bounds = append(p.Bounds, strings.ToValidUTF8(b, ""))
	}
	slices.Sort(p.Bounds)
	return p, nil
}

// decimate keeps every other key.
func decimate(s []string) []string {
	out := s[:0]
	for i := 0; i < len(s); i += 2 {
		out = append(out, s[i])
	}
	return out
}

// ReadShardPlan decodes a plan file's content.
func ReadShardPlan(raw []byte) (ShardPlan, error) {
	var p ShardPlan
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return ShardPlan{}, fmt.Errorf("decode shard plan: %w", err)
	}
	if p.Shards < 1 {
		return ShardPlan{}, fmt.Errorf("shard plan: shards %d: want at least 1", p.Shards)
	}
	return p, nil
}

// JobShard is the part of a job's keys one shard syncs.
type JobShard struct {
	Shard Shard
	// Range is the shard's source keys.
	Range KeyRange
}

// shardCursor names the journal cursor holding the source keys its index
// covers (absent: all of them).
const shardCursor = "shard"

// keyRange returns the source keys this run owns.
func (r *run) keyRange() KeyRange {
	if r.job.Shard == nil {
		return KeyRange{}
	}
	return r.job.Shard.Range
}

// checkShard ties the journal's index to the keys it covers. An index
// that covers the shard's range knows every replica in it, so the shard's
// copies and deletes are right; it keeps the range it covers, since its
// entries outside this shard's are still true enough to run the wider
// range again (a stale one costs a copy, never a delete). An index that
// covers less would miss the deletes of keys it never saw, and is refused
// unless it is empty: a fresh journal records this shard's range and
// rebuilds its index from the destination's fingerprints, finding those
// deletes by their replicas (addOrphans) where names tell the keys.
func (r *run) checkShard() error {
	want := r.keyRange()
	raw, err := r.jb.Cursor(shardCursor)
	if err != nil {
		return err
	}
	n, err := r.jb.IndexCount()
	if err != nil {
		return err
	}
	q, err := r.jb.QueueLen()
	if err != nil {
		return err
	}
	have := KeyRange{} // no cursor: the index of an unsharded run
	if raw != nil {
		if err := json.Unmarshal(raw, &have); err != nil {
			return fmt.Errorf("job %s: read the journal's shard range: %w", r.job.Name, err)
		}
	}
	fresh := n+q == 0
	if !fresh && have.Covers(want) {
		return nil
	}
	if !fresh {
		return fmt.Errorf("job %s: %w: its index covers the source keys %s, this run (shard %s) owns %s; "+
			"rerun with the layout this journal was built for, or give each shard a new journal (--journal): "+
			"its first run rebuilds the index from the destination's fingerprints and copies nothing again "+
			"(with hashed names, run the old layout once just before, so that no delete is pending: "+
			"a shard cannot tell the replicas of keys deleted since)",
			r.job.Name, ErrShardChanged, have, r.shardName(), want)
	}
	if r.opts.DryRun {
		return nil
	}
	if want.whole() {
		return r.jb.SetCursor(shardCursor, nil)
	}
	raw, err = json.Marshal(want)
	if err != nil {
		return err
	}
	return r.jb.SetCursor(shardCursor, raw)
}

func (r *run) shardName() string {
	if r.job.Shard == nil {
		return "unsharded"
	}
	return r.job.Shard.Shard.String()
}

func (r KeyRange) String() string {
	if r.whole() {
		return "(all)"
	}
	up := "end"
	if r.Bounded {
		up = strconv.Quote(r.Upto)
	}
	return fmt.Sprintf("(%q, %s]", r.After, up)
}
