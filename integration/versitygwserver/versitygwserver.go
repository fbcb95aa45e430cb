// Package versitygwserver starts real versitygw S3 gateways for tests.
//
// Each Start launches one `versitygw posix` process on a free loopback
// port, serving a fresh directory of a temporary directory as its POSIX
// backend (every bucket a directory, every object a file), with random
// root credentials, and stops it when the test ends. The binary is a
// pinned Go module build found through VOYAGEUR_VERSITYGW_BIN or
// GOPATH/bin/versitygw. When it is missing the test is skipped, except
// under CI=true where a missing gateway is a failure: `make test` installs
// it.
//
// The gateway never listens beyond 127.0.0.1 and its output goes to a log
// file whose tail is reported when it fails to start (and when the test
// fails).
package versitygwserver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/voyageur-ca/voyageur/integration/testproc"
)

// BinEnv names the environment variable that points at the versitygw
// binary, overriding the GOPATH/bin lookup.
const BinEnv = "VOYAGEUR_VERSITYGW_BIN"

const (
	// healthPath is the path versitygw answers 200 on once it serves (its
	// --health option).
	healthPath = "/health"
	// startTimeout bounds the wait for the gateway to answer its health
	// probe.
	startTimeout = 60 * time.Second
	// stopTimeout is how long Stop waits after SIGTERM before killing.
	stopTimeout = 10 * time.Second
	// startAttempts covers the small race between picking a free port and
	// the gateway binding it.
	startAttempts = 3
	// logTail is how many bytes of the gateway log go into failure
	// messages.
	logTail = 4000
)

// Server is one running versitygw gateway with its POSIX backend.
type Server struct {
	// URL is the S3 endpoint, http://127.0.0.1:PORT.
	URL string
	// Host is 127.0.0.1:PORT.
	Host string
	// AccessKey and SecretKey are the root credentials.
	AccessKey, SecretKey string
	// Dir is the backend's top directory: bucket B is Dir/B, object K of
	// B the file (or, for a key ending in "/", the directory) Dir/B/K.
	Dir string

	logPath string
	proc    *testproc.Process

	clientMu sync.Mutex
	client   *minio.Client // made by Client
}

// Start starts a versitygw gateway for the test and returns it once it
// answers its health probe. The gateway is stopped and its files removed
// when the test ends.
func Start(tb testing.TB) *Server {
	tb.Helper()
	if testing.Short() {
		tb.Skip("needs a versitygw gateway: not run with -short")
	}
	bin := Binary(tb)
	tmp := tb.TempDir()
	s := &Server{
		AccessKey: "voyageur-" + randomHex(tb, 6),
		SecretKey: randomHex(tb, 20),
		Dir:       filepath.Join(tmp, "data"),
		logPath:   filepath.Join(tmp, "versitygw.log"),
	}
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		tb.Fatalf("versitygwserver: %v", err)
	}
	// Registered after TempDir, so it runs before the directory is removed.
	tb.Cleanup(func() {
		s.Stop()
		if tb.Failed() {
			tb.Logf("versitygw %s log tail:\n%s", s.Host, s.tail())
		}
	})

	var lastErr error
	for attempt := 1; attempt <= startAttempts; attempt++ {
		lastErr = s.launch(bin)
		if lastErr == nil {
			return s
		}
		if s.proc == nil {
			break
		}
		s.proc.Stop(stopTimeout)
		if !s.proc.Exited() {
			break // it ran but never became healthy: a new port will not help
		}
		s.proc = nil
	}
	tb.Fatalf("versitygwserver: start %s: %v\ngateway log tail:\n%s", bin, lastErr, s.tail())
	return nil
}

// launch starts the process on a fresh port and waits until it is live.
func (s *Server) launch(bin string) error {
	port, err := testproc.FreePort()
	if err != nil {
		return err
	}
	s.Host = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	s.URL = "http://" + s.Host

	cmd := exec.Command(bin,
		"--port", s.Host,
		"--health", healthPath,
		"--region", "us-east-1",
		"--quiet",
		"posix", s.Dir)
	// The credentials go through the environment, not the command line,
	// where any user of the machine could read them.
	// LOGFILE and WEBHOOK are versitygw's older names for its access log
	// and audit webhook.
	cmd.Env = append(filterEnv(os.Environ(), "VGW_", "ROOT_", "LOGFILE=", "WEBHOOK="),
		"ROOT_ACCESS_KEY_ID="+s.AccessKey,
		"ROOT_SECRET_ACCESS_KEY="+s.SecretKey,
		// Two cores are shared by many tests: keep the runtime small.
		"GOMAXPROCS=2",
	)
	if s.proc, err = testproc.Start(cmd, s.logPath); err != nil {
		return err
	}
	return s.proc.WaitHealthy(s.URL+healthPath, startTimeout)
}

// Stop stops the gateway: SIGTERM, then a kill if it has not exited after
// a few seconds. It is idempotent. The backend directory stays until the
// test ends.
func (s *Server) Stop() {
	if s.proc != nil {
		s.proc.Stop(stopTimeout)
	}
}

// tail returns the end of the gateway log.
func (s *Server) tail() string { return testproc.Tail(s.logPath, logTail) }

var bucketSeq atomic.Int64

// CreateBucket creates a uniquely named bucket and returns its name.
func (s *Server) CreateBucket(tb testing.TB) string {
	tb.Helper()
	name := fmt.Sprintf("voyageur-%d-%s", bucketSeq.Add(1), randomHex(tb, 6))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Client(tb).MakeBucket(ctx, name, minio.MakeBucketOptions{Region: "us-east-1"}); err != nil {
		tb.Fatalf("versitygwserver: create bucket %s: %v", name, err)
	}
	return name
}

// Client returns a minio-go client for the gateway with its root
// credentials (path-style, region us-east-1, no proxy). It is made once
// per gateway and shared, so that checks reuse connections.
func (s *Server) Client(tb testing.TB) *minio.Client {
	tb.Helper()
	s.clientMu.Lock()
	defer s.clientMu.Unlock()
	if s.client != nil {
		return s.client
	}
	client, err := minio.New(s.Host, &minio.Options{
		Creds:        credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""),
		Region:       "us-east-1",
		BucketLookup: minio.BucketLookupPath,
		Transport:    &http.Transport{Proxy: nil},
	})
	if err != nil {
		tb.Fatalf("versitygwserver: client for %s: %v", s.URL, err)
	}
	s.client = client
	return client
}

// Binary returns the versitygw binary: $VOYAGEUR_VERSITYGW_BIN (which
// must then exist), else GOPATH/bin/versitygw (the first GOPATH entry). A
// missing binary skips the test, or fails it under CI=true.
func Binary(tb testing.TB) string {
	tb.Helper()
	if p := os.Getenv(BinEnv); p != "" {
		if isExecutable(p) {
			return p
		}
		testproc.Unavailable(tb, fmt.Sprintf("versitygw binary not found at %s=%s; run make test which installs it", BinEnv, p))
	}
	if p := testproc.GopathBin("versitygw"); p != "" && isExecutable(p) {
		return p
	}
	testproc.Unavailable(tb, "versitygw binary not found (looked at $"+BinEnv+", GOPATH/bin/versitygw); run make test which installs it")
	return ""
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// filterEnv drops the variables whose names start with one of prefixes,
// so that the host's settings cannot leak into the child.
func filterEnv(env []string, prefixes ...string) []string {
	out := make([]string, 0, len(env))
next:
	for _, kv := range env {
		for _, p := range prefixes {
			if strings.HasPrefix(kv, p) {
				continue next
			}
		}
		out = append(out, kv)
	}
	return out
}

func randomHex(tb testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		tb.Fatalf("versitygwserver: random: %v", err)
	}
	return hex.EncodeToString(b)
}
