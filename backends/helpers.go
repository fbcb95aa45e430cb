package backends

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// ParseURL parses an http(s) URL naming a service: it must have an http or
// https scheme and a host, and no user information (credentials belong in
// the configuration's key fields, not in a URL that ends up in logs). The
// path is not checked; see ParseEndpoint. Errors show the URL redacted.
func ParseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return nil, errors.New("url does not parse")
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("url %q: scheme is not http or https", RedactURL(raw))
	case u.Host == "":
		return nil, fmt.Errorf("url %q: no host", RedactURL(raw))
	case u.User != nil:
		return nil, fmt.Errorf("url %q: user information is not allowed", RedactURL(raw))
	}
	return u, nil
}

// ParseEndpoint parses an object store or queue service endpoint of the form
// http(s)://host[:port], with an optional trailing "/": ParseURL's checks,
// and no other path. It returns a URL holding only the scheme and the host
// (with its port, if any).
func ParseEndpoint(raw string) (*url.URL, error) {
	u, err := ParseURL(raw)
	if err != nil {
		return nil, err
	}
	if u.Path != "" && u.Path != "/" {
		return nil, fmt.Errorf("url %q: has a path", RedactURL(raw))
	}
	return &url.URL{Scheme: u.Scheme, Host: u.Host}, nil
}

// RedactURL returns raw without its user information, for error messages,
// or "(unparsable)" when it does not parse.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable)"
	}
	u.User = nil
	return u.String()
}

// TrimETag removes the double quotes around an ETag as HTTP carries it.
func TrimETag(etag string) string { return strings.Trim(etag, `"`) }

// TotalSize returns the complete length from a Content-Range such as
// "bytes 0-9/100".
func TotalSize(contentRange string) (int64, error) {
	_, total, ok := strings.Cut(contentRange, "/")
	if !ok || total == "*" {
		return 0, fmt.Errorf("content-range %q has no total size", contentRange)
	}
	n, err := strconv.ParseInt(total, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("content-range %q: %w", contentRange, err)
	}
	return n, nil
}

// UploadsUnder keeps the uploads of one page of a multipart upload listing
// whose key is under prefix and sorts them by key, then by initiation. It
// reuses page's backing array. The S3 backends list every upload of a bucket
// and filter here, since MinIO reads a non-empty prefix as one exact object
// name, and sort here, since MinIO answers an unfiltered listing in
// initiation order.
func UploadsUnder(prefix string, page []Upload) []Upload {
	page = slices.DeleteFunc(page, func(u Upload) bool { return !strings.HasPrefix(u.Key, prefix) })
	slices.SortStableFunc(page, func(a, b Upload) int {
		if c := strings.Compare(a.Key, b.Key); c != 0 {
			return c
		}
		return a.Initiated.Compare(b.Initiated)
	})
	return page
}
