package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// serveConfig writes a config with one plain job between fs buckets and
// the given serve: section.
func serveConfig(t *testing.T, dir, jobName, serveSection string) string {
	t.Helper()
	for _, d := range []string{"src", "dst"} {
		if err := os.MkdirAll(filepath.Join(dir, "store", d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "c.yaml")
	writeTestFile(t, path, `journal: `+filepath.Join(dir, "j.db")+`
endpoints:
  local: {type: fs, path: `+filepath.Join(dir, "store")+`}
jobs:
  - {name: `+jobName+`, source: "local:src", destination: "local:dst", encryption: none}
`+serveSection)
	return path
}

// TestServeRefusesBadSetups: each mistake exits 2 with a message naming
// it, before anything listens.
func TestServeRefusesBadSetups(t *testing.T) {
	keys := "serve: {access_key: abc, secret_key: secret-key}\n"
	for _, c := range []struct {
		name, job, serve string
		args             []string
		want             string
	}{
		{"bucket name", "Ledgers_2026", keys, nil, `"Ledgers_2026" is not a valid S3 bucket name`},
		{"reserved name", "metrics", keys, nil, "reserved for /metrics"},
		{"no keys", "ledgers", "", nil, "serve.access_key and serve.secret_key are required"},
		{"short secret", "ledgers", "serve: {access_key: abc, secret_key: short}\n", nil, "the secret key at least 8"},
		{"unset variable", "ledgers", "serve: {access_key: a, secret_key: \"${VOYAGEUR_TEST_UNSET_SERVE_SECRET}\"}\n", nil, "VOYAGEUR_TEST_UNSET_SERVE_SECRET is not set"},
		{"cert without key", "ledgers", "serve: {access_key: abc, secret_key: secret-key, tls_cert: /nonexistent.crt}\n", nil, "serve.tls_cert and serve.tls_key go together"},
		{"unreadable cert", "ledgers", "serve: {access_key: abc, secret_key: secret-key, tls_cert: /nonexistent.crt, tls_key: /nonexistent.key}\n", nil, "serve.tls_cert /nonexistent.crt"},
		{"unknown field", "ledgers", "serve: {access_key: abc, secret_key: secret-key, port: 9300}\n", nil, `unknown field "port" in serve`},
		{"bad listen", "ledgers", keys, []string{"--listen", "9300"}, `listen address "9300"`},
		{"unknown job", "ledgers", keys, []string{"--job", "nope"}, `--job "nope": no such job`},
		{"bad as-of", "ledgers", keys, []string{"--as-of", "yesterday"}, `--as-of "yesterday"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := serveConfig(t, t.TempDir(), c.job, c.serve)
			code, _, stderr := runCLI(t, append([]string{"serve", "-c", cfg}, c.args...)...)
			if code != exitUsage || !strings.Contains(stderr, c.want) {
				t.Errorf("exit %d, stderr %q; want exit 2 and %q", code, stderr, c.want)
			}
			if strings.Contains(stderr, "secret-key") {
				t.Errorf("the secret is in the error: %s", stderr)
			}
		})
	}
}

// TestServeRunsAndStops: serve answers /healthz once the catalog is loaded
// and exits 0 when its context ends (SIGTERM).
func TestServeRunsAndStops(t *testing.T) {
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cfg := serveConfig(t, dir, "ledgers", fmt.Sprintf("serve: {listen: %q, access_key: abc, secret_key: secret-key, cache: %q}\n", addr, filepath.Join(dir, "cache.db")))
	writeTestFile(t, filepath.Join(dir, "store", "dst", "a.csv"), "a")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var stderr strings.Builder
	go func() { done <- run(ctx, []string{"serve", "-c", cfg}, &strings.Builder{}, &stderr) }()
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case code := <-done:
			t.Fatalf("serve exited %d before it was healthy: %s", code, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("serve never became healthy")
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	if code := <-done; code != exitOK {
		t.Fatalf("serve exited %d after its context ended: %s", code, stderr.String())
	}
}
