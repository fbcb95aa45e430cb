package backends

import (
	"io"
	"strings"
	"testing"
)

// TestContentMD5 hashes size bytes from the current position and leaves
// the reader where it was.
func TestContentMD5(t *testing.T) {
	r := strings.NewReader("skip" + "hello" + "tail")
	r.Seek(4, io.SeekStart)
	got, err := ContentMD5(r, 5)
	// echo -n hello | openssl md5 -binary | base64
	if want := "XUFAKrxLKna5cZ2REBfFkg=="; err != nil || got != want {
		t.Errorf("ContentMD5 = %q, %v; want %q", got, err, want)
	}
	if pos, _ := r.Seek(0, io.SeekCurrent); pos != 4 {
		t.Errorf("reader left at %d, want 4", pos)
	}
	if _, err := ContentMD5(strings.NewReader("abc"), 5); err == nil {
		t.Error("a body shorter than size hashed without an error")
	}
}
