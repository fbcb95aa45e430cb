package backends

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
)

// Sentinel errors; implementations wrap them so callers use errors.Is.
var (
	ErrNotExist           = errors.New("object does not exist")
	ErrPreconditionFailed = errors.New("precondition failed: the object changed")
	ErrNoSuchUpload       = errors.New("multipart upload does not exist")
	// ErrNoSuchBucket: the bucket itself is missing, so no call on it can
	// succeed.
	ErrNoSuchBucket = errors.New("bucket does not exist")
	// ErrCertificate: the store's TLS certificate was refused. No retry
	// changes that; ca_file (or $AWS_CA_BUNDLE) may.
	ErrCertificate = errors.New("tls certificate not trusted")
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

// Permanent reports whether the request is refused for what it asks, so
// that sending it again cannot succeed: a 400 about the key or the request
// itself (an invalid object name such as one with a ".." segment), not
// about credentials, the region or a transient condition.
func (e *HTTPError) Permanent() bool {
	if e.Status != 400 || e.Retryable() {
		return false
	}
	switch e.Code {
	case "", "BadRequest", "InvalidArgument", "InvalidObjectName", "XMinioInvalidObjectName", "KeyTooLongError", "InvalidURI":
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
	// A host name the resolver says does not exist is a mistake in the
	// endpoint, not a passing failure.
	var de *net.DNSError
	if errors.As(err, &de) && de.IsNotFound {
		return false
	}
	var oe *net.OpError
	if errors.As(err, &oe) || errors.Is(err, io.EOF) {
		return true
	}
	// A round trip that failed below HTTP (a connection closed before the
	// answer: SDKs reword the EOF) is transient, unless the certificate
	// was refused: that will not change by trying again.
	var ue *url.Error
	if errors.As(err, &ue) {
		return certificateReason(err) == nil
	}
	return false
}

// certificateReason returns the x509 error of a refused certificate in
// err's chain, or nil.
func certificateReason(err error) error {
	var ua x509.UnknownAuthorityError
	var ci x509.CertificateInvalidError
	var he x509.HostnameError
	switch {
	case errors.As(err, &ua):
		return ua
	case errors.As(err, &ci):
		return ci
	case errors.As(err, &he):
		return he
	}
	return nil
}

// TransportError names the operation and the key of a request that got no
// answer from the store, and says what went wrong in one short line: the
// round trip's own error ("Get URL: dial tcp …"), without the layers of
// wrapping the SDKs add ("operation error S3: …, https response error
// StatusCode: 0, RequestID: , …"), all of which stay in the chain for
// errors.Is and errors.As. A refused certificate also wraps
// ErrCertificate: it is what a user must read to fix ca_file.
func TransportError(op, key string, err error) error {
	what := subject(op, key)
	if reason := certificateReason(err); reason != nil {
		return fmt.Errorf("%s: %w: %w", what, ErrCertificate, reason)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return &transportError{msg: what + ": " + ue.Error(), err: err}
	}
	return fmt.Errorf("%s: %w", what, err)
}

// transportError is an error with a shorter text than its chain's.
type transportError struct {
	msg string
	err error
}

func (e *transportError) Error() string { return e.msg }
func (e *transportError) Unwrap() error { return e.err }

// StatusError names the operation and the key and classifies a store's
// error answer: it wraps a *HTTPError, joined with ErrNotExist,
// ErrPreconditionFailed, ErrNoSuchUpload or ErrNoSuchBucket where the
// answer means that.
// Implementations call it for every non-2xx answer, so the mapping from
// S3 error codes to the contract lives here once.
func StatusError(op, key string, status int, code, message string) error {
	he := &HTTPError{Status: status, Code: code, Message: message}
	what := subject(op, key)
	switch {
	case code == "NoSuchUpload":
		return fmt.Errorf("%s: %w: %w", what, ErrNoSuchUpload, he)
	case code == "NoSuchBucket" || code == "ContainerNotFound": // S3, Azure
		return fmt.Errorf("%s: %w: %w", what, ErrNoSuchBucket, he)
	case status == 412:
		return fmt.Errorf("%s: %w: %w", what, ErrPreconditionFailed, he)
	case status == 404 && (code == "NoSuchKey" || code == "NotFound" || code == "NoSuchVersion" || code == "" || code == "BlobNotFound"):
		return fmt.Errorf("%s: %w: %w", what, ErrNotExist, he)
	}
	return fmt.Errorf("%s: %w", what, he)
}

// subject is "op key", or "op" for a call on no key (a bucket listing).
func subject(op, key string) string {
	if key == "" {
		return op
	}
	return op + " " + key
}

// LowerKeys returns user metadata with lower-case keys (S3 treats them
// case-insensitively and returns them lower-cased), or nil when empty.
func LowerKeys(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[strings.ToLower(k)] = v
	}
	return out
}

// UploadListingRefused reports whether err, from a listing of incomplete
// multipart uploads (the first request sync and restore make to a
// destination), still lets the work go on: a store without the call (501),
// or a key allowed to write but not to list uploads (AccessDenied). Only
// the clean-up of stale uploads is lost. Anything else (an unreachable
// store, refused credentials, a missing bucket, an untrusted certificate)
// would fail every object.
func UploadListingRefused(err error) bool {
	var he *HTTPError
	return errors.As(err, &he) && (he.Code == "AccessDenied" || he.Status == http.StatusNotImplemented)
}
