package backends

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
)

// Sentinel errors; implementations wrap them so callers use errors.Is.
var (
	ErrNotExist           = errors.New("object does not exist")
	ErrPreconditionFailed = errors.New("precondition failed: the object changed")
	ErrNoSuchUpload       = errors.New("multipart upload does not exist")
)

// HTTPError is a failed request with its status and the store's error code.
// Implementations return it (wrapped) for every non-2xx answer so that
// classification lives here, once.
type HTTPError struct {
	Status  int
	Code    string // e.g. "SlowDown", "NoSuchKey"
	Message string
}

func (e *HTTPError) Error() string {
	switch {
	case e.Code != "" && e.Message != "":
		return fmt.Sprintf("%s (%d): %s", e.Code, e.Status, e.Message)
	case e.Code != "":
		return fmt.Sprintf("%s (%d)", e.Code, e.Status)
	default:
		return fmt.Sprintf("http status %d", e.Status)
	}
}

// Retryable reports whether the status is worth another try: throttling
// (429, 503 SlowDown) and server-side failures (500, 502, 504).
func (e *HTTPError) Retryable() bool {
	switch e.Status {
	case 429, 500, 502, 503, 504:
		return true
	}
	switch e.Code {
	case "SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable", "RequestTimeTooSkewed":
		return true
	}
	return false
}

// IsNotExist reports whether err means the object (or version) is missing.
func IsNotExist(err error) bool { return errors.Is(err, ErrNotExist) }

// IsRetryable reports whether err is transient: throttling, a 5xx answer, a
// reset or cut connection, or a network timeout. Client errors (4xx other
// than 429), a cancelled context and missing objects are not retryable.
func IsRetryable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	if errors.Is(err, ErrNotExist) || errors.Is(err, ErrPreconditionFailed) || errors.Is(err, ErrNoSuchUpload) {
		return false
	}
	var he *HTTPError
	if errors.As(err, &he) {
		return he.Retryable()
	}
	var r interface{ Retryable() bool }
	if errors.As(err, &r) {
		return r.Retryable()
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNABORTED) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	var oe *net.OpError
	return errors.As(err, &oe)
}
