// Package drill runs a disaster-recovery exercise on one job's replica, as a
// real disaster would see it: the destination alone. It restores a random
// sample through the normal restore path (replicator.Restore into a
// DirTarget), checks every object's SHA-256, and measures the recovery time
// (RTO) and the recovery point (RPO). The source and the journal, when they
// answer, are used only to compare.
package drill

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"time"

	"filippo.io/age"

	"github.com/voyageur-ca/voyageur/backends"
	"github.com/voyageur-ca/voyageur/crypto"
	"github.com/voyageur-ca/voyageur/journal"
	"github.com/voyageur-ca/voyageur/replicator"
)

// Sampling defaults: DefaultSample objects and, when the job holds that
// much, at least DefaultSampleBytes; the largest object joins the sample
// when it is at most MaxLargest.
const (
	DefaultSample      = 20
	DefaultSampleBytes = 64 << 20
	MaxLargest         = 1 << 30
)

// sourceListLimit bounds the source listing that looks for changes not yet
// replicated, and pendingLimit the journal queue items read for it.
const (
	sourceListLimit = 1000
	pendingLimit    = 100
)

// Options are one drill's settings.
type Options struct {
	// Identities decrypt the replica; required for encrypted jobs.
	Identities []age.Identity
	// Sample is the number of objects to restore (0: DefaultSample, with
	// at least DefaultSampleBytes); SampleBytes, when set instead, restores
	// objects until that many bytes are sampled.
	Sample      int
	SampleBytes int64
	// TempDir is where the sample is restored; it is removed afterwards
	// ("" = os.TempDir()).
	TempDir string
	// Journal, when not nil, is the job's journal, read to compare only
	// (its queue and index).
	Journal *journal.Job
}

// Failure is one sampled object that did not restore or verify.
type Failure struct {
	Key    string `json:"key"`
	Reason string `json:"reason"`
}

// Result is the measured outcome of one job's drill. Its JSON form is the
// report's per-job object (docs/disaster-recovery.md).
type Result struct {
	Job      string    `json:"job"`
	Sampled  int       `json:"sampled"`
	Verified int       `json:"verified"`
	Failed   []Failure `json:"failed"`
	// VerifiedAgainst counts verified objects by what their SHA-256 was
	// compared with: "source" (read again from the source) or "replica"
	// (the digest recorded in the replica's TRAILER; for plain replicas,
	// their byte count).
	VerifiedAgainst map[string]int `json:"verified_against"`

	ReplicaObjects int64 `json:"replica_objects"`
	ReplicaBytes   int64 `json:"replica_bytes"` // original sizes
	SampledBytes   int64 `json:"sampled_bytes"`

	CatalogSeconds        float64 `json:"catalog_seconds"`
	FirstByteSeconds      float64 `json:"first_byte_seconds"`
	RestoreSeconds        float64 `json:"restore_seconds"`
	RestoreBytesPerSecond float64 `json:"restore_bytes_per_second"`
	RTOSecondsEstimate    float64 `json:"rto_seconds_estimate"`
	RTOBasis              string  `json:"rto_basis"`

	RPOSeconds float64 `json:"rpo_seconds"`
	RPOBasis   string  `json:"rpo_basis"`
	// Unreplicated counts the changes found not yet replicated (journal
	// queue items, source objects newer than their replica or without one,
	// in the bounded listing).
	Unreplicated int `json:"unreplicated"`

	Started         time.Time `json:"started"`
	DurationSeconds float64   `json:"duration_seconds"`
}

// OK reports whether every sampled object restored and verified.
func (r *Result) OK() bool { return len(r.Failed) == 0 && r.Verified == r.Sampled }

// Run drills one job. The returned error is for a drill that could not be
// carried out (the replica cannot be listed, a wrong identity, no temporary
// directory); objects that fail are listed in Result.Failed.
func Run(ctx context.Context, job replicator.Job, opts Options) (Result, error) {
	res := Result{Job: job.Name, Failed: []Failure{}, VerifiedAgainst: map[string]int{}, Started: time.Now().UTC()}
	defer func() { res.DurationSeconds = time.Since(res.Started).Seconds() }()
	if job.Encryption != nil && len(opts.Identities) == 0 {
		return res, fmt.Errorf("drill %s: %w", job.Name, replicator.ErrNeedIdentity)
	}

	// The whole catalog, timed: it is the first step of a full restore.
	t0 := time.Now()
	var reps []replicator.Replica
	for rep, err := range replicator.Catalog(ctx, job, replicator.CatalogOptions{Identities: opts.Identities, Concurrency: job.Transfer.Concurrency}) {
		if err != nil && rep.DestKey == "" {
			return res, fmt.Errorf("drill %s: %w", job.Name, err)
		}
		if err != nil {
			res.Failed = append(res.Failed, Failure{Key: rep.DestKey, Reason: err.Error()})
			continue
		}
		reps = append(reps, rep)
		res.ReplicaObjects++
		res.ReplicaBytes += rep.Meta.Size
	}
	res.CatalogSeconds = time.Since(t0).Seconds()

	sample := pick(reps, opts)
	res.Sampled = len(sample)
	for _, rep := range sample {
		res.SampledBytes += rep.Meta.Size
	}
	if err := restoreSample(ctx, job, sample, opts, &res); err != nil {
		return res, err
	}
	res.estimateRTO()
	if err := measureRPO(ctx, job, reps, opts.Journal, &res); err != nil {
		return res, err
	}
	slices.SortFunc(res.Failed, func(a, b Failure) int {
		return cmpString(a.Key, b.Key)
	})
	return res, nil
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// pick chooses the sample: the largest object up to MaxLargest, then random
// objects until both the object and the byte targets are met (or the
// replica is exhausted).
func pick(reps []replicator.Replica, opts Options) []replicator.Replica {
	wantN, wantBytes := opts.Sample, opts.SampleBytes
	switch {
	case wantN == 0 && wantBytes == 0:
		wantN, wantBytes = DefaultSample, DefaultSampleBytes
	case wantN == 0:
		wantN = 1
	}
	order := rand.Perm(len(reps))
	largest := -1
	for i, r := range reps {
		if r.Meta.Size <= MaxLargest && (largest < 0 || r.Meta.Size > reps[largest].Meta.Size) {
			largest = i
		}
	}
	var out []replicator.Replica
	var bytes int64
	if largest >= 0 {
		out = append(out, reps[largest])
		bytes = reps[largest].Meta.Size
	}
	for _, i := range order {
		if len(out) >= wantN && bytes >= wantBytes {
			break
		}
		if i == largest {
			continue
		}
		out = append(out, reps[i])
		bytes += reps[i].Meta.Size
	}
	return out
}

// restoreSample restores the sample with replicator.Restore into a
// temporary directory and checks each object's SHA-256.
func restoreSample(ctx context.Context, job replicator.Job, sample []replicator.Replica, opts Options, res *Result) error {
	dir, err := os.MkdirTemp(opts.TempDir, "voyageur-drill-")
	if err != nil {
		return fmt.Errorf("drill %s: temporary directory: %w", job.Name, err)
	}
	defer os.RemoveAll(dir)
	dt, err := replicator.NewDirTarget(dir)
	if err != nil {
		return fmt.Errorf("drill %s: %w", job.Name, err)
	}
	defer dt.Close()
	st := &sampleTarget{DirTarget: dt, job: job, want: map[string]bool{}, against: map[string]string{}}
	for _, r := range sample {
		st.want[r.Meta.Key] = true
	}
	st.start = time.Now()
	s, err := replicator.Restore(ctx, job, st, replicator.RestoreOptions{Catalog: replicator.CatalogOptions{Identities: opts.Identities}})
	if err != nil {
		return fmt.Errorf("drill %s: %w", job.Name, err)
	}
	failed := map[string]bool{}
	for _, f := range s.Failures {
		failed[f.Key] = true
		res.Failed = append(res.Failed, Failure{Key: f.Key, Reason: f.Error})
	}
	for key, against := range st.against {
		if !failed[key] {
			res.Verified++
			res.VerifiedAgainst[against]++
		}
	}
	for key := range st.want {
		if _, done := st.against[key]; !done && !failed[key] {
			res.Failed = append(res.Failed, Failure{Key: key, Reason: "sampled but not restored (the replica changed during the drill?)"})
		}
	}
	if !st.first.IsZero() {
		res.FirstByteSeconds = st.first.Sub(st.start).Seconds()
		res.RestoreSeconds = st.last.Sub(st.firstWrite).Seconds()
	}
	if res.RestoreSeconds > 0 {
		res.RestoreBytesPerSecond = float64(res.SampledBytes) / res.RestoreSeconds
	}
	return nil
}

// estimateRTO extrapolates a full restore: the catalog as timed, then every
// byte at the sample's throughput.
func (r *Result) estimateRTO() {
	if r.RestoreBytesPerSecond <= 0 {
		r.RTOSecondsEstimate = r.CatalogSeconds
		r.RTOBasis = "catalog time only: no bytes were restored"
		return
	}
	r.RTOSecondsEstimate = r.CatalogSeconds + float64(r.ReplicaBytes)/r.RestoreBytesPerSecond
	r.RTOBasis = fmt.Sprintf("catalog_seconds (%.2f s for %d objects) + replica_bytes (%d) / restore_bytes_per_second (%.0f, measured on %d sampled objects, %d bytes, at the job's concurrency, into a local directory)",
		r.CatalogSeconds, r.ReplicaObjects, r.ReplicaBytes, r.RestoreBytesPerSecond, r.Sampled, r.SampledBytes)
}

// sampleTarget is a DirTarget that takes only the sampled keys (the others
// count as already restored, so Restore skips them), times the first and
// last bytes written, and checks each object's SHA-256.
type sampleTarget struct {
	*replicator.DirTarget
	job  replicator.Job
	want map[string]bool

	mu                       sync.Mutex
	start, first, firstWrite time.Time
	last                     time.Time
	against                  map[string]string // verified key → what it was checked against
}

func (t *sampleTarget) Restored(ctx context.Context, m crypto.Meta) (bool, error) {
	if !t.want[m.Key] {
		return true, nil
	}
	return t.DirTarget.Restored(ctx, m)
}

func (t *sampleTarget) Write(ctx context.Context, key string, fill func(io.Writer) (crypto.Meta, error)) error {
	t.mu.Lock()
	if t.firstWrite.IsZero() {
		t.firstWrite = time.Now()
	}
	t.mu.Unlock()
	h := sha256.New()
	var meta crypto.Meta
	err := t.DirTarget.Write(ctx, key, func(w io.Writer) (crypto.Meta, error) {
		m, err := fill(io.MultiWriter(&firstByte{w: w, t: t}, h))
		meta = m
		return m, err
	})
	if err != nil {
		return err
	}
	t.mu.Lock()
	t.last = time.Now()
	t.mu.Unlock()
	// Restore checked the replica's own digest (or byte count) already;
	// the source, where it still holds this version, is the better witness.
	against := "replica"
	if sum, ok := t.sourceSum(ctx, meta); ok {
		if !bytes.Equal(sum, h.Sum(nil)) {
			return fmt.Errorf("drill %s: the restored bytes differ from the source's (SHA-256)", key)
		}
		against = "source"
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.against[key] = against
	return nil
}

// sourceSum reads the source object m describes, only if it still is the
// version the replica holds (by ETag), and returns its SHA-256.
func (t *sampleTarget) sourceSum(ctx context.Context, m crypto.Meta) ([]byte, bool) {
	if t.job.Source == nil || m.ETag == "" {
		return nil, false
	}
	rc, _, err := t.job.Source.Get(ctx, m.Key, backends.GetOptions{IfMatch: m.ETag})
	if err != nil {
		return nil, false // gone, changed or unreachable: the replica's digest stands
	}
	defer rc.Close()
	h := sha256.New()
	if _, err := io.Copy(h, rc); err != nil {
		return nil, false
	}
	return h.Sum(nil), true
}

// firstByte notes when the first restored byte arrives.
type firstByte struct {
	w io.Writer
	t *sampleTarget
}

func (f *firstByte) Write(p []byte) (int, error) {
	if len(p) > 0 {
		f.t.mu.Lock()
		if f.t.first.IsZero() {
			f.t.first = time.Now()
		}
		f.t.mu.Unlock()
	}
	return f.w.Write(p)
}

// measureRPO finds the oldest change not yet replicated: queued in the
// journal, or (in a bounded listing of the source) an object newer than its
// replica or without one. Its age is the data a disaster now would lose.
func measureRPO(ctx context.Context, job replicator.Job, reps []replicator.Replica, jb *journal.Job, res *Result) error {
	now := time.Now()
	var oldest time.Time
	note := func(t time.Time) {
		res.Unreplicated++
		if !t.IsZero() && (oldest.IsZero() || t.Before(oldest)) {
			oldest = t
		}
	}
	basis := []string{}
	if jb != nil {
		pending, err := jb.Pending(0, pendingLimit)
		if err != nil {
			return fmt.Errorf("drill %s: %w", job.Name, err)
		}
		for _, c := range pending {
			t := c.EventTime
			if t.IsZero() && job.Source != nil {
				if info, err := job.Source.Stat(ctx, c.Key, ""); err == nil {
					t = info.LastModified
				}
			}
			note(t)
		}
		basis = append(basis, fmt.Sprintf("journal queue (%d items read)", len(pending)))
	}
	if job.Source != nil {
		replicated := make(map[string]time.Time, len(reps))
		for _, r := range reps {
			replicated[r.Meta.Key] = r.Meta.MTime
		}
		n := 0
		var lerr error
		for obj, err := range job.Source.List(ctx, backends.ListOptions{Prefix: job.SourcePrefix}) {
			if err != nil {
				lerr = err
				break
			}
			if !job.Filter.Match(obj.Key[len(job.SourcePrefix):]) {
				continue
			}
			if mt, ok := replicated[obj.Key]; !ok || obj.LastModified.After(mt.Add(time.Second)) {
				note(obj.LastModified)
			}
			if n++; n >= sourceListLimit {
				break
			}
		}
		switch {
		case lerr != nil && !errors.Is(lerr, context.Canceled):
			basis = append(basis, "source listing failed (source unreachable?): "+lerr.Error())
		default:
			basis = append(basis, fmt.Sprintf("source listing (%d objects compared with their replicas, at most %d)", n, sourceListLimit))
		}
	}
	if !oldest.IsZero() {
		res.RPOSeconds = now.Sub(oldest).Seconds()
	}
	res.RPOBasis = fmt.Sprintf("age of the oldest change not yet replicated, from: %v", basis)
	if len(basis) == 0 {
		res.RPOBasis = "unknown: neither the journal nor the source could be read"
	}
	return nil
}
