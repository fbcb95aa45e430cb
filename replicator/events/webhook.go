package events

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Webhook is an EventSource that receives S3 event messages over HTTP, as
// MinIO's webhook notification target posts them (any shape ParseS3Events
// accepts, on any path), and Azure Event Grid deliveries (see
// ParseEventGridEvents; its handshakes are answered as eventgrid.go says).
//
// A POST is answered 200 only after Intake returned nil for its events, so a
// sender that retries until it gets a 2xx never loses an event: 401 when
// Token is set and the request does not carry "Authorization: Bearer
// <Token>", 400 for a malformed message, 413 past 10 MiB, 503 when Intake
// failed. GET and HEAD answer 200 "ok" without authentication, for probes.
// A message that was authorized but not recorded (400, 413, 503) calls gap,
// since a sender that does not retry loses its events; those calls are
// rate-limited to one per minute (webhookGapEvery), the last one delayed
// rather than dropped, so that a flood of bad messages costs at most one
// reconcile scan (a full source listing) a minute and the last gap is still
// followed by one. The scheme "Bearer" matches in any case, as HTTP
// requires. Neither the token nor message bodies are ever logged.
type Webhook struct {
	// Addr is the host:port to listen on, such as "127.0.0.1:8088". A
	// non-loopback address without a Token is allowed, with a warning.
	Addr string
	// Token, when not empty, is the bearer token every POST must carry.
	Token string
	// Logger receives warnings about rejected requests; nil discards them.
	Logger *slog.Logger
}

var _ EventSource = (*Webhook)(nil)

// Webhook limits.
const (
	// webhookMaxBody bounds one message; S3 notifications are at most 64 KB
	// and a MinIO webhook post holds one record.
	webhookMaxBody = 10 << 20
	// webhookGrace is how long shutdown lets requests in flight finish
	// before their intake is cancelled.
	webhookGrace = 5 * time.Second
	// webhookRetryAfter is the Retry-After of a 503, in seconds.
	webhookRetryAfter = "5"
	// webhookGapEvery is the least time between two gaps the webhook
	// reports.
	webhookGapEvery = time.Minute
)

// Name returns "webhook".
func (w *Webhook) Name() string { return "webhook" }

// Run listens on Addr and serves event messages until ctx is done, then
// stops accepting requests, gives those in flight a few seconds to finish
// (cancelling their intake after that), waits for them and returns nil. It
// returns an error when it cannot listen or serve.
func (w *Webhook) Run(ctx context.Context, intake Intake, gap func()) error {
	ln, err := net.Listen("tcp", w.Addr)
	if err != nil {
		return fmt.Errorf("webhook: listen: %w", err)
	}
	return w.serve(ctx, ln, intake, gap)
}

// serve is Run on a listener it owns and closes.
func (w *Webhook) serve(ctx context.Context, ln net.Listener, intake Intake, gap func()) error {
	log := w.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	addr := ln.Addr().String()
	if w.Token == "" && !isLoopback(ln.Addr()) {
		log.Warn("webhook listens beyond loopback without a token: anyone who reaches it can post events",
			"addr", addr)
	}

	// Requests get a context that outlives ctx by the shutdown grace, so
	// that an intake under way can still record what it received.
	reqCtx, cancelRequests := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRequests()
	gaps := newGapLimiter(gap, webhookGapEvery, time.Now, time.AfterFunc)
	defer gaps.stop()
	h := &webhookHandler{token: w.Token, intake: intake, gap: gaps.call, log: log}
	srv := &http.Server{
		Handler:           h,
		BaseContext:       func(net.Listener) context.Context { return reqCtx },
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("webhook listening", "addr", addr)

	select {
	case err := <-served:
		h.closeAndWait()
		return fmt.Errorf("webhook: serve on %s: %w", addr, err)
	case <-ctx.Done():
	}
	graceCtx, cancel := context.WithTimeout(context.Background(), webhookGrace)
	defer cancel()
	if err := srv.Shutdown(graceCtx); err != nil {
		cancelRequests()
		_ = srv.Close()
	}
	<-served
	h.closeAndWait()
	return nil
}

// isLoopback reports whether a listener address is a loopback one.
func isLoopback(a net.Addr) bool {
	tcp, ok := a.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}

// webhookHandler serves the webhook. It counts the requests calling intake
// so that serve returns only after the last one.
type webhookHandler struct {
	token  string
	intake Intake
	gap    func()
	log    *slog.Logger

	mu       sync.Mutex
	closed   bool
	inflight sync.WaitGroup
}

// enter registers a request; it is false once the handler is closed.
func (h *webhookHandler) enter() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	h.inflight.Add(1)
	return true
}

// closeAndWait refuses new requests and waits for those in flight.
func (h *webhookHandler) closeAndWait() {
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
	h.inflight.Wait()
}

func (h *webhookHandler) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(rw, "ok\n")
		return
	case http.MethodOptions:
		answerWebhookOptions(rw, r)
		return
	case http.MethodPost:
	default:
		rw.Header().Set("Allow", "GET, HEAD, POST, OPTIONS")
		http.Error(rw, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if answerEventGridValidation(rw, r, h.log) {
		return
	}
	if !h.authorized(r) {
		h.log.Warn("webhook refused a request without the right bearer token", "remote", r.RemoteAddr)
		rw.Header().Set("WWW-Authenticate", `Bearer realm="voyageur"`)
		http.Error(rw, "unauthorized", http.StatusUnauthorized)
		return
	}
	if !h.enter() {
		unavailable(rw, "shutting down")
		return
	}
	defer h.inflight.Done()

	body, err := io.ReadAll(http.MaxBytesReader(rw, r.Body, webhookMaxBody))
	if err != nil {
		if tooBig := (*http.MaxBytesError)(nil); errors.As(err, &tooBig) {
			h.log.Warn("webhook refused an event message over the size limit", "remote", r.RemoteAddr, "limit", tooBig.Limit)
			h.gap()
			http.Error(rw, "event message too large", http.StatusRequestEntityTooLarge)
			return
		}
		h.log.Warn("webhook could not read an event message", "remote", r.RemoteAddr, "err", err)
		http.Error(rw, "could not read the request body", http.StatusBadRequest)
		return
	}
	events, err := parseWebhookBody(body)
	if err != nil {
		h.log.Warn("webhook refused a malformed event message", "remote", r.RemoteAddr, "bytes", len(body), "err", err)
		h.gap()
		http.Error(rw, err.Error(), http.StatusBadRequest)
		return
	}
	if len(events) > 0 {
		for i := range events {
			events[i].Source = "webhook"
		}
		if err := h.intake(r.Context(), events); err != nil {
			h.log.Warn("webhook could not record events, asking the sender to retry",
				"remote", r.RemoteAddr, "events", len(events), "err", err)
			h.gap()
			unavailable(rw, "events not recorded, retry later")
			return
		}
	}
	rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(rw, "ok\n")
}

// authorized reports whether r carries the bearer token, in constant time
// (both sides are hashed first, so not even the length leaks).
func (h *webhookHandler) authorized(r *http.Request) bool {
	if h.token == "" {
		return true
	}
	scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	got := sha256.Sum256([]byte(token))
	want := sha256.Sum256([]byte(h.token))
	return strings.EqualFold(scheme, "Bearer") && subtle.ConstantTimeCompare(got[:], want[:]) == 1
}

// gapLimiter passes on calls to gap at most once per every: a call within
// every of the last one passed is held and passed when every has elapsed,
// and further calls meanwhile join it.
type gapLimiter struct {
	gap   func()
	every time.Duration
	now   func() time.Time
	after func(time.Duration, func()) *time.Timer

	mu      sync.Mutex
	last    time.Time   // when gap was last called
	pending *time.Timer // a held call, when not nil
	stopped bool
}

func newGapLimiter(gap func(), every time.Duration, now func() time.Time, after func(time.Duration, func()) *time.Timer) *gapLimiter {
	return &gapLimiter{gap: gap, every: every, now: now, after: after}
}

func (g *gapLimiter) call() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stopped || g.pending != nil {
		return
	}
	now := g.now()
	if wait := g.last.Add(g.every).Sub(now); !g.last.IsZero() && wait > 0 {
		g.pending = g.after(wait, g.fire)
		return
	}
	g.last = now
	g.gap()
}

// fire passes a held call.
func (g *gapLimiter) fire() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.pending = nil
	if g.stopped {
		return
	}
	g.last = g.now()
	g.gap()
}

// stop drops a held call: the webhook stopped, and the next watch starts
// with a reconcile scan anyway.
func (g *gapLimiter) stop() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.stopped = true
	if g.pending != nil {
		g.pending.Stop()
	}
}

// unavailable answers 503 with a Retry-After.
func unavailable(rw http.ResponseWriter, msg string) {
	rw.Header().Set("Retry-After", webhookRetryAfter)
	http.Error(rw, msg, http.StatusServiceUnavailable)
}
