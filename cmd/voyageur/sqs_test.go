package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/voyageur-ca/voyageur/integration/sqsserver"
	"github.com/voyageur-ca/voyageur/internal/testenv"
	"github.com/voyageur-ca/voyageur/replicator/events"
)

// sqsRecord is an S3 ObjectCreated record as S3 sends it to SQS.
const sqsRecord = `{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"ca-central-1",
"eventTime":"2026-03-04T05:06:07.000Z","eventName":"ObjectCreated:Put",
"s3":{"bucket":{"name":"fintech-ledgers"},"object":{"key":"daily/ledger.csv","size":42,"eTag":"0123456789abcdef0123456789abcdef","sequencer":"0065E5A1B2C3D4E5F6"}}}]}`

// TestSQSClientConfigErrors: what is wrong in an sqs event source's
// client settings is one error naming it, never quoting a secret.
func TestSQSClientConfigErrors(t *testing.T) {
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
	queue := "https://sqs.ca-central-1.amazonaws.com/111122223333/voyageur"
	for _, tc := range []struct {
		name, caBundle string
		ev             EventConfig
		src            Endpoint
		want           string
	}{
		{"queue with credentials", "", EventConfig{SQS: "https://AKIA:topsecret@sqs.ca-central-1.amazonaws.com/1/q"}, Endpoint{}, "sqs: queue url: want"},
		{"half credentials", "", EventConfig{SQS: queue}, Endpoint{SecretKey: "topsecret"}, "access key and secret key must be set together"},
		{"bad endpoint", "", EventConfig{SQS: queue, URL: "ftp://topsecret@host"}, Endpoint{}, "sqs: endpoint url: want"},
		{"endpoint with a path", "", EventConfig{SQS: queue, URL: "http://127.0.0.1:9/queue"}, Endpoint{}, "sqs: endpoint url: want"},
		{"missing ca file", "", EventConfig{SQS: queue}, Endpoint{CAFile: "/nonexistent/ca.pem"}, "/nonexistent/ca.pem"},
		{"missing ca bundle", "/nonexistent/bundle.pem", EventConfig{SQS: queue}, Endpoint{}, "sqs: read ca bundle"},
		{"no region", "", EventConfig{SQS: "http://127.0.0.1:9/000000000000/q"}, Endpoint{}, "sqs: no region"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("AWS_CA_BUNDLE", tc.caBundle)
			_, err := sqsSource(context.Background(), tc.ev, tc.src, 0, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("sqsSource: %v, want an error containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "topsecret") {
				t.Errorf("error leaks a secret: %v", err)
			}
		})
	}
}

func TestQueueRegion(t *testing.T) {
	for host, want := range map[string]string{
		"sqs.ca-central-1.amazonaws.com":   "ca-central-1",
		"sqs.us-east-1.127.0.0.1:4566":     "us-east-1",
		"queue.amazonaws.com":              "us-east-1",
		"eu-west-1.queue.amazonaws.com":    "eu-west-1",
		"127.0.0.1:4566":                   "",
		"sqs.amazonaws.com":                "",
		"sqs-fips.us-east-1.amazonaws.com": "",
	} {
		if got := queueRegion(host); got != want {
			t.Errorf("queueRegion(%q) = %q, want %q", host, got, want)
		}
	}
}

// intakeLog collects what an event source hands over.
type intakeLog struct {
	mu     sync.Mutex
	events []events.Event
}

func (l *intakeLog) intake(_ context.Context, evs []events.Event) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, evs...)
	return nil
}

func (l *intakeLog) keys() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, e := range l.events {
		out = append(out, e.Key)
	}
	return out
}

// runSQS runs the source until the test ends or the returned stop is
// called.
func runSQS(t *testing.T, s *events.SQS, intake events.Intake) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, intake, func() {}) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("sqs Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// waitFor waits up to limit for cond.
func waitFor(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSQSClientWithCABundle: the client works against the emulator with
// $AWS_CA_BUNDLE set, as on corporate hosts (handing the config loader a
// custom HTTP client would break it).
func TestSQSClientWithCABundle(t *testing.T) {
	t.Setenv("AWS_CA_BUNDLE", caBundle(t))
	srv := sqsserver.Start(t)
	q := srv.CreateQueue(t, "bundle")
	srv.Send(t, q, sqsRecord)
	s, err := sqsSource(context.Background(), EventConfig{SQS: q, URL: srv.URL}, Endpoint{AccessKey: "test-access", SecretKey: "test-secret"}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := &intakeLog{}
	runSQS(t, s, got.intake)
	waitFor(t, "the event", 10*time.Second, func() bool { return len(got.keys()) == 1 })
}

// TestSQSEndpointTLSAndTimeouts: the client trusts the endpoint's CA file
// (and not without it), and the endpoint's timeouts apply, raised to
// outlast the long poll.
func TestSQSEndpointTLSAndTimeouts(t *testing.T) {
	srv := tlsSQS(t, false)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	const queue = "https://sqs.ca-central-1.amazonaws.com/123456789012/ledgers"
	source := func(srvURL, caFile string, timeouts EndpointTimeouts, logs io.Writer) *events.SQS {
		t.Helper()
		s, err := sqsSource(context.Background(), EventConfig{SQS: queue, URL: srvURL},
			Endpoint{AccessKey: "test-access", SecretKey: "test-secret", CAFile: caFile, Timeouts: timeouts},
			1, slog.New(slog.NewTextHandler(logs, nil)))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}

	logs := &testenv.LogBuffer{}
	got := &intakeLog{}
	stop := runSQS(t, source(srv.URL, "", EndpointTimeouts{}, logs), got.intake)
	waitFor(t, "a certificate error without the CA file", 10*time.Second, func() bool { return strings.Contains(logs.String(), "certificate") })
	stop()
	if k := got.keys(); len(k) != 0 {
		t.Errorf("events %v through an untrusted certificate", k)
	}

	got = &intakeLog{}
	stop = runSQS(t, source(srv.URL, ca, EndpointTimeouts{}, io.Discard), got.intake)
	waitFor(t, "the event through the trusted endpoint", 10*time.Second, func() bool {
		k := got.keys()
		return len(k) == 1 && k[0] == "daily/ledger.csv"
	})
	stop()

	// A response timeout of 1s is raised to the poll and its margin (11s):
	// then the stalled receive fails as a timeout, and is retried.
	hung := tlsSQS(t, true)
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: hung.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	logs = &testenv.LogBuffer{}
	start := time.Now()
	runSQS(t, source(hung.URL, ca, EndpointTimeouts{Response: Duration(time.Second)}, logs), (&intakeLog{}).intake)
	waitFor(t, "a response timeout from a stalled endpoint", 2*time.Minute, func() bool {
		return strings.Contains(logs.String(), "timeout awaiting response headers")
	})
	if d := time.Since(start); d < events.SQSPollTime(1) {
		t.Errorf("the stalled receive timed out after %v, before the long poll could end (%v)", d, events.SQSPollTime(1))
	}
}

// tlsSQS is an SQS endpoint over TLS speaking the JSON protocol: it hands
// out one message holding awsPut, then answers nothing until the request
// ends (hang) or with an empty receive after a while.
func tlsSQS(t *testing.T, hang bool) *httptest.Server {
	t.Helper()
	var served atomic.Bool
	srv := httptest.NewTLSServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		// Read to the end, so that the server notices a client that gives up.
		_, _ = io.Copy(io.Discard, r.Body)
		rw.Header().Set("Content-Type", "application/x-amz-json-1.0")
		switch r.Header.Get("X-Amz-Target") {
		case "AmazonSQS.ReceiveMessage":
			if hang {
				<-r.Context().Done()
				return
			}
			if served.CompareAndSwap(false, true) {
				body, _ := json.Marshal(sqsRecord)
				fmt.Fprintf(rw, `{"Messages":[{"MessageId":"m1","ReceiptHandle":"r1","Body":%s}]}`, body)
				return
			}
			select {
			case <-r.Context().Done():
			case <-time.After(time.Second):
			}
			io.WriteString(rw, `{"Messages":[]}`)
		case "AmazonSQS.DeleteMessageBatch":
			io.WriteString(rw, `{"Successful":[{"Id":"0"}],"Failed":[]}`)
		default:
			http.Error(rw, "unknown target", http.StatusBadRequest)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// caBundle writes a PEM file holding a fresh self-signed CA certificate.
func caBundle(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "voyageur test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
