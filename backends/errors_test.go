package backends

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/url"
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
	} {
		if got := IsRetryable(c.err); got != c.want {
			t.Errorf("IsRetryable(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
