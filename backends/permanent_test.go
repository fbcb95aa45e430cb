package backends

import (
	"errors"
	"fmt"
	"testing"
)

// TestPermanent: a 400 about the key or the request is permanent; a 400
// that is transient or about credentials or the region is not, nor any
// other status.
func TestPermanent(t *testing.T) {
	for _, c := range []struct {
		status int
		code   string
		want   bool
	}{
		{400, "", true}, // a HEAD answer has no body
		{400, "InvalidObjectName", true},
		{400, "XMinioInvalidObjectName", true},
		{400, "KeyTooLongError", true},
		{400, "RequestTimeout", false},
		{400, "AuthorizationHeaderMalformed", false},
		{400, "ExpiredToken", false},
		{403, "AccessDenied", false},
		{404, "NoSuchKey", false},
		{503, "SlowDown", false},
	} {
		err := fmt.Errorf("process: %w", StatusError("stat", "in/../secret.txt", c.status, c.code, ""))
		var p interface{ Permanent() bool }
		got := errors.As(err, &p) && p.Permanent()
		if got != c.want {
			t.Errorf("%d %q: permanent %v, want %v", c.status, c.code, got, c.want)
		}
	}
}
