package integration

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"text/template"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/voyageur-ca/voyageur/integration/minioserver"
	"github.com/voyageur-ca/voyageur/replicator"
)

// voyageurBin is the binary under test, built once by TestMain.
var voyageurBin string

func TestMain(m *testing.M) {
	// Every process the tests start (voyageur, the servers, the aws CLI)
	// inherits this: an AWS SDK without credentials must never ask the
	// cloud metadata address, whatever the caller's environment.
	os.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	dir, err := os.MkdirTemp("", "voyageur-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	voyageurBin = filepath.Join(dir, "voyageur")
	build := exec.Command("go", "build", "-o", voyageurBin, "github.com/voyageur-ca/voyageur/cmd/voyageur")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build voyageur:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	// Every output against every secret: a secret registered by a later
	// test is looked for in the outputs of the earlier ones too.
	n, leaks := allOutputsLeak()
	if len(leaks) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: outputs of voyageur show a secret: %s\n", strings.Join(leaks, "; "))
		code = 1
	} else if testing.Verbose() {
		fmt.Fprintf(os.Stderr, "no secret in %d outputs of voyageur\n", n)
	}
	os.Exit(code)
}

// secrets holds every secret the tests hand to voyageur: the servers'
// secret keys (and wrong ones), age identities made by keygen, name
// secrets. outputs collects everything the binary printed in the suite.
var (
	secrets sync.Map
	outputs struct {
		sync.Mutex
		all []output
	}
)

type output struct{ what, text string }

// addSecret registers a secret, for checkOutput and the final check.
func addSecret(s string) {
	if s = strings.TrimSpace(s); s != "" {
		secrets.Store(s, true)
	}
}

// addSecretFile registers the secrets of a file: each identity line of an
// age identity file, or the bytes of a name secret in the encodings a
// careless log line would use.
func addSecretFile(t testing.TB, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "AGE-SECRET-KEY-") {
		for line := range strings.Lines(string(b)) {
			if strings.HasPrefix(line, "AGE-SECRET-KEY-") {
				addSecret(line)
			}
		}
		return
	}
	addSecret(hex.EncodeToString(b))
	addSecret(base64.StdEncoding.EncodeToString(b))
	addSecret(string(b))
}

// leak names the secret text shows (by kind and length, never by value),
// or returns "".
func leak(text string) string {
	found := ""
	secrets.Range(func(k, _ any) bool {
		if s := k.(string); strings.Contains(text, s) {
			found = fmt.Sprintf("a secret of %d characters starting %q", len(s), s[:min(len(s), 4)])
			return false
		}
		return true
	})
	return found
}

// checkOutput collects an output of the binary and fails t at once when
// it shows a secret already registered.
func checkOutput(t testing.TB, what, text string) {
	t.Helper()
	outputs.Lock()
	outputs.all = append(outputs.all, output{what, text})
	outputs.Unlock()
	if l := leak(text); l != "" {
		t.Errorf("voyageur %s printed %s", what, l)
	}
}

// allOutputsLeak checks every collected output against every secret.
func allOutputsLeak() (int, []string) {
	outputs.Lock()
	defer outputs.Unlock()
	var leaks []string
	for _, o := range outputs.all {
		if l := leak(o.text); l != "" {
			leaks = append(leaks, fmt.Sprintf("voyageur %s printed %s", o.what, l))
		}
	}
	return len(outputs.all), leaks
}

// startServer starts a MinIO server and registers its secret key.
func startServer(t testing.TB) *minioserver.Server {
	t.Helper()
	srv := minioserver.Start(t)
	addSecret(srv.SecretKey)
	return srv
}

// result is one run of the binary.
type result struct {
	stdout, stderr string
	code           int
	elapsed        time.Duration
}

func runVoyageur(t testing.TB, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, voyageurBin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	res := result{stdout: stdout.String(), stderr: stderr.String(), elapsed: time.Since(start)}
	checkOutput(t, strings.Join(args[:min(len(args), 1)], " "), res.stdout+res.stderr)
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		res.code = ee.ExitCode()
	default:
		t.Fatalf("run voyageur %v: %v", args, err)
	}
	return res
}

// syncJSON runs sync --json and insists on the exit code.
func syncJSON(t testing.TB, wantCode int, args ...string) replicator.Summary {
	t.Helper()
	res := runVoyageur(t, append([]string{"sync", "--json"}, args...)...)
	if res.code != wantCode {
		t.Fatalf("sync %v: exit %d, want %d\nstdout: %s\nstderr: %s", args, res.code, wantCode, res.stdout, res.stderr)
	}
	s := syncSummary(t, res)
	t.Logf("sync %v: %+v (process %s)", args, s, res.elapsed.Round(time.Millisecond))
	return s
}

// syncSummary decodes the --json output of a one-job sync (or restore).
func syncSummary(t testing.TB, res result) replicator.Summary {
	t.Helper()
	var s replicator.Summary
	if err := json.Unmarshal([]byte(res.stdout), &s); err != nil {
		t.Fatalf("sync --json printed %q: %v\nstderr: %s", res.stdout, err, res.stderr)
	}
	return s
}

// side is one end of a job: a server, a bucket, and the SDK voyageur uses.
// url and secretKey, when set, replace the server's in voyageur's config
// (a proxy in front of it, a wrong secret).
type side struct {
	srv       *minioserver.Server
	bucket    string
	kind      string // "aws" (aws-sdk-go-v2) or "minio" (minio-go)
	url       string
	secretKey string
	extra     string // more endpoint fields, such as `timeouts: {idle: 2s}`
}

func (s side) endpointYAML() string {
	url, secret := s.srv.URL, s.srv.SecretKey
	if s.url != "" {
		url = s.url
	}
	if s.secretKey != "" {
		secret = s.secretKey
	}
	extra := ""
	if s.extra != "" {
		extra = ", " + s.extra
	}
	if s.kind == "aws" {
		return fmt.Sprintf(`{type: aws, url: %q, region: us-east-1, path_style: true, access_key: %q, secret_key: %q%s}`, url, s.srv.AccessKey, secret, extra)
	}
	return fmt.Sprintf(`{type: minio, url: %q, access_key: %q, secret_key: %q%s}`, url, s.srv.AccessKey, secret, extra)
}

// client is the server's shared minio-go client.
func (s side) client(t testing.TB) *minio.Client {
	t.Helper()
	return s.srv.Client(t)
}

type jobConfig struct {
	Journal       string
	Src, Dst      side
	SrcPrefix     string
	DstPrefix     string
	Deletes       string
	MaxDelete     string
	PartSize      string
	Concurrency   int
	Bandwidth     string
	ExtraJobLines string
}

var configTemplate = template.Must(template.New("cfg").Parse(`journal: {{.Journal}}
endpoints:
  source: {{.Src.EndpointYAML}}
  canada: {{.Dst.EndpointYAML}}
jobs:
  - name: ledgers
    source: source:{{.Src.Bucket}}/{{.SrcPrefix}}
    destination: canada:{{.Dst.Bucket}}/{{.DstPrefix}}
    deletes: {{or .Deletes "keep"}}
{{- if .MaxDelete}}
    max_delete: {{.MaxDelete}}
{{- end}}
    transfer:
      part_size: {{or .PartSize "5MiB"}}
      concurrency: {{or .Concurrency 8}}
{{- if .Bandwidth}}
      bandwidth: {{.Bandwidth}}
{{- end}}
{{.ExtraJobLines}}`))

// writeConfig renders a one-job config into dir and returns its path.
func writeConfig(t testing.TB, dir string, c jobConfig) string {
	t.Helper()
	if c.Journal == "" {
		c.Journal = filepath.Join(dir, "journal.db")
	}
	var buf bytes.Buffer
	view := map[string]any{
		"Journal": c.Journal, "SrcPrefix": c.SrcPrefix, "DstPrefix": c.DstPrefix, "Deletes": c.Deletes,
		"MaxDelete": c.MaxDelete, "PartSize": c.PartSize, "Concurrency": c.Concurrency, "Bandwidth": c.Bandwidth,
		"ExtraJobLines": c.ExtraJobLines,
		"Src":           map[string]string{"EndpointYAML": c.Src.endpointYAML(), "Bucket": c.Src.bucket},
		"Dst":           map[string]string{"EndpointYAML": c.Dst.endpointYAML(), "Bucket": c.Dst.bucket},
	}
	if err := configTemplate.Execute(&buf, view); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "voyageur.yaml")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// object is what a listing plus a HEAD tell about one object.
type object struct {
	size        int64
	etag        string
	contentType string
	meta        map[string]string
}

// listObjects lists a bucket prefix with minio-go, an independent client,
// keyed by the key relative to the prefix.
func listObjects(t testing.TB, s side, prefix string) map[string]object {
	t.Helper()
	out := map[string]object{}
	for o := range s.client(t).ListObjects(context.Background(), s.bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if o.Err != nil {
			t.Fatalf("list %s: %v", s.bucket, o.Err)
		}
		out[strings.TrimPrefix(o.Key, prefix)] = object{size: o.Size, etag: strings.Trim(o.ETag, `"`)}
	}
	return out
}

func statObject(t testing.TB, s side, key string) object {
	t.Helper()
	info, err := s.client(t).StatObject(context.Background(), s.bucket, key, minio.StatObjectOptions{})
	if err != nil {
		t.Fatalf("stat %s/%s: %v", s.bucket, key, err)
	}
	meta := map[string]string{}
	for k, v := range info.UserMetadata {
		meta[strings.ToLower(k)] = v
	}
	return object{size: info.Size, etag: info.ETag, contentType: info.ContentType, meta: meta}
}

func md5Object(t testing.TB, s side, key string) string {
	t.Helper()
	o, err := s.client(t).GetObject(context.Background(), s.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer o.Close()
	h := md5.New()
	if _, err := io.Copy(h, o); err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func incompleteUploads(t testing.TB, s side) []string {
	t.Helper()
	var out []string
	for u := range s.client(t).ListIncompleteUploads(context.Background(), s.bucket, "", true) {
		if u.Err != nil {
			t.Fatalf("list incomplete uploads: %v", u.Err)
		}
		out = append(out, u.Key+" "+u.UploadID)
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// randomData returns n deterministic pseudo-random bytes (xorshift).
func randomData(n int, seed byte) []byte {
	b := make([]byte, n)
	x := uint32(seed)*2654435761 + 7
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

// writeFile writes n deterministic pseudo-random bytes.
func writeFile(t testing.TB, path string, n int, seed byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, randomData(n, seed), 0o644); err != nil {
		t.Fatal(err)
	}
}
