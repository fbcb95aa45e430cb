package events

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/voyageur-ca/voyageur/internal/testenv"
	"github.com/voyageur-ca/voyageur/journal"
)

// fakeIntake records what it is given and fails while err is set.
type fakeIntake struct {
	mu     sync.Mutex
	events []Event
	calls  int
	err    error
}

func (f *fakeIntake) intake(_ context.Context, events []Event) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.err != nil {
		return f.err
	}
	f.events = append(f.events, events...)
	return nil
}

func (f *fakeIntake) snapshot() (calls int, events []Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls, append([]Event(nil), f.events...)
}

const webhookToken = "s3cr3t-t0ken-do-not-log"

func postEvents(t *testing.T, url, auth, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("post: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestWebhookRequests(t *testing.T) {
	fake := &fakeIntake{}
	var gaps atomic.Int32
	logs := &testenv.LogBuffer{}
	h := &webhookHandler{token: webhookToken, intake: fake.intake, gap: func() { gaps.Add(1) },
		log: slog.New(slog.NewTextHandler(logs, nil))}
	srv := httptest.NewServer(h)
	defer srv.Close()
	bearer := "Bearer " + webhookToken

	for _, tc := range []struct {
		name, method, auth, body string
		status                   int
		calls, gaps              int // cumulative
	}{
		{"probe", http.MethodGet, "", "", http.StatusOK, 0, 0},
		{"probe head", http.MethodHead, "", "", http.StatusOK, 0, 0},
		{"other method", http.MethodDelete, bearer, "", http.StatusMethodNotAllowed, 0, 0},
		{"no token", http.MethodPost, "", minioWebhook, http.StatusUnauthorized, 0, 0},
		{"wrong token", http.MethodPost, "Bearer nope", minioWebhook, http.StatusUnauthorized, 0, 0},
		{"token without scheme", http.MethodPost, webhookToken, minioWebhook, http.StatusUnauthorized, 0, 0},
		{"token with a suffix", http.MethodPost, bearer + "x", minioWebhook, http.StatusUnauthorized, 0, 0},
		{"garbage", http.MethodPost, bearer, "{not json", http.StatusBadRequest, 0, 1},
		{"test event", http.MethodPost, bearer, testEvent, http.StatusOK, 0, 1},
		{"event", http.MethodPost, bearer, minioWebhook, http.StatusOK, 1, 1},
		{"too large", http.MethodPost, bearer, `{"Records":[` + strings.Repeat(" ", webhookMaxBody) + `]}`,
			http.StatusRequestEntityTooLarge, 1, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, srv.URL+"/minio/events", strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Errorf("status %d (%s), want %d", resp.StatusCode, body, tc.status)
			}
			if tc.method == http.MethodGet && string(body) != "ok\n" {
				t.Errorf("probe body %q", body)
			}
			if calls, _ := fake.snapshot(); calls != tc.calls {
				t.Errorf("%d intake calls, want %d", calls, tc.calls)
			}
			if g := int(gaps.Load()); g != tc.gaps {
				t.Errorf("%d gaps, want %d", g, tc.gaps)
			}
		})
	}

	_, events := fake.snapshot()
	want := Event{Bucket: "photos", Key: "2026/a b+c.jpg", Op: journal.OpPut, VersionID: "5b6f4e2a-1c3d-4e5f-8a9b-0c1d2e3f4a5b",
		ETag: "9b2cf535f27731c974343645a3985328-4", Size: 20971520, Sequencer: "1830E4A6F0D3E3F1",
		Time: mustTime("2026-03-04T05:06:07.120Z"), Source: "webhook"}
	if len(events) != 1 || events[0] != want {
		t.Errorf("intake got %+v, want [%+v]", events, want)
	}

	// An intake failure asks the sender to retry and reports a gap.
	fake.mu.Lock()
	fake.err = errors.New("journal: disk full")
	fake.mu.Unlock()
	req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(awsPut))
	req.Header.Set("Authorization", bearer)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("intake failure: status %d, Retry-After %q; want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if g := gaps.Load(); g != 3 {
		t.Errorf("%d gaps after an intake failure, want 3", g)
	}

	out := logs.String()
	for _, want := range []string{"without the right bearer token", "malformed event message", "over the size limit", "disk full"} {
		if !strings.Contains(out, want) {
			t.Errorf("logs lack %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, webhookToken) || strings.Contains(out, "photos") {
		t.Errorf("logs leak the token or message content:\n%s", out)
	}
}

func TestWebhookNoToken(t *testing.T) {
	fake := &fakeIntake{}
	srv := httptest.NewServer(&webhookHandler{intake: fake.intake, gap: func() {}, log: slog.New(slog.DiscardHandler)})
	defer srv.Close()
	if status, body := postEvents(t, srv.URL, "", awsPut); status != http.StatusOK {
		t.Fatalf("status %d (%s), want 200 without a token configured", status, body)
	}
	if _, events := fake.snapshot(); len(events) != 1 || events[0].Key != wantAWSPut.Key {
		t.Fatalf("intake got %+v", events)
	}
}

// TestWebhookAnswersAfterIntake checks that a sender gets its 200 only once
// intake has returned, including across a shutdown.
func TestWebhookAnswersAfterIntake(t *testing.T) {
	entered := make(chan []Event, 1)
	release := make(chan struct{})
	intake := func(ctx context.Context, events []Event) error {
		entered <- events
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String() + "/"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := &Webhook{Token: webhookToken}
	runDone := make(chan error, 1)
	go func() { runDone <- w.serve(ctx, ln, intake, func() {}) }()

	type answer struct {
		status int
		err    error
	}
	answered := make(chan answer, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(eventBridgeCreated))
		req.Header.Set("Authorization", "Bearer "+webhookToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			answered <- answer{err: err}
			return
		}
		resp.Body.Close()
		answered <- answer{status: resp.StatusCode}
	}()

	if events := <-entered; len(events) != 1 || events[0].Source != "webhook" {
		t.Fatalf("intake got %+v", events)
	}
	select {
	case a := <-answered:
		t.Fatalf("answered %+v while intake was still running", a)
	case <-time.After(200 * time.Millisecond):
	}

	// Shutting down waits for the request in flight...
	cancel()
	select {
	case err := <-runDone:
		t.Fatalf("Run returned %v while a request was in flight", err)
	case <-time.After(200 * time.Millisecond):
	}
	// ...which is answered 200 once intake returns.
	close(release)
	if a := <-answered; a.err != nil || a.status != http.StatusOK {
		t.Fatalf("answer %+v, want 200", a)
	}
	select {
	case err := <-runDone:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after shutdown")
	}
	if _, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		t.Error("still listening after Run returned")
	}
}

func TestWebhookRun(t *testing.T) {
	// Run listens on Addr: pick a free port, then give it back to Run.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	fake := &fakeIntake{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := &Webhook{Addr: addr, Token: webhookToken}
	runDone := make(chan error, 1)
	go func() { runDone <- w.Run(ctx, fake.intake, func() {}) }()

	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("webhook not answering: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if status, body := postEvents(t, "http://"+addr+"/events", "Bearer "+webhookToken, snsWrap(t, awsDeleteMarker)); status != http.StatusOK {
		t.Fatalf("status %d (%s)", status, body)
	}
	if _, events := fake.snapshot(); len(events) != 1 || events[0].Op != journal.OpDelete || events[0].Key != "daily/café €+1.csv" {
		t.Fatalf("intake got %+v", events)
	}

	// A second webhook on the same address cannot start: a configuration
	// error, returned.
	err = (&Webhook{Addr: addr}).Run(ctx, fake.intake, func() {})
	if err == nil || !strings.HasPrefix(err.Error(), "webhook: listen: ") {
		t.Errorf("second Run on %s: %v, want a listen error", addr, err)
	}

	cancel()
	select {
	case err := <-runDone:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after ctx ended")
	}
}

// fakeAddrListener is a loopback listener that claims another address, to
// test the warning about listening beyond loopback without listening there.
type fakeAddrListener struct {
	net.Listener
	addr net.Addr
}

func (l fakeAddrListener) Addr() net.Addr { return l.addr }

func TestWebhookWarnsWithoutTokenBeyondLoopback(t *testing.T) {
	public := &net.TCPAddr{IP: net.IPv4zero, Port: 8088}
	for _, tc := range []struct {
		name  string
		addr  net.Addr
		token string
		warn  bool
	}{
		{"loopback", nil, "", false},
		{"all interfaces, token", public, webhookToken, false},
		{"all interfaces, no token", public, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			if tc.addr != nil {
				ln = fakeAddrListener{Listener: ln, addr: tc.addr}
			}
			logs := &testenv.LogBuffer{}
			w := &Webhook{Token: tc.token, Logger: slog.New(slog.NewTextHandler(logs, nil))}
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			if err := w.serve(ctx, ln, (&fakeIntake{}).intake, func() {}); err != nil {
				t.Fatal(err)
			}
			if got := strings.Contains(logs.String(), "without a token"); got != tc.warn {
				t.Errorf("warning logged: %v, want %v; logs:\n%s", got, tc.warn, logs)
			}
			if strings.Contains(logs.String(), webhookToken) {
				t.Errorf("logs leak the token:\n%s", logs)
			}
		})
	}
}

// TestWebhookBearerAnyCase: the auth scheme matches case-insensitively
// (RFC 9110); the token itself does not.
func TestWebhookBearerAnyCase(t *testing.T) {
	fake := &fakeIntake{}
	h := &webhookHandler{token: webhookToken, intake: fake.intake, gap: func() {}, log: slog.New(slog.DiscardHandler)}
	srv := httptest.NewServer(h)
	defer srv.Close()
	for auth, want := range map[string]int{
		"bearer " + webhookToken:                  http.StatusOK,
		"BEARER " + webhookToken:                  http.StatusOK,
		"Bearer " + strings.ToUpper(webhookToken): http.StatusUnauthorized,
		"Basic " + webhookToken:                   http.StatusUnauthorized,
		"bearer":                                  http.StatusUnauthorized,
	} {
		if got, body := postEvents(t, srv.URL, auth, minioWebhook); got != want {
			t.Errorf("Authorization %q: status %d (%s), want %d", strings.Replace(auth, webhookToken, "TOKEN", 1), got, body, want)
		}
	}
}

// fakeClock is the clock and timers of a gapLimiter under test: time
// moves only when told, and held calls fire only when the test fires them.
type fakeClock struct {
	now  time.Time
	held []func()
}

func (c *fakeClock) Now() time.Time { return c.now }
func (c *fakeClock) AfterFunc(d time.Duration, f func()) *time.Timer {
	c.held = append(c.held, f)
	return time.AfterFunc(time.Hour, func() {}) // only for Stop
}

// TestWebhookGapsRateLimited: 200 malformed messages report one gap at
// once and hold one more for when the minute has passed: one reconcile
// scan a minute at most, and still one after the last gap.
func TestWebhookGapsRateLimited(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)}
	var gaps atomic.Int32
	limiter := newGapLimiter(func() { gaps.Add(1) }, webhookGapEvery, clock.Now, clock.AfterFunc)
	defer limiter.stop()
	h := &webhookHandler{token: webhookToken, intake: (&fakeIntake{}).intake, gap: limiter.call, log: slog.New(slog.DiscardHandler)}
	srv := httptest.NewServer(h)
	defer srv.Close()

	for range 200 {
		if code, _ := postEvents(t, srv.URL, "Bearer "+webhookToken, "{not json"); code != http.StatusBadRequest {
			t.Fatalf("malformed message: status %d, want 400", code)
		}
	}
	if g := gaps.Load(); g != 1 || len(clock.held) != 1 {
		t.Fatalf("200 malformed messages: %d gaps reported, %d held; want 1 and 1", g, len(clock.held))
	}
	clock.now = clock.now.Add(webhookGapEvery)
	clock.held[0]()
	if g := gaps.Load(); g != 2 {
		t.Errorf("after the minute: %d gaps, want 2 (the held one)", g)
	}
	// Quiet since: nothing more is reported or held.
	clock.now = clock.now.Add(10 * webhookGapEvery)
	if g := gaps.Load(); g != 2 || len(clock.held) != 1 {
		t.Errorf("no more messages: %d gaps, %d held; want 2 and 1", g, len(clock.held))
	}
	// A gap long after the last one is reported at once.
	postEvents(t, srv.URL, "Bearer "+webhookToken, "{not json")
	if g := gaps.Load(); g != 3 || len(clock.held) != 1 {
		t.Errorf("a gap after a quiet spell: %d gaps, %d held; want 3 and 1", g, len(clock.held))
	}
}
