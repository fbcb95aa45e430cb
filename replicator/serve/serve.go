// Package serve answers S3 requests from the replicas of voyageur jobs:
// each job is one read-only bucket holding the original objects, under
// their original keys, decrypted on the fly. It is what `voyageur serve`
// runs for failover (docs/failover.md).
//
// The S3 wire protocol is github.com/rclone/gofakes3, over a Backend that
// answers from each job's catalog (read from the replicas' META at start
// and on every refresh). A thin handler in front of it verifies SigV4,
// refuses every write before gofakes3 sees it, serves /healthz and
// /metrics, and keeps the source ETags that gofakes3 cannot express.
package serve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"filippo.io/age"
	"github.com/rclone/gofakes3"
	"github.com/rclone/gofakes3/signature"

	"github.com/voyageur-ca/voyageur/replicator"
	"github.com/voyageur-ca/voyageur/replicator/recovery"
)

// DefaultRefresh is how often catalogs are read again when Options.Refresh
// is zero.
const DefaultRefresh = time.Minute

// Options configure a Server.
type Options struct {
	// Identities open encrypted replicas. They stay in memory only.
	Identities []age.Identity
	// AsOf, when set, serves each job as its versioned destination held
	// it at that time.
	AsOf time.Time
	// AccessKey and SecretKey are the one key pair requests must be signed
	// with (SigV4); there is no anonymous access.
	AccessKey, SecretKey string
	// Refresh is how often each catalog is read again (0: DefaultRefresh).
	// A point-in-time (AsOf) catalog does not change and is read once.
	Refresh time.Duration
	// Concurrency bounds the META reads of a catalog load (0: 16).
	Concurrency int
	// Domain, when set, also takes virtual-host requests: a request to
	// host BUCKET.Domain is one for bucket BUCKET. Path-style requests
	// are always taken.
	Domain string
	// CachePath is the catalog cache file (bbolt), kept across runs;
	// empty: a temporary file of this run. When another serve holds it,
	// this one runs on a temporary file, with a warning.
	CachePath string
	Logger    *slog.Logger
}

// Server serves the replicas of some jobs over S3.
type Server struct {
	opts    Options
	log     *slog.Logger
	buckets map[string]*bucket
	names   []string
	s3      http.Handler
	cache   *openedCache
	store   *store // the catalogs
	metrics *metrics
	started time.Time
}

// bucket is one served job and its catalog.
type bucket struct {
	job   replicator.Job
	cat   *catalog
	state atomic.Pointer[loadState] // nil until the catalog is first loaded
}

// loadState is what the last catalog load of a job found.
type loadState struct {
	loaded  time.Time
	objects int64
}

func (b *bucket) encrypted() bool { return b.job.Encryption != nil }

// reserved are the paths the server answers itself.
var reserved = []string{"healthz", "metrics"}

// New checks the jobs and the options and returns a Server whose catalogs
// are not loaded yet (Run loads them).
func New(jobs []replicator.Job, opts Options) (*Server, error) {
	if opts.AccessKey == "" || opts.SecretKey == "" {
		return nil, errors.New("serve: an access key and a secret key are required (there is no anonymous access)")
	}
	// SigV4 verification refuses shorter access keys as unknown; a short
	// secret is a guessable one.
	if len(opts.AccessKey) < 3 || len(opts.SecretKey) < 8 {
		return nil, errors.New("serve: the access key needs at least 3 characters and the secret key at least 8")
	}
	if opts.Refresh <= 0 {
		opts.Refresh = DefaultRefresh
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if len(jobs) == 0 {
		return nil, errors.New("serve: no job to serve")
	}
	s := &Server{opts: opts, log: opts.Logger, buckets: map[string]*bucket{}, cache: newOpenedCache(), started: time.Now()}
	for _, j := range jobs {
		if err := ValidBucketName(j.Name); err != nil {
			return nil, fmt.Errorf("serve job %s: %w", j.Name, err)
		}
		if slices.Contains(reserved, j.Name) {
			return nil, fmt.Errorf("serve job %s: the name is reserved for /%s; rename the job to serve it", j.Name, j.Name)
		}
		if j.Encryption != nil && len(opts.Identities) == 0 {
			return nil, fmt.Errorf("serve job %s: %w", j.Name, recovery.ErrNeedIdentity)
		}
		if _, dup := s.buckets[j.Name]; dup {
			return nil, fmt.Errorf("serve job %s: given twice", j.Name)
		}
		s.buckets[j.Name] = &bucket{job: j}
		s.names = append(s.names, j.Name)
	}
	slices.Sort(s.names)
	var err error
	if opts.CachePath != "" {
		s.store, err = openStore(opts.CachePath)
		if errors.Is(err, ErrCacheLocked) {
			s.log.Warn("running without the catalog cache: the first catalog load reads all META", "err", err)
		} else if err != nil {
			return nil, err
		}
	}
	if s.store == nil {
		if s.store, err = openTempStore(); err != nil {
			return nil, fmt.Errorf("serve: %w", err)
		}
	}
	for _, b := range s.buckets {
		b.cat = s.store.catalogOf(b.job, opts.AsOf)
	}
	s.metrics = newMetrics(s)
	s.s3 = gofakes3.New(&backend{s: s}, gofakes3.WithoutVersioning()).Server()
	return s, nil
}

var (
	bucketChars = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)
	ipLike      = regexp.MustCompile(`^\d+\.\d+\.\d+\.\d+$`)
)

// ValidBucketName checks name against the S3 bucket naming rules: 3 to 63
// lowercase letters, digits, dots and hyphens, starting and ending with a
// letter or digit, no two adjacent dots, not shaped like an IP address.
func ValidBucketName(name string) error {
	if !bucketChars.MatchString(name) || strings.Contains(name, "..") || ipLike.MatchString(name) || net.ParseIP(name) != nil {
		return fmt.Errorf("%q is not a valid S3 bucket name (3-63 lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit)", name)
	}
	return nil
}

// Run loads every catalog, then reads each again every Refresh, until ctx
// ends. A load that fails is logged and retried; the catalog it would have
// replaced keeps being served.
func (s *Server) Run(ctx context.Context) {
	done := make(chan struct{})
	for _, name := range s.names {
		b := s.buckets[name]
		go func() {
			defer func() { done <- struct{}{} }()
			for {
				wait := s.opts.Refresh
				if err := s.load(ctx, b); err != nil {
					if ctx.Err() != nil {
						return
					}
					s.log.Error("catalog load failed", "job", b.job.Name, "err", err)
					wait = min(wait, 10*time.Second)
				} else if !s.opts.AsOf.IsZero() {
					return // a past state does not change
				}
				select {
				case <-ctx.Done():
					return
				case <-time.After(wait):
				}
			}
		}()
	}
	for range s.names {
		<-done
	}
}

// Load reads every served job's catalog once, for a caller that serves
// a fixed state (a drill); Run loads them and keeps them fresh.
func (s *Server) Load(ctx context.Context) error {
	for _, name := range s.names {
		if err := s.load(ctx, s.buckets[name]); err != nil {
			return fmt.Errorf("serve job %s: catalog: %w", name, err)
		}
	}
	return nil
}

// load reads one job's catalog and swaps it in.
func (s *Server) load(ctx context.Context, b *bucket) error {
	started := time.Now()
	var count atomic.Int64
	stop := make(chan struct{})
	defer close(stop)
	first := b.state.Load() == nil
	if first {
		s.log.Info("loading catalog", "job", b.job.Name, "destination", b.job.Dest.Name())
		go func() {
			t := time.NewTicker(10 * time.Second)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					s.log.Info("loading catalog", "job", b.job.Name, "replicas", count.Load(), "seconds", int(time.Since(started).Seconds()))
				}
			}
		}()
	}
	copts := recovery.CatalogOptions{AsOf: s.opts.AsOf, Identities: s.opts.Identities, Concurrency: s.opts.Concurrency}
	if b.encrypted() {
		copts.KnownMeta = b.cat.known
	}
	objects, err := loadCatalog(ctx, b.job, b.cat, copts, first, s.log, func(n int) { count.Store(int64(n)) })
	if err != nil {
		return err
	}
	b.state.Store(&loadState{loaded: time.Now(), objects: objects})
	level := slog.LevelDebug
	if first {
		level = slog.LevelInfo
	}
	s.log.Log(ctx, level, "catalog loaded", "job", b.job.Name, "objects", objects, "seconds", time.Since(started).Seconds())
	return nil
}

// Close releases the catalog file (and removes a temporary one). Call it
// after Run returned and the handler is done.
func (s *Server) Close() error {
	return s.store.close()
}

// Ready reports whether every served job's catalog is loaded.
func (s *Server) Ready() bool {
	for _, b := range s.buckets {
		if b.state.Load() == nil {
			return false
		}
	}
	return true
}

// Handler is the HTTP handler: /healthz, /metrics and the S3 API.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.Handle("GET /metrics", s.metrics.handler())
	mux.HandleFunc("/", s.front)
	return mux
}

// healthz answers 200 once every catalog is loaded, 503 before.
func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	var loading []string
	for _, name := range s.names {
		if s.buckets[name].state.Load() == nil {
			loading = append(loading, name)
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if len(loading) > 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "loading catalogs: %s\n", strings.Join(loading, ", "))
		return
	}
	fmt.Fprintln(w, "ok")
}

// reqState carries, from the front handler to the backend and back, what
// a request is about and how its body ended.
type reqState struct {
	job, key string
	// bodyErr is set when reading the object failed after the response
	// started: the connection is then cut, never ended as if complete.
	bodyErr error
}

type stateKey struct{}

func stateOf(ctx context.Context) *reqState {
	st, _ := ctx.Value(stateKey{}).(*reqState)
	return st
}

// front authenticates, refuses writes, keeps ETags and counts, around
// gofakes3.
func (s *Server) front(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	if b := s.virtualBucket(r.Host); b != "" {
		path = "/" + b + path
	}
	bucketName, key := splitPath(path)
	rec := &recorder{ResponseWriter: w, status: http.StatusOK}
	op := operation(r.Method, bucketName, key)
	defer func() { s.metrics.request(op, rec.status, rec.bytes) }()

	if code := signature.V4SignVerifyWithLookup(r, s.lookupKey); code != signature.ErrNone {
		e := signature.GetAPIError(code)
		rec.Header().Set("Content-Type", "application/xml")
		rec.WriteHeader(e.HTTPStatusCode)
		if r.Method != http.MethodHead {
			rec.Write(signature.EncodeAPIErrorToResponse(e))
		}
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		writeError(rec, r, http.StatusForbidden, "AccessDenied", "voyageur serve is read-only: the replica is changed only by voyageur sync")
		return
	}
	if path != r.URL.Path {
		// Rewritten after the signature, which covers the request as sent.
		r.URL.Path, r.URL.RawPath = path, ""
	}
	st := &reqState{job: bucketName, key: key}
	r = r.WithContext(context.WithValue(r.Context(), stateKey{}, st))
	if b, ok := s.buckets[bucketName]; ok && key != "" {
		if b.state.Load() != nil {
			// A failed lookup is answered by the backend's own.
			if e, ok, _ := b.cat.find(key); ok {
				rewriteETags(r, rec, e.etag(b.encrypted()))
			}
		}
	}
	s.s3.ServeHTTP(rec, r)
	if st.bodyErr != nil {
		s.readFailed(bucketName, key, st.bodyErr)
		// The status line and part of the body are gone: only a cut
		// connection tells the client the object is not complete.
		panic(http.ErrAbortHandler)
	}
	rec.WriteHeader(http.StatusOK) // a HEAD answer is committed here
}

// virtualBucket returns the served bucket a virtual-host request's Host
// names (BUCKET.Domain), or "".
func (s *Server) virtualBucket(host string) string {
	if s.opts.Domain == "" {
		return ""
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	b, ok := strings.CutSuffix(strings.ToLower(host), "."+strings.ToLower(s.opts.Domain))
	if _, served := s.buckets[b]; !ok || !served {
		return ""
	}
	return b
}

func (s *Server) lookupKey(access string) (string, bool) {
	if access == s.opts.AccessKey {
		return s.opts.SecretKey, true
	}
	return "", false
}

// readFailed logs and counts a replica that could not be read or failed
// authentication.
func (s *Server) readFailed(job, key string, err error) {
	s.log.Error("object not served: its replica could not be read or failed authentication", "job", job, "key", key, "err", err)
	s.metrics.failures.WithLabelValues(job).Inc()
}

// splitPath returns the bucket and key of a path-style request.
func splitPath(path string) (string, string) {
	b, k, _ := strings.Cut(strings.TrimLeft(path, "/"), "/")
	return b, k
}

// operation names a request for metrics.
func operation(method, bucket, key string) string {
	switch {
	case method != http.MethodGet && method != http.MethodHead:
		return "Write"
	case bucket == "":
		return "ListBuckets"
	case key == "" && method == http.MethodHead:
		return "HeadBucket"
	case key == "":
		return "ListObjects"
	case method == http.MethodHead:
		return "HeadObject"
	default:
		return "GetObject"
	}
}

// writeError writes an S3 XML error.
func writeError(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	if r.Method == http.MethodHead {
		return
	}
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>`+"\n<Error><Code>%s</Code><Message>%s</Message><Resource>%s</Resource></Error>", code, msg, xmlEscape(r.URL.Path))
}

func xmlEscape(s string) string {
	var b strings.Builder
	for _, c := range s {
		switch c {
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		case '&':
			b.WriteString("&amp;")
		case '"':
			b.WriteString("&quot;")
		default:
			b.WriteRune(c)
		}
	}
	return b.String()
}

// rewriteETags lets gofakes3, which builds a GET/HEAD ETag as hex(Hash),
// serve an ETag that is not MD5-shaped (a multipart source's "…-3"): the
// backend passes a digest of the ETag as Hash; conditional request headers
// naming the real ETag are turned into the digest (after the signature was
// checked), and the digest in the response back into the real ETag.
func rewriteETags(r *http.Request, rec *recorder, etag string) {
	wire := `"` + fmt.Sprintf("%x", hashOf(etag)) + `"`
	if wire == etag {
		return
	}
	for _, h := range []string{"If-Match", "If-None-Match"} {
		v := r.Header.Get(h)
		if v == "" {
			continue
		}
		parts := strings.Split(v, ",")
		for i, p := range parts {
			if p = strings.TrimSpace(p); p == etag || `"`+p+`"` == etag {
				parts[i] = wire
			}
		}
		r.Header.Set(h, strings.Join(parts, ","))
	}
	rec.etagFrom, rec.etagTo = wire, etag
}

// recorder notes the status and body bytes of a response and applies the
// ETag mapping when the header is written.
type recorder struct {
	http.ResponseWriter
	status           int
	wrote            bool
	bytes            int64
	etagFrom, etagTo string
}

func (r *recorder) WriteHeader(code int) {
	if r.wrote {
		return
	}
	r.wrote, r.status = true, code
	if r.etagFrom != "" && r.Header().Get("ETag") == r.etagFrom {
		r.Header().Set("ETag", r.etagTo)
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	n, err := r.ResponseWriter.Write(p)
	r.bytes += int64(n)
	return n, err
}
