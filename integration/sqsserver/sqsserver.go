// Package sqsserver starts fauxqs SQS emulators for tests.
//
// fauxqs (the npm package fauxqs@1.9.2, run by Node.js) speaks the SQS JSON
// protocol that aws-sdk-go-v2 uses, does not check signatures and emits no
// S3 notifications: tests send AWS-format event messages themselves. It
// returns queue URLs whose host is sqs.us-east-1.127.0.0.1:PORT, so clients
// must send requests to Server.URL and pass queue URLs as they are.
//
// The emulator binds every interface, whatever FAUXQS_HOST says (that only
// names the host in queue URLs): tests must only ever send it loopback
// traffic, and it runs only as long as its test.
//
// The emulator is found through VOYAGEUR_FAUXQS_BIN, else at
// .cache/fauxqs/node_modules/.bin/fauxqs under the repository root, where
// `make test` installs it. When it or node is missing the test is skipped,
// except under CI=true where that is a failure.
package sqsserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/voyageur-ca/voyageur/integration/testproc"
)

// BinEnv names the environment variable that points at the fauxqs
// executable, overriding the lookup under the repository root.
const BinEnv = "VOYAGEUR_FAUXQS_BIN"

// Region is the region of the emulator's queues.
const Region = "us-east-1"

// binUnderRoot is where `npm install --prefix .cache/fauxqs fauxqs@1.9.2`
// puts the executable, relative to the repository root.
var binUnderRoot = filepath.Join(".cache", "fauxqs", "node_modules", ".bin", "fauxqs")

const (
	// startTimeout bounds the wait for the emulator to answer /health.
	startTimeout = 30 * time.Second
	// stopTimeout is how long Stop waits after SIGTERM before killing.
	stopTimeout = 5 * time.Second
	// startAttempts covers the race between picking a free port and the
	// emulator binding it.
	startAttempts = 3
	// logTail is how many bytes of the emulator log go into failure
	// messages.
	logTail = 4000
	// callTimeout bounds one helper call to the emulator.
	callTimeout = 10 * time.Second
)

// Server is one running fauxqs emulator.
type Server struct {
	// URL is the endpoint, http://127.0.0.1:PORT.
	URL string

	logPath string
	proc    *testproc.Process
	client  *sqs.Client
}

// Start starts an emulator for the test and returns it once it answers its
// health probe. It is stopped when the test ends, and its log tail is
// reported when the test failed.
func Start(tb testing.TB) *Server {
	tb.Helper()
	if testing.Short() {
		tb.Skip("needs the SQS emulator: not run with -short")
	}
	bin := binary(tb)
	s := &Server{logPath: filepath.Join(tb.TempDir(), "fauxqs.log")}
	tb.Cleanup(func() {
		s.Stop()
		if tb.Failed() {
			tb.Logf("fauxqs %s log tail:\n%s", s.URL, s.tail())
		}
	})
	var err error
	for attempt := 1; attempt <= startAttempts; attempt++ {
		if err = s.launch(bin); err == nil {
			s.client = newClient(s.URL)
			return s
		}
		if s.proc == nil {
			break
		}
		s.proc.Stop(stopTimeout)
		if !s.proc.Exited() {
			break // it ran but never answered: another port will not help
		}
		s.proc = nil
	}
	tb.Fatalf("sqsserver: start %s: %v\nlog tail:\n%s", bin, err, s.tail())
	return nil
}

// launch starts the process on a fresh port and waits until it answers.
func (s *Server) launch(bin string) error {
	port, err := testproc.FreePort()
	if err != nil {
		return err
	}
	s.URL = "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(port))

	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(),
		"FAUXQS_PORT="+strconv.Itoa(port),
		"FAUXQS_HOST=127.0.0.1",
		"FAUXQS_DEFAULT_REGION="+Region,
	)
	if s.proc, err = testproc.Start(cmd, s.logPath); err != nil {
		return err
	}
	return s.proc.WaitHealthy(s.URL+"/health", startTimeout)
}

// Stop stops the emulator (SIGTERM, then a kill after a few seconds). It is
// idempotent, so a test can simulate an outage and the cleanup can still
// call it. Queues and messages are lost: the emulator keeps them in memory.
func (s *Server) Stop() {
	if s.proc != nil {
		s.proc.Stop(stopTimeout)
	}
}

// tail returns the end of the emulator log.
func (s *Server) tail() string { return testproc.Tail(s.logPath, logTail) }

// newClient returns an SQS client for an emulator endpoint: every request
// goes to endpoint, with dummy static credentials and no proxy.
func newClient(endpoint string) *sqs.Client {
	return sqs.New(sqs.Options{
		Region:       Region,
		BaseEndpoint: aws.String(endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider("fauxqs", "fauxqs", ""),
		HTTPClient:   &http.Client{Transport: &http.Transport{Proxy: nil}},
	})
}

// CreateQueue creates a queue with default attributes and returns its URL.
func (s *Server) CreateQueue(tb testing.TB, name string) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	out, err := s.client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: &name})
	if err != nil {
		tb.Fatalf("sqsserver: create queue %s: %v", name, err)
	}
	return aws.ToString(out.QueueUrl)
}

// SetAttributes sets queue attributes, such as "VisibilityTimeout": "1".
func (s *Server) SetAttributes(tb testing.TB, queueURL string, attributes map[string]string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	if _, err := s.client.SetQueueAttributes(ctx, &sqs.SetQueueAttributesInput{QueueUrl: &queueURL, Attributes: attributes}); err != nil {
		tb.Fatalf("sqsserver: set attributes of %s: %v", queueURL, err)
	}
}

// Send sends one message with the given body to the queue and returns its
// message ID.
func (s *Server) Send(tb testing.TB, queueURL, body string) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	out, err := s.client.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: &queueURL, MessageBody: &body})
	if err != nil {
		tb.Fatalf("sqsserver: send to %s: %v", queueURL, err)
	}
	return aws.ToString(out.MessageId)
}

// Counts returns how many messages of the queue are visible and how many
// are in flight (received, neither deleted nor back after their visibility
// timeout).
func (s *Server) Counts(tb testing.TB, queueURL string) (visible, inflight int) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	out, err := s.client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: &queueURL,
		AttributeNames: []types.QueueAttributeName{
			types.QueueAttributeNameApproximateNumberOfMessages,
			types.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
		},
	})
	if err != nil {
		tb.Fatalf("sqsserver: queue attributes of %s: %v", queueURL, err)
	}
	visible, err1 := strconv.Atoi(out.Attributes[string(types.QueueAttributeNameApproximateNumberOfMessages)])
	inflight, err2 := strconv.Atoi(out.Attributes[string(types.QueueAttributeNameApproximateNumberOfMessagesNotVisible)])
	if err := errors.Join(err1, err2); err != nil {
		tb.Fatalf("sqsserver: queue attributes of %s: %v", queueURL, err)
	}
	return visible, inflight
}

// binary finds the fauxqs executable and node, or skips (fails under
// CI=true).
func binary(tb testing.TB) string {
	tb.Helper()
	bin := os.Getenv(BinEnv)
	if bin == "" {
		root, err := repoRoot()
		if err != nil {
			testproc.Unavailable(tb, "fauxqs not found: "+err.Error())
		}
		bin = filepath.Join(root, binUnderRoot)
	}
	if fi, err := os.Stat(bin); err != nil || fi.IsDir() {
		testproc.Unavailable(tb, fmt.Sprintf("fauxqs not found at %s (set $%s, or run make test which installs it with npm)", bin, BinEnv))
	}
	if _, err := exec.LookPath("node"); err != nil {
		testproc.Unavailable(tb, "node not found on PATH: fauxqs needs Node.js")
	}
	return bin
}

// repoRoot walks up from the working directory to the directory holding
// go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}
