// Package azuriteserver starts the Azurite Blob Storage emulator for tests.
//
// Each Start launches one `azurite-blob` process (npm azurite, pinned to
// the 3.35 line, which runs on Node 20) on a free loopback port with a
// fresh data directory, and stops it when the test ends. The binary is
// found through VOYAGEUR_AZURITE_BIN (set by the Makefile to
// .cache/azurite/node_modules/.bin/azurite-blob) or PATH. When it is
// missing the test is skipped, except under CI=true where it fails: `make
// test` installs it. The emulator is started with --skipApiVersionCheck,
// since the SDK speaks a newer service version than its baseline, and with
// --disableTelemetry: it would otherwise try to reach Microsoft.
package azuriteserver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"

	"github.com/voyageur-ca/voyageur/integration/testproc"
)

// BinEnv names the environment variable pointing at azurite-blob.
const BinEnv = "VOYAGEUR_AZURITE_BIN"

// Account and Key are Azurite's well-known development account and its
// published key (the same in every Azurite install; not a secret).
const (
	Account = "devstoreaccount1"
	Key     = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

const (
	startTimeout  = 60 * time.Second
	stopTimeout   = 10 * time.Second
	startAttempts = 3
	logTail       = 4000
)

// Server is one running emulator.
type Server struct {
	// URL is the blob service URL, http://127.0.0.1:PORT/devstoreaccount1.
	URL string
	// Host is 127.0.0.1:PORT.
	Host string

	dir, logPath string
	proc         *testproc.Process
}

// Binary returns the azurite-blob path, or reports it unavailable.
func Binary(tb testing.TB) string {
	tb.Helper()
	if p := os.Getenv(BinEnv); p != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
		testproc.Unavailable(tb, fmt.Sprintf("%s=%s does not exist; `make tools` installs it", BinEnv, p))
	}
	return testproc.NeedTool(tb, "azurite-blob")
}

// Start starts an emulator for the test, stopped when the test ends.
func Start(tb testing.TB) *Server {
	tb.Helper()
	if testing.Short() {
		tb.Skip("needs the Azurite emulator: not run with -short")
	}
	bin := Binary(tb)
	tmp := tb.TempDir()
	s := &Server{dir: filepath.Join(tmp, "data"), logPath: filepath.Join(tmp, "azurite.log")}
	tb.Cleanup(func() {
		s.Stop()
		if tb.Failed() {
			tb.Logf("azurite %s log tail:\n%s", s.Host, testproc.Tail(s.logPath, logTail))
		}
	})
	var err error
	for range startAttempts {
		if err = s.launch(bin); err == nil {
			return s
		}
		if s.proc != nil {
			s.proc.Stop(stopTimeout)
		}
	}
	tb.Fatalf("azuriteserver: start %s: %v\nlog tail:\n%s", bin, err, testproc.Tail(s.logPath, logTail))
	return nil
}

func (s *Server) launch(bin string) error {
	port, err := testproc.FreePort()
	if err != nil {
		return err
	}
	s.Host = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	s.URL = "http://" + s.Host + "/" + Account
	cmd := exec.Command(bin, "--location", s.dir, "--blobHost", "127.0.0.1", "--blobPort", strconv.Itoa(port),
		"--skipApiVersionCheck", "--disableTelemetry", "--silent")
	if s.proc, err = testproc.Start(cmd, s.logPath); err != nil {
		return err
	}
	// Azurite answers unauthenticated probes with 403: wait for the port.
	deadline := time.Now().Add(startTimeout)
	for {
		c, err := net.DialTimeout("tcp", s.Host, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if s.proc.Exited() {
			return fmt.Errorf("exited before listening: %w", err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not listening after %v: %w", startTimeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop stops the emulator; it is idempotent.
func (s *Server) Stop() {
	if s.proc != nil {
		s.proc.Stop(stopTimeout)
	}
}

// Client returns an SDK client on the emulator with the account key: a
// client that is not voyageur's backend, for seeding and checking.
func (s *Server) Client(tb testing.TB) *azblob.Client {
	tb.Helper()
	cred, err := azblob.NewSharedKeyCredential(Account, Key)
	if err != nil {
		tb.Fatal(err)
	}
	c, err := azblob.NewClientWithSharedKeyCredential(s.URL, cred, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// CreateContainer creates a fresh container and returns its name.
func (s *Server) CreateContainer(tb testing.TB) string {
	tb.Helper()
	var raw [6]byte
	if _, err := rand.Read(raw[:]); err != nil {
		tb.Fatal(err)
	}
	name := "voyageur-" + hex.EncodeToString(raw[:])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := s.Client(tb).CreateContainer(ctx, name, nil); err != nil {
		tb.Fatalf("create container %s: %v", name, err)
	}
	return name
}
