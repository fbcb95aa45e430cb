package drill

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"filippo.io/age"

	"github.com/voyageur-ca/voyageur/backends"
	"github.com/voyageur-ca/voyageur/replicator"
	"github.com/voyageur-ca/voyageur/replicator/recovery"
)

// Report is one drill of one or more jobs: the JSON of --json and of
// --report's drill-YYYYMMDDTHHMMSSZ.json.
type Report struct {
	Passed          bool      `json:"passed"`
	Started         time.Time `json:"started"`
	DurationSeconds float64   `json:"duration_seconds"`
	Host            string    `json:"host"`
	Version         string    `json:"version"`
	Jobs            []Result  `json:"jobs"`
}

// NewReport gathers the jobs' results.
func NewReport(started time.Time, version string, jobs []Result) Report {
	host, _ := os.Hostname()
	r := Report{Passed: true, Started: started.UTC().Truncate(time.Second), Host: host, Version: version, Jobs: jobs}
	for _, j := range jobs {
		r.Passed = r.Passed && j.Passed
	}
	r.DurationSeconds = round(time.Since(started).Seconds())
	return r
}

// reportTime is the time format of report names.
const reportTime = "20060102T150405Z"

// FileName is the report's name in a --report directory.
func (r *Report) FileName() string {
	return "drill-" + r.Started.UTC().Format(reportTime) + ".json"
}

// WriteFiles writes the report's JSON and its HTML page into dir (created
// if needed), and returns their paths. The page charts the history of the
// drills found in dir. Each file is written whole or not at all.
func (r *Report) WriteFiles(dir string) (jsonPath, htmlPath string, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", fmt.Errorf("report directory: %w", err)
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", "", fmt.Errorf("encode report: %w", err)
	}
	jsonPath = filepath.Join(dir, r.FileName())
	if _, err := os.Lstat(jsonPath); err == nil {
		return "", "", fmt.Errorf("write %s: a drill report of that second exists already", jsonPath)
	}
	if err := writeFile(jsonPath, append(b, '\n')); err != nil {
		return "", "", err
	}
	history, err := ReadDir(dir)
	if err != nil {
		return jsonPath, "", err
	}
	var page bytes.Buffer
	if err := r.HTML(&page, history); err != nil {
		return jsonPath, "", err
	}
	htmlPath = strings.TrimSuffix(jsonPath, ".json") + ".html"
	return jsonPath, htmlPath, writeFile(htmlPath, page.Bytes())
}

// writeFile writes b to path through a temporary file and a rename.
func writeFile(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".drill-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// ReadDir reads the drill reports (drill-*.json) in dir, oldest first. A
// file that is not a report is skipped: the directory is the operator's.
func ReadDir(dir string) ([]Report, error) {
	names, err := filepath.Glob(filepath.Join(dir, "drill-*.json"))
	if err != nil {
		return nil, err
	}
	var out []Report
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			return nil, fmt.Errorf("read report %s: %w", n, err)
		}
		var r Report
		if json.Unmarshal(b, &r) == nil && !r.Started.IsZero() {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b Report) int { return a.Started.Compare(b.Started) })
	return out, nil
}

// historyPrefix is where a job's drill reports are kept at its
// destination, below the reserved prefix.
const historyPrefix = replicator.ReservedPrefix + "drills/"

// Store keeps the job's part of the report at its destination, under the
// reserved prefix: encrypted to the job's recipients (an age file of the
// JSON) when the job encrypts, as JSON when its replica is plain too, and
// under the job's object-lock retention when it has one. It returns the
// key written.
func Store(ctx context.Context, job replicator.Job, r Report, res Result) (string, error) {
	one := r
	one.Jobs, one.Passed = []Result{res}, res.Passed
	b, err := json.Marshal(one)
	if err != nil {
		return "", fmt.Errorf("encode report: %w", err)
	}
	// One name per job: jobs may share a destination prefix.
	key := job.DestPrefix + historyPrefix + strings.TrimSuffix(r.FileName(), ".json") + "-" + url.PathEscape(job.Name) + ".json"
	opts := backends.PutOptions{ContentType: "application/json"}
	if job.Encryption != nil {
		var buf bytes.Buffer
		w, err := age.Encrypt(&buf, job.Encryption.Options.Recipients...)
		if err != nil {
			return "", fmt.Errorf("encrypt report: %w", err)
		}
		if _, err := w.Write(b); err != nil {
			return "", fmt.Errorf("encrypt report: %w", err)
		}
		if err := w.Close(); err != nil {
			return "", fmt.Errorf("encrypt report: %w", err)
		}
		b, key = buf.Bytes(), key+".age"
		opts.ContentType = "application/octet-stream"
	}
	if rt := job.Retention; rt != nil {
		opts.LockMode, opts.LockUntil = rt.Mode, time.Now().UTC().AddDate(0, 0, rt.Days)
	}
	if _, err := job.Dest.Stat(ctx, key, ""); err == nil {
		return "", fmt.Errorf("store report %s at %s: a drill report of that second exists already", key, job.Dest.Name())
	}
	if _, err := job.Dest.Put(ctx, key, bytes.NewReader(b), int64(len(b)), opts); err != nil {
		return "", fmt.Errorf("store report %s at %s: %w", key, job.Dest.Name(), err)
	}
	return key, nil
}

// maxStoredReport bounds what History reads of one stored report.
const maxStoredReport = 16 << 20

// Stored is one drill report kept at a job's destination.
type Stored struct {
	Key    string
	Report Report
}

// History reads the drill reports stored at the job's destination, newest
// first. A report that does not decrypt or parse is an error naming it.
func History(ctx context.Context, job replicator.Job, ids []age.Identity) ([]Stored, error) {
	var out []Stored
	for obj, err := range job.Dest.List(ctx, backends.ListOptions{Prefix: job.DestPrefix + historyPrefix}) {
		if err != nil {
			return nil, fmt.Errorf("list drill reports of %s: %w", job.Name, err)
		}
		rc, _, err := job.Dest.Get(ctx, obj.Key, backends.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("read drill report %s: %w", obj.Key, err)
		}
		r, err := decodeStored(rc, obj.Key, ids)
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("read drill report %s: %w", obj.Key, err)
		}
		out = append(out, Stored{Key: obj.Key, Report: r})
	}
	slices.SortFunc(out, func(a, b Stored) int { return b.Report.Started.Compare(a.Report.Started) })
	return out, nil
}

func decodeStored(rc io.Reader, key string, ids []age.Identity) (Report, error) {
	var src io.Reader = io.LimitReader(rc, maxStoredReport)
	if strings.HasSuffix(key, ".age") {
		if len(ids) == 0 {
			return Report{}, recovery.ErrNeedIdentity
		}
		d, err := age.Decrypt(src, ids...)
		if err != nil {
			return Report{}, err
		}
		src = io.LimitReader(d, maxStoredReport)
	}
	var r Report
	if err := json.NewDecoder(src).Decode(&r); err != nil {
		return Report{}, fmt.Errorf("decode: %w", err)
	}
	if len(r.Jobs) != 1 {
		return Report{}, errors.New("not a drill report of one job")
	}
	return r, nil
}
