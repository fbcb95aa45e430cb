// Package drill runs a disaster-recovery exercise on one job's replica, as a
// real disaster would see it: the destination alone. It restores a random
// sample through the normal restore path (recovery.Restore into a
// DirTarget), checks every object's SHA-256, reads the sample again through
// the failover path (voyageur serve, in-process), and measures the recovery time
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
	"iter"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"filippo.io/age"

	"github.com/voyageur-ca/voyageur/backends"
	"github.com/voyageur-ca/voyageur/crypto"
	"github.com/voyageur-ca/voyageur/replicator"
	"github.com/voyageur-ca/voyageur/replicator/recovery"
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
// replicated.
const sourceListLimit = 1000

// Options are one drill's settings.
type Options struct {
	// Identities decrypt the replica; required for encrypted jobs.
	// IdentityFiles are the files they were read from (the host scan
	// skips them).
	Identities    []age.Identity
	IdentityFiles []string
	// Sample is the number of objects to restore (0: DefaultSample, with
	// at least DefaultSampleBytes); SampleBytes, when set instead, restores
	// objects until that many bytes are sampled.
	Sample      int
	SampleBytes int64
	// TempDir is where the sample is restored; it is removed afterwards
	// ("" = os.TempDir()).
	TempDir string
	// Journal, when not nil, is what the job's journal says (ReadJournal),
	// to compare only; JournalNote says why it is nil.
	Journal     *JournalFacts
	JournalNote string
	// Endpoint is the destination's configuration, for residency.
	Endpoint Endpoint
	// Objectives are the job's targets; zero fields are not checked.
	Objectives Objectives
	// HostPaths are where identity files are looked for on this host
	// (files, or directories read one level deep).
	HostPaths []string
}

// Objectives are a job's recovery targets (`objectives: {rpo, rto}`).
type Objectives struct {
	RPO, RTO time.Duration
}

// ObjectivesResult compares the measured figures with the objectives; a
// met field is null when its objective is not set.
type ObjectivesResult struct {
	RPOSeconds float64 `json:"rpo_seconds,omitempty"`
	RTOSeconds float64 `json:"rto_seconds,omitempty"`
	RPOMet     *bool   `json:"rpo_met"`
	RTOMet     *bool   `json:"rto_met"`
}

// Failure is one sampled object that did not restore or verify.
type Failure struct {
	Key    string `json:"key"`
	Reason string `json:"reason"`
}

// Result is the measured outcome of one job's drill. Its JSON form is the
// report's per-job object (docs/disaster-recovery.md).
type Result struct {
	Job    string `json:"job"`
	Passed bool   `json:"passed"`
	// Problems says why the job did not pass, one line each.
	Problems []string `json:"problems"`
	// Error is set when the drill could not be carried out at all.
	Error    string    `json:"error,omitempty"`
	Sampled  int       `json:"sampled"`
	Verified int       `json:"verified"`
	Failed   []Failure `json:"failed"`
	// VerifiedAgainst counts verified objects by what their SHA-256 was
	// compared with: "source" (read again from the source, still the
	// version replicated) or "replica" (the digest recorded in the
	// replica's TRAILER; for plain replicas, their byte count).
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

	// ServeVerified counts the verified objects read again through the
	// failover path (an in-process voyageur serve, one S3 GET each) with
	// the same SHA-256; ServeNote says why that path was not checked.
	ServeVerified       int     `json:"serve_verified"`
	ServeSeconds        float64 `json:"serve_seconds"`
	ServeBytesPerSecond float64 `json:"serve_bytes_per_second"`
	ServeNote           string  `json:"serve_note,omitempty"`

	// RPOSeconds is null when neither the journal nor the source could be
	// read: unknown, not zero.
	RPOSeconds *float64 `json:"rpo_seconds"`
	RPOBasis   string   `json:"rpo_basis"`
	// Unreplicated counts the changes found not yet replicated (journal
	// queue items, source objects newer than their replica or without one,
	// in the bounded listing).
	Unreplicated int `json:"unreplicated"`
	// LagHistogram (watch jobs) counts LagObjects replicas by their lag,
	// from the journal's index; LagHistory is the journal's run history.
	LagHistogram []LagBucket `json:"lag_histogram,omitempty"`
	LagObjects   int         `json:"lag_objects,omitempty"`
	LagHistory   []LagPoint  `json:"lag_history"`

	Destination Destination       `json:"destination"`
	Recipients  []string          `json:"recipients"`
	Custody     Custody           `json:"key_custody"`
	Objectives  *ObjectivesResult `json:"objectives"`

	Started         time.Time `json:"started"`
	DurationSeconds float64   `json:"duration_seconds"`
}

// Run drills one job. The returned error is for a drill that could not be
// carried out (the replica cannot be listed, a wrong identity, no temporary
// directory); it is also in Result.Error, and the result did not pass.
// Objects that fail are listed in Result.Failed.
func Run(ctx context.Context, job replicator.Job, opts Options) (res Result, err error) {
	res = Result{Job: job.Name, Problems: []string{}, Failed: []Failure{}, VerifiedAgainst: map[string]int{},
		LagHistory: []LagPoint{}, Recipients: []string{}, Started: time.Now().UTC()}
	defer func() {
		if err != nil {
			res.Error = err.Error()
		}
		res.finish(opts.Objectives)
		res.DurationSeconds = round(time.Since(res.Started).Seconds())
	}()
	res.custody(job, opts)
	if res.Destination, err = Locate(opts.Endpoint); err != nil {
		return res, fmt.Errorf("drill %s: destination: %w", job.Name, err)
	}
	if job.Encryption != nil && len(opts.Identities) == 0 {
		return res, fmt.Errorf("drill %s: %w", job.Name, recovery.ErrNeedIdentity)
	}

	// The whole catalog, timed: it is the first step of a full restore.
	t0 := time.Now()
	var firstReplica time.Duration
	var reps []recovery.Replica
	for rep, err := range recovery.Catalog(ctx, job, recovery.CatalogOptions{Identities: opts.Identities, Concurrency: job.Transfer.Concurrency}) {
		if err != nil && rep.DestKey == "" {
			return res, fmt.Errorf("drill %s: %w", job.Name, err)
		}
		if err != nil {
			// Every replica's META is read: one that fails there counts as
			// sampled, and is named by its original key when the journal
			// knows it.
			key := rep.DestKey
			if opts.Journal != nil && opts.Journal.Keys[key] != "" {
				key = opts.Journal.Keys[key]
			}
			res.Sampled++
			res.Failed = append(res.Failed, Failure{Key: key, Reason: err.Error()})
			continue
		}
		if firstReplica == 0 {
			firstReplica = time.Since(t0)
		}
		reps = append(reps, rep)
		res.ReplicaObjects++
		res.ReplicaBytes += rep.Meta.Size
	}
	res.CatalogSeconds = round(time.Since(t0).Seconds())

	sample := pick(reps, opts)
	res.Sampled += len(sample)
	for _, rep := range sample {
		res.SampledBytes += rep.Meta.Size
	}
	if err := restoreSample(ctx, job, sample, opts, firstReplica, &res); err != nil {
		return res, err
	}
	res.estimateRTO()
	measureRPO(ctx, job, reps, opts, &res)
	if jf := opts.Journal; jf != nil {
		res.LagHistory, res.LagHistogram, res.LagObjects = jf.History, jf.Histogram, jf.HistogramObjects
	}
	slices.SortFunc(res.Failed, func(a, b Failure) int { return strings.Compare(a.Key, b.Key) })
	return res, nil
}

// custody fills in the recipients, the identities that match them and the
// retention.
func (r *Result) custody(job replicator.Job, opts Options) {
	r.Custody = Custody{DrillIdentity: []string{}, HostIdentities: []HostIdentity{}, Searched: opts.HostPaths, Retention: "none"}
	if r.Custody.Searched == nil {
		r.Custody.Searched = []string{}
	}
	if job.Encryption != nil {
		r.Recipients = Fingerprints(job.Encryption.Options.Recipients)
		r.Custody.DrillIdentity = matching(publicKeys(opts.Identities), r.Recipients)
		r.Custody.HostIdentities = scanHost(opts.HostPaths, opts.IdentityFiles, r.Recipients)
	}
	if rt := job.Retention; rt != nil {
		r.Custody.Retention = fmt.Sprintf("%s, %d days", strings.ToLower(string(rt.Mode)), rt.Days)
	}
}

// finish compares the figures with the objectives and decides whether the
// job passed.
func (r *Result) finish(obj Objectives) {
	if r.Error != "" {
		r.Problems = append(r.Problems, "the drill could not be carried out: "+r.Error)
	}
	if n := len(r.Failed); n > 0 {
		r.Problems = append(r.Problems, fmt.Sprintf("%d objects did not restore or verify", n))
	}
	if r.Error == "" && len(r.Failed) == 0 && r.Verified != r.Sampled {
		r.Problems = append(r.Problems, fmt.Sprintf("%d of %d sampled objects verified", r.Verified, r.Sampled))
	}
	if obj.RPO > 0 || obj.RTO > 0 {
		r.Objectives = &ObjectivesResult{RPOSeconds: obj.RPO.Seconds(), RTOSeconds: obj.RTO.Seconds()}
	}
	if obj.RPO > 0 {
		met := r.RPOSeconds != nil && *r.RPOSeconds <= obj.RPO.Seconds()
		r.Objectives.RPOMet = &met
		switch {
		case r.RPOSeconds == nil:
			r.Problems = append(r.Problems, fmt.Sprintf("RPO objective %s: the RPO could not be measured", obj.RPO))
		case !met:
			r.Problems = append(r.Problems, fmt.Sprintf("RPO objective %s missed: %s measured", obj.RPO, seconds(*r.RPOSeconds)))
		}
	}
	if obj.RTO > 0 {
		met := r.Error == "" && r.RTOSecondsEstimate <= obj.RTO.Seconds()
		r.Objectives.RTOMet = &met
		if !met && r.Error == "" {
			r.Problems = append(r.Problems, fmt.Sprintf("RTO objective %s missed: %s estimated", obj.RTO, seconds(r.RTOSecondsEstimate)))
		}
	}
	r.Passed = len(r.Problems) == 0
}

// seconds prints a duration given in seconds, rounded for reading.
func seconds(s float64) string {
	d := time.Duration(s * float64(time.Second))
	switch {
	case d >= time.Minute:
		return d.Round(time.Second).String()
	case d >= time.Second:
		return d.Round(10 * time.Millisecond).String()
	}
	return d.Round(time.Millisecond).String()
}

// pick chooses the sample: the largest object up to MaxLargest, then random
// objects until both the object and the byte targets are met (or the
// replica is exhausted).
func pick(reps []recovery.Replica, opts Options) []recovery.Replica {
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
	var out []recovery.Replica
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

// restoreSample restores the sample with recovery.Restore into a
// temporary directory, the replica listing narrowed to the sampled keys so
// that the restore runs at the job's concurrency on them alone, and checks
// each object's SHA-256: Restore checks the replica's recorded digest, and
// the drill then compares with the source where it still holds the version
// replicated.
func restoreSample(ctx context.Context, job replicator.Job, sample []recovery.Replica, opts Options, firstReplica time.Duration, res *Result) error {
	dir, err := os.MkdirTemp(opts.TempDir, "voyageur-drill-")
	if err != nil {
		return fmt.Errorf("drill %s: temporary directory: %w", job.Name, err)
	}
	defer os.RemoveAll(dir)
	dt, err := recovery.NewDirTarget(dir)
	if err != nil {
		return fmt.Errorf("drill %s: %w", job.Name, err)
	}
	defer dt.Close()
	st := &sampleTarget{DirTarget: dt, done: map[string]restored{}}
	keys := map[string]bool{}
	for _, r := range sample {
		keys[r.DestKey] = true
	}
	narrowed := job
	narrowed.Dest = &sampleBucket{Bucket: job.Dest, keys: keys}
	t0 := time.Now()
	s, err := recovery.Restore(ctx, narrowed, st, recovery.RestoreOptions{Catalog: recovery.CatalogOptions{Identities: opts.Identities}})
	res.RestoreSeconds = round(time.Since(t0).Seconds())
	if err != nil {
		return fmt.Errorf("drill %s: %w", job.Name, err)
	}
	failed := map[string]bool{}
	for _, f := range s.Failures {
		failed[f.Key] = true
		res.Failed = append(res.Failed, Failure{Key: f.Key, Reason: f.Error})
	}
	src := job.Source
	sums := map[string][]byte{}
	for _, r := range sample {
		key := r.Meta.Key
		done, ok := st.done[key]
		switch {
		case failed[key]:
		case !ok:
			res.Failed = append(res.Failed, Failure{Key: key, Reason: "sampled but not restored (the replica changed during the drill?)"})
		default:
			against, reachable, err := againstSource(ctx, src, done)
			if !reachable {
				src = nil // one unreachable source is enough: no retries per object
			}
			if err != nil {
				res.Failed = append(res.Failed, Failure{Key: key, Reason: err.Error()})
				continue
			}
			res.Verified++
			res.VerifiedAgainst[against]++
			sums[key] = done.sum
		}
	}
	serveSample(ctx, narrowed, sample, sums, opts, res)
	if len(st.latencies) > 0 {
		slices.Sort(st.latencies)
		res.FirstByteSeconds = round((firstReplica + st.latencies[len(st.latencies)/2]).Seconds())
	}
	if busy := st.last.Sub(st.firstWrite).Seconds(); busy > 0 && res.SampledBytes > 0 {
		res.RestoreBytesPerSecond = round(float64(res.SampledBytes) / busy)
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
	r.RTOSecondsEstimate = round(r.CatalogSeconds + float64(r.ReplicaBytes)/r.RestoreBytesPerSecond)
	r.RTOBasis = fmt.Sprintf("catalog_seconds (%.3f s for %d objects) + replica_bytes (%d) / restore_bytes_per_second (%.0f, measured on %d sampled objects, %d bytes, at the job's concurrency, into a local directory)",
		r.CatalogSeconds, r.ReplicaObjects, r.ReplicaBytes, r.RestoreBytesPerSecond, r.Sampled, r.SampledBytes)
}

// sampleBucket is the destination with its listing narrowed to the sampled
// replicas: everything else (the reads) goes to the destination itself.
type sampleBucket struct {
	backends.Bucket
	keys map[string]bool
}

var _ backends.Bucket = (*sampleBucket)(nil)

func (b *sampleBucket) List(ctx context.Context, opts backends.ListOptions) iter.Seq2[backends.ObjectInfo, error] {
	return func(yield func(backends.ObjectInfo, error) bool) {
		for obj, err := range b.Bucket.List(ctx, opts) {
			if err == nil && !b.keys[obj.Key] {
				continue
			}
			if !yield(obj, err) {
				return
			}
		}
	}
}

// restored is one object the sample restore wrote: its META and the
// SHA-256 of the bytes written.
type restored struct {
	meta crypto.Meta
	sum  []byte
}

// sampleTarget is a DirTarget that hashes what it writes, and times each
// object from its write (the GET of its replica) to its first byte, and
// the sample from the first write to the last.
type sampleTarget struct {
	*recovery.DirTarget

	mu               sync.Mutex
	firstWrite, last time.Time
	latencies        []time.Duration
	done             map[string]restored
}

func (t *sampleTarget) Write(ctx context.Context, key string, fill func(io.Writer) (crypto.Meta, error)) error {
	start := time.Now()
	t.mu.Lock()
	if t.firstWrite.IsZero() {
		t.firstWrite = start
	}
	t.mu.Unlock()
	h := sha256.New()
	var meta crypto.Meta
	err := t.DirTarget.Write(ctx, key, func(w io.Writer) (crypto.Meta, error) {
		m, err := fill(&firstByte{w: io.MultiWriter(w, h), start: start, t: t})
		meta = m
		return m, err
	})
	if err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.last = time.Now()
	t.done[key] = restored{meta: meta, sum: h.Sum(nil)}
	return nil
}

// firstByte notes how long one object's first restored byte took.
type firstByte struct {
	w     io.Writer
	start time.Time
	seen  bool
	t     *sampleTarget
}

func (f *firstByte) Write(p []byte) (int, error) {
	if len(p) > 0 && !f.seen {
		f.seen = true
		f.t.mu.Lock()
		f.t.latencies = append(f.t.latencies, time.Since(f.start))
		f.t.mu.Unlock()
	}
	return f.w.Write(p)
}

// againstSource compares a restored object with its source, if the source
// still holds the version replicated (by ETag): "source" when it matched,
// "replica" when the source could not witness (gone, changed, unreachable,
// or a plain replica, which records no source ETag), and an error when the
// bytes differ. reachable is false when the source did not answer.
func againstSource(ctx context.Context, src backends.Bucket, o restored) (against string, reachable bool, err error) {
	if src == nil || o.meta.ETag == "" {
		return "replica", src != nil, nil
	}
	rc, _, err := src.Get(ctx, o.meta.Key, backends.GetOptions{IfMatch: o.meta.ETag})
	if err != nil {
		// Gone or changed: the replica's digest stands.
		answered := backends.IsNotExist(err) || errors.Is(err, backends.ErrPreconditionFailed)
		return "replica", answered, nil
	}
	defer rc.Close()
	h := sha256.New()
	if _, err := io.Copy(h, rc); err != nil {
		return "replica", false, nil
	}
	if !bytes.Equal(h.Sum(nil), o.sum) {
		return "", true, errors.New("the restored bytes differ from the source's (SHA-256), though the source still holds the version replicated")
	}
	return "source", true, nil
}

// measureRPO finds the oldest change not yet replicated: queued in the
// journal, or (in a bounded listing of the source) an object newer than its
// replica or without one. Its age is the data a disaster now would lose.
func measureRPO(ctx context.Context, job replicator.Job, reps []recovery.Replica, opts Options, res *Result) {
	now := time.Now()
	var oldest time.Time
	note := func(t time.Time) {
		res.Unreplicated++
		if !t.IsZero() && (oldest.IsZero() || t.Before(oldest)) {
			oldest = t
		}
	}
	measured := false
	var basis []string
	if jf := opts.Journal; jf != nil {
		pending := jf.Pending
		for _, c := range pending {
			t := c.EventTime
			if t.IsZero() && job.Source != nil {
				if info, err := job.Source.Stat(ctx, c.Key, ""); err == nil {
					t = info.LastModified
				}
			}
			note(t)
		}
		measured = true
		basis = append(basis, fmt.Sprintf("journal queue (%d items read, at most %d)", len(pending), pendingLimit))
	} else if opts.JournalNote != "" {
		basis = append(basis, "journal not read: "+opts.JournalNote)
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
			if !job.Filter.Match(strings.TrimPrefix(obj.Key, job.SourcePrefix)) {
				continue
			}
			// Listings carry whole seconds on some stores; META keeps more.
			if mt, ok := replicated[obj.Key]; !ok || obj.LastModified.After(mt.Add(time.Second)) {
				note(obj.LastModified)
			}
			if n++; n >= sourceListLimit {
				break
			}
		}
		if lerr != nil {
			basis = append(basis, "source listing failed (source unreachable?): "+lerr.Error())
		} else {
			measured = true
			basis = append(basis, fmt.Sprintf("source listing (%d objects compared with their replicas, at most %d)", n, sourceListLimit))
		}
	}
	switch {
	case !measured:
		res.RPOBasis = "unknown: neither the journal nor the source could be read; " + strings.Join(basis, "; ")
	case oldest.IsZero():
		zero := 0.0
		res.RPOSeconds = &zero
		res.RPOBasis = "nothing found unreplicated, from: " + strings.Join(basis, "; ")
	default:
		v := round(now.Sub(oldest).Seconds())
		res.RPOSeconds = &v
		res.RPOBasis = "age of the oldest change not yet replicated, from: " + strings.Join(basis, "; ")
	}
}
