// Package minioserver starts real MinIO servers for tests.
//
// Each Start launches one `minio server` process on a free loopback port,
// with a fresh data directory and random root credentials, and stops it when
// the test ends. The binary is a pinned Go module build found through
// VOYAGEUR_MINIO_BIN, GOPATH/bin/minio or PATH (in that order). When it is
// missing the test is skipped, except under CI=true where a missing server
// is a failure: `make test` installs it.
//
// The server never listens beyond 127.0.0.1 and its output goes to a log
// file whose tail is reported when it fails to start (and when the test
// fails).
package minioserver

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
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

// MinioBinEnv names the environment variable that points at the minio
// server binary, overriding the GOPATH/bin and PATH lookups.
const MinioBinEnv = "VOYAGEUR_MINIO_BIN"

const (
	// startTimeout bounds the wait for the server to answer its liveness
	// probe.
	startTimeout = 60 * time.Second
	// stopTimeout is how long Stop waits after SIGTERM before killing.
	stopTimeout = 10 * time.Second
	// startAttempts covers the small race between picking a free port and
	// the server binding it.
	startAttempts = 3
	// logTail is how many bytes of the server log go into failure messages.
	logTail = 4000
)

// Server is one running MinIO server.
type Server struct {
	// URL is the S3 endpoint, http://127.0.0.1:PORT.
	URL string
	// Host is 127.0.0.1:PORT.
	Host string
	// AccessKey and SecretKey are the root credentials.
	AccessKey, SecretKey string
	// Dir is the server's data directory.
	Dir string
	// CAFile is the PEM file of the CA that signed the certificate of a
	// server started with StartTLS (its URL is then https://…); "" for a
	// plain http server.
	CAFile string

	tmp     string // holds Dir, the log and the certs directory
	logPath string
	proc    *testproc.Process

	clientMu sync.Mutex
	client   *minio.Client // made by Client
}

// Start starts a MinIO server for the test and returns it once it answers
// its liveness probe. The server is stopped and its files removed when the
// test ends.
func Start(tb testing.TB) *Server {
	tb.Helper()
	return StartWithEnv(tb)
}

// Cert is what StartTLS needs, in PEM: the server's certificate (for
// 127.0.0.1) and key, and the CA certificate its clients must trust.
type Cert struct {
	CertPEM, KeyPEM, CAPEM []byte
}

// StartTLS is Start for a server that speaks https with cert. Its own
// clients (CreateBucket, AWS) trust cert's CA; so do those given CAFile.
func StartTLS(tb testing.TB, cert Cert) *Server {
	tb.Helper()
	return start(tb, &cert, nil)
}

// StartWithEnv is Start with extra environment variables (KEY=VALUE) for the
// server process, such as notification target settings.
func StartWithEnv(tb testing.TB, env ...string) *Server {
	tb.Helper()
	return start(tb, nil, env)
}

func start(tb testing.TB, cert *Cert, env []string) *Server {
	tb.Helper()
	if testing.Short() {
		tb.Skip("needs a MinIO server: not run with -short")
	}
	bin := Binary(tb)
	tmp := tb.TempDir()
	s := &Server{
		AccessKey: "voyageur-" + randomHex(tb, 6),
		SecretKey: randomHex(tb, 20),
		Dir:       filepath.Join(tmp, "data"),
		tmp:       tmp,
		logPath:   filepath.Join(tmp, "minio.log"),
	}
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		tb.Fatalf("minioserver: %v", err)
	}
	if cert != nil {
		// MinIO serves https when its certs directory holds these.
		certs := filepath.Join(tmp, "certs")
		s.CAFile = filepath.Join(tmp, "ca.pem")
		for name, b := range map[string][]byte{filepath.Join(certs, "public.crt"): cert.CertPEM, filepath.Join(certs, "private.key"): cert.KeyPEM, s.CAFile: cert.CAPEM} {
			if err := os.MkdirAll(filepath.Dir(name), 0o700); err != nil {
				tb.Fatalf("minioserver: %v", err)
			}
			if err := os.WriteFile(name, b, 0o600); err != nil {
				tb.Fatalf("minioserver: %v", err)
			}
		}
	}
	// Registered after TempDir, so it runs before the directory is removed.
	tb.Cleanup(func() {
		s.Stop()
		if tb.Failed() {
			tb.Logf("minioserver %s log tail:\n%s", s.Host, s.tail())
		}
	})

	var lastErr error
	for attempt := 1; attempt <= startAttempts; attempt++ {
		lastErr = s.launch(bin, env)
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
	tb.Fatalf("minioserver: start %s: %v\nserver log tail:\n%s", bin, lastErr, s.tail())
	return nil
}

// launch starts the process on fresh ports and waits until it is live.
func (s *Server) launch(bin string, extraEnv []string) error {
	port, err := testproc.FreePort()
	if err != nil {
		return err
	}
	consolePort, err := testproc.FreePort()
	if err != nil {
		return err
	}
	s.Host = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	s.URL = "http://" + s.Host
	if s.CAFile != "" {
		s.URL = "https://" + s.Host
	}

	cmd := exec.Command(bin, "server",
		"--address", s.Host,
		"--console-address", net.JoinHostPort("127.0.0.1", strconv.Itoa(consolePort)),
		"--certs-dir", filepath.Join(s.tmp, "certs"),
		"--quiet",
		s.Dir)
	cmd.Env = append(filterEnv(os.Environ(), "MINIO_"),
		"MINIO_ROOT_USER="+s.AccessKey,
		"MINIO_ROOT_PASSWORD="+s.SecretKey,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
		"MINIO_CI_CD=1",
		"MINIO_REGION=us-east-1",
		// Two cores are shared by many tests: keep the runtime small.
		"GOMAXPROCS=2",
	)
	cmd.Env = append(cmd.Env, extraEnv...)
	if s.proc, err = testproc.Start(cmd, s.logPath); err != nil {
		return err
	}
	return s.proc.WaitHealthy(s.URL+"/minio/health/live", startTimeout)
}

// Stop stops the server: SIGTERM, then a kill if it has not exited after a
// few seconds. It is idempotent, so a test can simulate an outage and the
// cleanup can still call it. The data directory stays until the test ends.
func (s *Server) Stop() {
	if s.proc != nil {
		s.proc.Stop(stopTimeout)
	}
}

// PID is the server's process id, for a benchmark that reads its CPU time.
func (s *Server) PID() int { return s.proc.PID() }

// tail returns the end of the server log.
func (s *Server) tail() string { return testproc.Tail(s.logPath, logTail) }

var bucketSeq atomic.Int64

// CreateBucket creates a uniquely named bucket, with versioning enabled when
// versioned is set, and returns its name.
func (s *Server) CreateBucket(tb testing.TB, versioned bool) string {
	tb.Helper()
	return s.makeBucket(tb, versioned, false)
}

// CreateLockedBucket creates a uniquely named bucket with object lock
// enabled (and so versioning), and returns its name.
func (s *Server) CreateLockedBucket(tb testing.TB) string {
	tb.Helper()
	return s.makeBucket(tb, false, true)
}

func (s *Server) makeBucket(tb testing.TB, versioned, locked bool) string {
	tb.Helper()
	name := fmt.Sprintf("voyageur-%d-%s", bucketSeq.Add(1), randomHex(tb, 6))
	client := s.Client(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := client.MakeBucket(ctx, name, minio.MakeBucketOptions{Region: "us-east-1", ObjectLocking: locked}); err != nil {
		tb.Fatalf("minioserver: create bucket %s: %v", name, err)
	}
	if versioned {
		if err := client.EnableVersioning(ctx, name); err != nil {
			tb.Fatalf("minioserver: enable versioning on %s: %v", name, err)
		}
	}
	return name
}

// Client returns a minio-go client for the server with its root
// credentials (region us-east-1, the Transport). It is made once per
// server and shared, so that checks reuse connections.
func (s *Server) Client(tb testing.TB) *minio.Client {
	tb.Helper()
	s.clientMu.Lock()
	defer s.clientMu.Unlock()
	if s.client != nil {
		return s.client
	}
	client, err := minio.New(s.Host, &minio.Options{
		Creds:     credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""),
		Secure:    s.CAFile != "",
		Region:    "us-east-1",
		Transport: s.Transport(tb),
	})
	if err != nil {
		tb.Fatalf("minioserver: client for %s: %v", s.URL, err)
	}
	s.client = client
	return client
}

// Transport returns an HTTP transport to the server: no proxy, and for a
// StartTLS server, trusting its CA only.
func (s *Server) Transport(tb testing.TB) *http.Transport {
	tb.Helper()
	tr := &http.Transport{Proxy: nil}
	if s.CAFile != "" {
		pem, err := os.ReadFile(s.CAFile)
		if err != nil {
			tb.Fatalf("minioserver: %v", err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	}
	return tr
}

// debianAWS is where Debian's awscli package installs the CLI. It is
// preferred over another aws on PATH (such as a pip install) so that every
// machine seeds buckets with the same client.
const debianAWS = "/usr/bin/aws"

// AWS runs the aws CLI against the server (path-style, us-east-1, root
// credentials, no user config, single-request uploads up to 256 MiB) and
// returns its stdout. A failed command fails the test with its stderr. A
// missing aws CLI skips the test, or fails it under CI=true.
func (s *Server) AWS(tb testing.TB, args ...string) []byte {
	tb.Helper()
	out, err := s.TryAWS(tb, args...)
	if err != nil {
		tb.Fatalf("minioserver: %v", err)
	}
	return out
}

// TryAWS is AWS for a command that may fail: it returns the command's
// stdout, or an error holding its stderr.
func (s *Server) TryAWS(tb testing.TB, args ...string) ([]byte, error) {
	tb.Helper()
	aws := debianAWS
	if !isExecutable(aws) {
		var err error
		if aws, err = exec.LookPath("aws"); err != nil {
			testproc.Unavailable(tb, "aws CLI not found; install awscli (Debian: apt-get install awscli)")
		}
	}
	config := filepath.Join(s.tmp, "aws-config")
	if _, err := os.Stat(config); err != nil {
		cfg := "[default]\ns3 =\n    addressing_style = path\n    multipart_threshold = 256MB\n"
		if err := os.WriteFile(config, []byte(cfg), 0o644); err != nil {
			tb.Fatalf("minioserver: %v", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	global := []string{"--endpoint-url", s.URL}
	if s.CAFile != "" {
		global = append(global, "--ca-bundle", s.CAFile) // wins over $AWS_CA_BUNDLE
	}
	cmd := exec.CommandContext(ctx, aws, append(global, args...)...)
	cmd.Env = s.AWSEnv(config)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("aws %s: %w\nstderr:\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes(), nil
}

// AWSEnv returns the environment of an aws CLI run against the server: the
// host's without its AWS_ variables, the root credentials, region
// us-east-1, the config file config, no shared credentials file, no pager,
// and no proxy for loopback. A CA bundle set for the host (AWS_CA_BUNDLE)
// stays in effect, as it would for users.
func (s *Server) AWSEnv(config string) []string {
	env := append(filterEnv(os.Environ(), "AWS_"),
		"AWS_ACCESS_KEY_ID="+s.AccessKey,
		"AWS_SECRET_ACCESS_KEY="+s.SecretKey,
		"AWS_DEFAULT_REGION=us-east-1",
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE="+config,
		"AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(s.tmp, "aws-credentials-none"),
		"AWS_PAGER=",
		"NO_PROXY=127.0.0.1,localhost",
		"no_proxy=127.0.0.1,localhost",
	)
	if v, ok := os.LookupEnv("AWS_CA_BUNDLE"); ok {
		env = append(env, "AWS_CA_BUNDLE="+v)
	}
	return env
}

// Binary returns the minio server binary: $VOYAGEUR_MINIO_BIN (which must
// then exist), else GOPATH/bin/minio (the first GOPATH entry), else minio
// on PATH. A missing binary skips the test, or fails it under CI=true.
func Binary(tb testing.TB) string {
	tb.Helper()
	if p := os.Getenv(MinioBinEnv); p != "" {
		if isExecutable(p) {
			return p
		}
		testproc.Unavailable(tb, fmt.Sprintf("minio server binary not found at %s=%s; run make test which installs it", MinioBinEnv, p))
	}
	if p := testproc.GopathBin("minio"); p != "" && isExecutable(p) {
		return p
	}
	if p, err := exec.LookPath("minio"); err == nil {
		return p
	}
	testproc.Unavailable(tb, "minio server binary not found (looked at $"+MinioBinEnv+", GOPATH/bin/minio, PATH); run make test which installs it")
	return ""
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// filterEnv drops the variables whose names start with prefix, so that the
// host's settings cannot leak into the child.
func filterEnv(env []string, prefix string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if !strings.HasPrefix(kv, prefix) {
			out = append(out, kv)
		}
	}
	return out
}

func randomHex(tb testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		tb.Fatalf("minioserver: random: %v", err)
	}
	return hex.EncodeToString(b)
}
