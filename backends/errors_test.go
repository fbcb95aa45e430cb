package backends

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"testing"
)

func TestIsRetryable(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{&HTTPError{Status: 503, Code: "SlowDown"}, true},
		{&HTTPError{Status: 500}, true},
		{&HTTPError{Status: 403, Code: "AccessDenied"}, false},
		{fmt.Errorf("get k: %w", ErrNotExist), false},
		{fmt.Errorf("put k: %w", io.ErrUnexpectedEOF), true},
		{&url.Error{Op: "Put", URL: "http://127.0.0.1/b/k", Err: errors.New("Connection closed by foreign host. Retry again.")}, true},
		{&url.Error{Op: "Get", URL: "https://s3.example.ca/b/k", Err: x509.UnknownAuthorityError{}}, false},
		{&url.Error{Op: "Get", URL: "https://s3.example.ca/b/k", Err: context.Canceled}, false},
		{errors.New("some logic error"), false},
		{&url.Error{Op: "Get", URL: "http://nosuchhost.invalid/b", Err: &net.OpError{Op: "dial", Err: &net.DNSError{Name: "nosuchhost.invalid", Err: "no such host", IsNotFound: true}}}, false},
		{&url.Error{Op: "Get", URL: "http://s3.example.ca/b", Err: &net.OpError{Op: "dial", Err: &net.DNSError{Name: "s3.example.ca", Err: "server misbehaving", IsTemporary: true}}}, true},
		{TransportError("put", "k", &url.Error{Op: "Put", URL: "https://s3.example.ca/b/k", Err: x509.HostnameError{}}), false},
	} {
		if got := IsRetryable(c.err); got != c.want {
			t.Errorf("IsRetryable(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

func TestTransportErrorCertificate(t *testing.T) {
	sdk := fmt.Errorf("operation error S3: ListObjectsV2, https response error StatusCode: 0, RequestID: , HostID: , request send failed: %w",
		&url.Error{Op: "Get", URL: "https://127.0.0.1:9000/b?list-type=2", Err: &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}})
	err := TransportError("list", "daily/", sdk)
	if !errors.Is(err, ErrCertificate) || strings.Contains(err.Error(), "operation error") || !strings.HasPrefix(err.Error(), "list daily/: tls certificate not trusted: x509: ") {
		t.Errorf("TransportError of a refused certificate: %v", err)
	}
	var ua x509.UnknownAuthorityError
	if !errors.As(err, &ua) {
		t.Error("the x509 reason is not in the chain")
	}
	plain := errors.New("connection refused")
	if err := TransportError("list", "daily/", plain); !errors.Is(err, plain) || errors.Is(err, ErrCertificate) {
		t.Errorf("TransportError of another failure: %v", err)
	}
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: plain}
	sdk = fmt.Errorf("operation error S3: ListObjectsV2, https response error StatusCode: 0, RequestID: , HostID: , request send failed: %w",
		&url.Error{Op: "Get", URL: "http://127.0.0.1:9/b?list-type=2", Err: refused})
	err = TransportError("list", "", sdk)
	if want := `list: Get "http://127.0.0.1:9/b?list-type=2": dial tcp: connection refused`; err.Error() != want {
		t.Errorf("TransportError = %q, want %q", err, want)
	}
	if !errors.Is(err, plain) || !IsRetryable(err) {
		t.Errorf("TransportError lost the chain: %v", err)
	}
}

// TestStatusErrorSentinels: each S3 error code that has a meaning in the
// contract is joined with its sentinel, and the answer stays reachable.
func TestStatusErrorSentinels(t *testing.T) {
	for _, c := range []struct {
		status int
		code   string
		want   error
	}{
		{404, "NoSuchKey", ErrNotExist},
		{404, "", ErrNotExist},
		{412, "PreconditionFailed", ErrPreconditionFailed},
		{404, "NoSuchUpload", ErrNoSuchUpload},
		{404, "NoSuchBucket", ErrNoSuchBucket},
	} {
		err := StatusError("get", "k", c.status, c.code, "m")
		var he *HTTPError
		if !errors.Is(err, c.want) || !errors.As(err, &he) || he.Code != c.code {
			t.Errorf("%d %s: %v, want %v and the HTTPError", c.status, c.code, err, c.want)
		}
	}
	if err := StatusError("get", "k", 403, "AccessDenied", "m"); errors.Is(err, ErrNoSuchBucket) || errors.Is(err, ErrNotExist) {
		t.Errorf("AccessDenied mapped to a sentinel: %v", err)
	}
}
