package sqsserver_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/voyageur-ca/voyageur/integration/sqsserver"
)

func TestServer(t *testing.T) {
	s := sqsserver.Start(t)
	if !strings.HasPrefix(s.URL, "http://127.0.0.1:") {
		t.Fatalf("URL %q: want a loopback endpoint", s.URL)
	}
	port := strings.TrimPrefix(s.URL, "http://127.0.0.1:")

	q := s.CreateQueue(t, "harness")
	u, err := url.Parse(q)
	if err != nil {
		t.Fatal(err)
	}
	// The emulator names queues after FAUXQS_HOST, not after its endpoint.
	if u.Host != "sqs."+sqsserver.Region+".127.0.0.1:"+port || !strings.HasSuffix(u.Path, "/harness") {
		t.Fatalf("queue URL %q, want http://sqs.%s.127.0.0.1:%s/ACCOUNT/harness", q, sqsserver.Region, port)
	}
	s.SetAttributes(t, q, map[string]string{"VisibilityTimeout": "1"})

	if id := s.Send(t, q, `{"hello":"world"}`); id == "" {
		t.Error("Send returned no message ID")
	}
	s.Send(t, q, "second")
	if visible, inflight := s.Counts(t, q); visible != 2 || inflight != 0 {
		t.Errorf("counts: %d visible, %d in flight; want 2 and 0", visible, inflight)
	}

	s.Stop()
	s.Stop() // idempotent
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil}}
	if resp, err := client.Get(s.URL + "/health"); err == nil {
		resp.Body.Close()
		t.Error("emulator still answering after Stop")
	}
}
