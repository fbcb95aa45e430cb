package backends

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseEndpoint(t *testing.T) {
	for _, tc := range []struct{ raw, want string }{
		{"http://127.0.0.1:9000", "http://127.0.0.1:9000"},
		{"https://s3.ca-central-1.amazonaws.com/", "https://s3.ca-central-1.amazonaws.com"},
		{"https://[::1]:9000", "https://[::1]:9000"},
	} {
		u, err := ParseEndpoint(tc.raw)
		if err != nil {
			t.Errorf("%q: %v", tc.raw, err)
		} else if u.String() != tc.want {
			t.Errorf("%q: %q, want %q", tc.raw, u, tc.want)
		}
	}
	for _, raw := range []string{
		"",
		"localhost:9000",
		"ftp://host",
		"http://",
		"http://host/bucket",
		"https://key:topsecret@host",
		"https://topsecret@host",
		"http://host:9000/%zz",
	} {
		u, err := ParseEndpoint(raw)
		if err == nil {
			t.Errorf("%q accepted as %q", raw, u)
		} else if strings.Contains(err.Error(), "topsecret") {
			t.Errorf("%q: error shows the credentials: %v", raw, err)
		}
	}
}

func TestParseURL(t *testing.T) {
	if _, err := ParseURL("https://sqs.ca-central-1.amazonaws.com/1/q"); err != nil {
		t.Errorf("a path was refused: %v", err)
	}
	if _, err := ParseURL("https://AKIA:topsecret@sqs.ca-central-1.amazonaws.com/1/q"); err == nil {
		t.Error("user information was accepted")
	}
}

func TestRedactURL(t *testing.T) {
	if got := RedactURL("https://key:secret@host:9000/b"); got != "https://host:9000/b" {
		t.Errorf("got %q", got)
	}
	if got := RedactURL("http://host/%zz"); got != "(unparsable)" {
		t.Errorf("got %q", got)
	}
}

func TestTotalSize(t *testing.T) {
	if n, err := TotalSize("bytes 0-9/100"); err != nil || n != 100 {
		t.Errorf("got %d, %v", n, err)
	}
	for _, cr := range []string{"", "bytes 0-9/*", "bytes 0-9/x"} {
		if _, err := TotalSize(cr); err == nil {
			t.Errorf("%q accepted", cr)
		}
	}
}

func TestUploadsUnder(t *testing.T) {
	t0 := time.Unix(1e9, 0)
	page := []Upload{
		{Key: "p/b", UploadID: "3", Initiated: t0},
		{Key: "q/a", UploadID: "x", Initiated: t0},
		{Key: "p/a", UploadID: "2", Initiated: t0.Add(time.Second)},
		{Key: "p/a", UploadID: "1", Initiated: t0},
	}
	var ids []string
	for _, u := range UploadsUnder("p/", page) {
		ids = append(ids, u.UploadID)
	}
	if want := []string{"1", "2", "3"}; !slices.Equal(ids, want) {
		t.Errorf("got %v, want %v", ids, want)
	}
	if got := UploadsUnder("z", nil); len(got) != 0 {
		t.Errorf("got %v", got)
	}
}
