// Package backendtest is the conformance suite every backends.Bucket
// implementation runs: the same tests, against a local directory and
// against real servers, so that the contract in package backends means the
// same thing everywhere.
//
// An implementation's test calls Run with a function returning a fresh,
// empty bucket:
//
//	func TestConformance(t *testing.T) {
//		srv := minioserver.Start(t)
//		backendtest.Run(t, func(t *testing.T) backends.Bucket { ... }, backendtest.Caps{Versions: true})
//	}
package backendtest

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/voyageur-ca/voyageur/backends"
)

// Caps says what the store behind a bucket can do.
type Caps struct {
	// Versions is set when the store keeps versions and delete markers.
	Versions bool
	// Locked, when the store has object lock, returns a fresh, empty
	// bucket created with object lock enabled.
	Locked func(t *testing.T) backends.Bucket
	// Recorded, for a store reached over HTTP with object lock, returns a
	// fresh bucket like Locked whose requests pass through rec, so that
	// the suite can check the headers of locked writes.
	Recorded func(t *testing.T, rec *Recorder) backends.Bucket
	// BlockIDPartETags is set when a part's ETag is not the MD5 of its
	// bytes but a token of the part's identity: Azure lists a staged
	// block's ID and size, never its MD5, so a part ETag that ListParts can
	// return must derive from the block ID. The multipart ETag is then the
	// MD5 of those tokens, still "HEX-N".
	BlockIDPartETags bool
	// AnyPartSize is set when the store completes an upload whose parts
	// other than the last are below 5 MiB (Azure commits blocks of any
	// size), so the suite does not expect that refusal.
	AnyPartSize bool
}

// partETags and anyPartSize are the Caps of the running suite.
var partETags, anyPartSize bool

// partSize is the smallest part S3 accepts but the last.
const partSize = 5 << 20

// Run runs the suite. newBucket returns a fresh, empty bucket on each call.
func Run(t *testing.T, newBucket func(t *testing.T) backends.Bucket, caps Caps) {
	partETags = caps.BlockIDPartETags
	anyPartSize = caps.AnyPartSize
	tests := []struct {
		name string
		fn   func(t *testing.T, b backends.Bucket)
	}{
		{"PutStatGet", testPutStatGet},
		{"ZeroBytes", testZeroBytes},
		{"Overwrite", testOverwrite},
		{"RangedGet", testRangedGet},
		{"IfMatch", testIfMatch},
		{"Missing", testMissing},
		{"ListOrder", testListOrder},
		{"ListPrefixStartAfter", testListPrefixStartAfter},
		{"ListStopEarly", testListStopEarly},
		{"ListPagination", testListPagination},
		{"Delete", testDelete},
		{"Multipart", testMultipart},
		{"MultipartSmallPart", testMultipartSmallPart},
		{"AbortMultipart", testAbortMultipart},
		{"ListMultipartUploads", testListMultipartUploads},
		{"ListMultipartUploadsPrefix", testListMultipartUploadsPrefix},
		{"CancelledContext", testCancelledContext},
		{"NoObjectLock", testNoObjectLock},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newBucket(t)) })
	}
	if caps.Versions {
		t.Run("GetVersion", func(t *testing.T) { testGetVersion(t, newBucket(t)) })
		t.Run("ListVersions", func(t *testing.T) { testListVersions(t, newBucket(t)) })
	} else {
		t.Run("ListVersionsUnversioned", func(t *testing.T) { testListVersionsUnversioned(t, newBucket(t)) })
	}
	if caps.Locked != nil {
		t.Run("ObjectLock", func(t *testing.T) { testObjectLock(t, caps.Locked(t)) })
	}
	if caps.Recorded != nil {
		t.Run("LockedWritesCarryMD5", func(t *testing.T) {
			rec := &Recorder{}
			testLockedMD5(t, caps.Recorded(t, rec), rec)
		})
	}
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func md5hex(b []byte) string {
	s := md5.Sum(b)
	return hex.EncodeToString(s[:])
}

func put(t *testing.T, b backends.Bucket, key string, data []byte, opts backends.PutOptions) backends.ObjectInfo {
	t.Helper()
	oi, err := b.Put(ctxFor(t), key, bytes.NewReader(data), int64(len(data)), opts)
	if err != nil {
		t.Fatalf("put %q: %v", key, err)
	}
	return oi
}

func get(t *testing.T, b backends.Bucket, key string, opts backends.GetOptions) ([]byte, backends.ObjectInfo) {
	t.Helper()
	rc, oi, err := b.Get(ctxFor(t), key, opts)
	if err != nil {
		t.Fatalf("get %q %+v: %v", key, opts, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %q %+v: %v", key, opts, err)
	}
	return data, oi
}

func stat(t *testing.T, b backends.Bucket, key, versionID string) backends.ObjectInfo {
	t.Helper()
	oi, err := b.Stat(ctxFor(t), key, versionID)
	if err != nil {
		t.Fatalf("stat %q (version %q): %v", key, versionID, err)
	}
	return oi
}

// list collects a listing, failing the test on an error.
func list(t *testing.T, b backends.Bucket, opts backends.ListOptions) []backends.ObjectInfo {
	t.Helper()
	var out []backends.ObjectInfo
	for oi, err := range b.List(ctxFor(t), opts) {
		if err != nil {
			t.Fatalf("list %+v: %v", opts, err)
		}
		out = append(out, oi)
	}
	return out
}

func keysOf(objs []backends.ObjectInfo) []string {
	keys := make([]string, len(objs))
	for i, o := range objs {
		keys[i] = o.Key
	}
	return keys
}

// randomBytes returns n bytes that do not compress or repeat.
func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// checkMissing asserts that err says the object is missing, names key, and
// is not retryable.
func checkMissing(t *testing.T, what, key string, err error) {
	t.Helper()
	switch {
	case err == nil:
		t.Errorf("%s %q: no error, want one satisfying IsNotExist", what, key)
	case !backends.IsNotExist(err):
		t.Errorf("%s %q: error %q does not satisfy IsNotExist", what, key, err)
	case backends.IsRetryable(err):
		t.Errorf("%s %q: not-exist error %q is retryable", what, key, err)
	case !strings.Contains(err.Error(), key):
		t.Errorf("%s %q: error %q does not name the key", what, key, err)
	}
}

func testPutStatGet(t *testing.T, b backends.Bucket) {
	const key = "docs/hello world.txt"
	data := []byte("hello, voyageur")
	before := time.Now().Add(-5 * time.Minute)
	pi := put(t, b, key, data, backends.PutOptions{
		ContentType: "text/plain",
		Metadata:    map[string]string{"Owner-ID": "42", "source": "backendtest"},
	})
	if pi.ETag != md5hex(data) {
		t.Errorf("put ETag %q, want the MD5 %q", pi.ETag, md5hex(data))
	}
	want := map[string]string{"owner-id": "42", "source": "backendtest"}
	check := func(what string, oi backends.ObjectInfo) {
		t.Helper()
		if oi.Key != key || oi.Size != int64(len(data)) || oi.ETag != pi.ETag {
			t.Errorf("%s: key %q size %d etag %q, want %q %d %q", what, oi.Key, oi.Size, oi.ETag, key, len(data), pi.ETag)
		}
		if oi.ContentType != "text/plain" {
			t.Errorf("%s: content type %q, want text/plain", what, oi.ContentType)
		}
		if fmt.Sprint(oi.Metadata) != fmt.Sprint(want) {
			t.Errorf("%s: metadata %v, want %v", what, oi.Metadata, want)
		}
		if oi.LastModified.Before(before) || oi.LastModified.After(time.Now().Add(5*time.Minute)) {
			t.Errorf("%s: last modified %v, want about now", what, oi.LastModified)
		}
	}
	check("stat", stat(t, b, key, ""))
	got, oi := get(t, b, key, backends.GetOptions{})
	if !bytes.Equal(got, data) {
		t.Errorf("get: %q, want %q", got, data)
	}
	check("get", oi)
	if objs := list(t, b, backends.ListOptions{}); len(objs) != 1 || objs[0].Key != key ||
		objs[0].Size != int64(len(data)) || objs[0].ETag != pi.ETag {
		t.Errorf("list: %+v, want the one object %q", objs, key)
	}
}

func testZeroBytes(t *testing.T, b backends.Bucket) {
	const key = "empty"
	pi := put(t, b, key, nil, backends.PutOptions{})
	if want := md5hex(nil); pi.ETag != want {
		t.Errorf("put ETag %q, want %q", pi.ETag, want)
	}
	if oi := stat(t, b, key, ""); oi.Size != 0 || oi.ETag != pi.ETag {
		t.Errorf("stat: size %d etag %q, want 0 %q", oi.Size, oi.ETag, pi.ETag)
	}
	for _, opts := range []backends.GetOptions{{}, {Length: -1}} {
		if got, oi := get(t, b, key, opts); len(got) != 0 || oi.Size != 0 {
			t.Errorf("get %+v: %d bytes, size %d, want none", opts, len(got), oi.Size)
		}
	}
}

func testOverwrite(t *testing.T, b backends.Bucket) {
	const key = "over/write"
	put(t, b, key, []byte("one"), backends.PutOptions{Metadata: map[string]string{"gen": "1"}})
	p2 := put(t, b, key, []byte("second"), backends.PutOptions{ContentType: "text/x-second"})
	got, oi := get(t, b, key, backends.GetOptions{})
	if string(got) != "second" || oi.ETag != p2.ETag || oi.ETag != md5hex([]byte("second")) {
		t.Errorf("get after overwrite: %q etag %q, want %q etag %q", got, oi.ETag, "second", p2.ETag)
	}
	if oi.ContentType != "text/x-second" || oi.Metadata["gen"] != "" {
		t.Errorf("after overwrite: content type %q metadata %v, want the second put's", oi.ContentType, oi.Metadata)
	}
}

func testRangedGet(t *testing.T, b backends.Bucket) {
	const key = "range/data.bin"
	data := make([]byte, 100)
	for i := range data {
		data[i] = byte(i)
	}
	put(t, b, key, data, backends.PutOptions{})
	for _, tc := range []struct {
		opts backends.GetOptions
		want []byte
	}{
		{backends.GetOptions{Offset: 0, Length: 0}, data},
		{backends.GetOptions{Offset: 0, Length: -1}, data},
		{backends.GetOptions{Offset: 10, Length: 5}, data[10:15]},
		{backends.GetOptions{Offset: 0, Length: 1}, data[:1]},
		{backends.GetOptions{Offset: 90, Length: -1}, data[90:]},
		{backends.GetOptions{Offset: 99, Length: 1}, data[99:]},
		{backends.GetOptions{Offset: 95, Length: 50}, data[95:]},
	} {
		got, oi := get(t, b, key, tc.opts)
		if !bytes.Equal(got, tc.want) {
			t.Errorf("get %+v: %v, want %v", tc.opts, got, tc.want)
		}
		if oi.Size != int64(len(data)) {
			t.Errorf("get %+v: info size %d, want the whole object's %d", tc.opts, oi.Size, len(data))
		}
	}
}

func testIfMatch(t *testing.T, b backends.Bucket) {
	const key = "pinned"
	pi := put(t, b, key, []byte("pinned bytes"), backends.PutOptions{})
	if got, _ := get(t, b, key, backends.GetOptions{IfMatch: pi.ETag, Offset: 7, Length: -1}); string(got) != "bytes" {
		t.Errorf("get with the right If-Match: %q, want %q", got, "bytes")
	}
	rc, _, err := b.Get(ctxFor(t), key, backends.GetOptions{IfMatch: md5hex([]byte("other"))})
	if err == nil {
		rc.Close()
		t.Fatal("get with a stale If-Match succeeded, want ErrPreconditionFailed")
	}
	if !errors.Is(err, backends.ErrPreconditionFailed) {
		t.Errorf("get with a stale If-Match: %v, want ErrPreconditionFailed", err)
	}
	if backends.IsRetryable(err) || backends.IsNotExist(err) {
		t.Errorf("precondition error %q classified as retryable or not-exist", err)
	}
}

func testMissing(t *testing.T, b backends.Bucket) {
	put(t, b, "present", []byte("x"), backends.PutOptions{})
	for _, key := range []string{"absent", "present/child", "pres"} {
		_, err := b.Stat(ctxFor(t), key, "")
		checkMissing(t, "stat", key, err)
		rc, _, err := b.Get(ctxFor(t), key, backends.GetOptions{})
		if err == nil {
			rc.Close()
		}
		checkMissing(t, "get", key, err)
	}
}

// trickyKeys sort differently as bytes than as a directory walk, and need
// escaping in URLs.
var trickyKeys = []string{
	"A",
	"a b",
	"a-b",
	"a.b",
	"a/b.txt",
	"a/b/c/d/e/deep.txt",
	"a0",
	"q/x+y&z=w?v.txt",
	"q/100% sure#.txt",
	"spaces/with  two spaces .txt",
	"unicode/e.txt",
	"unicode/z.txt",
	"unicode/é.txt",
	"unicode/日本語.txt",
	"z",
}

func putKeys(t *testing.T, b backends.Bucket, keys []string) {
	t.Helper()
	g, ctx := errgroup.WithContext(ctxFor(t))
	g.SetLimit(16)
	for _, k := range keys {
		g.Go(func() error {
			_, err := b.Put(ctx, k, strings.NewReader(k), int64(len(k)), backends.PutOptions{})
			return err
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatalf("put %d keys: %v", len(keys), err)
	}
}

func testListOrder(t *testing.T, b backends.Bucket) {
	putKeys(t, b, trickyKeys)
	want := slices.Clone(trickyKeys)
	slices.Sort(want) // byte order
	objs := list(t, b, backends.ListOptions{})
	if got := keysOf(objs); !slices.Equal(got, want) {
		t.Fatalf("list:\n got %q\nwant %q", got, want)
	}
	for _, o := range objs {
		if o.Size != int64(len(o.Key)) || o.ETag != md5hex([]byte(o.Key)) {
			t.Errorf("list entry %q: size %d etag %q, want %d %q", o.Key, o.Size, o.ETag, len(o.Key), md5hex([]byte(o.Key)))
		}
	}
}

func testListPrefixStartAfter(t *testing.T, b backends.Bucket) {
	putKeys(t, b, trickyKeys)
	sorted := slices.Clone(trickyKeys)
	slices.Sort(sorted)
	expect := func(prefix, after string) []string {
		var out []string
		for _, k := range sorted {
			if strings.HasPrefix(k, prefix) && k > after {
				out = append(out, k)
			}
		}
		return out
	}
	for _, tc := range []struct{ prefix, after string }{
		{"a", ""},
		{"a/", ""},
		{"a/b", ""},
		{"a/b/", ""},
		{"unicode/", ""},
		{"unicode/é", ""},
		{"q/x+y&z=w?", ""},
		{"spaces/with  ", ""},
		{"nothing/", ""},
		{"", "a.b"},
		{"", "a/b"},
		{"", "a/b/c/d/e/deep.txt"},
		{"", "unicode/e.txt"},
		{"", "z"},
		{"", "zz"},
		{"a/", "a/b.txt"},
		{"unicode/", "unicode/z.txt"},
		{"a", "a-b"},
	} {
		got := keysOf(list(t, b, backends.ListOptions{Prefix: tc.prefix, StartAfter: tc.after}))
		if want := expect(tc.prefix, tc.after); !slices.Equal(got, want) {
			t.Errorf("list prefix %q start after %q:\n got %q\nwant %q", tc.prefix, tc.after, got, want)
		}
	}
}

func testListStopEarly(t *testing.T, b backends.Bucket) {
	putKeys(t, b, trickyKeys)
	var got []string
	for oi, err := range b.List(ctxFor(t), backends.ListOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, oi.Key)
		if len(got) == 3 {
			break
		}
	}
	if len(got) != 3 {
		t.Errorf("stopping after 3 entries gave %q", got)
	}
}

func testListPagination(t *testing.T, b backends.Bucket) {
	const n = 1100 // more than one S3 page of 1000
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("page/%05d", i)
	}
	putKeys(t, b, keys)
	if got := keysOf(list(t, b, backends.ListOptions{Prefix: "page/"})); !slices.Equal(got, keys) {
		t.Fatalf("list of %d keys: got %d keys (first %q, last %q)", n, len(got), first(got), last(got))
	}
	if got := keysOf(list(t, b, backends.ListOptions{Prefix: "page/", StartAfter: "page/00049"})); !slices.Equal(got, keys[50:]) {
		t.Errorf("list after page/00049: got %d keys (first %q), want %d", len(got), first(got), n-50)
	}
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

func last(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[len(s)-1]
}

func testDelete(t *testing.T, b backends.Bucket) {
	putKeys(t, b, []string{"del/a", "del/deep/b", "keep"})
	for _, key := range []string{"del/a", "del/deep/b"} {
		if err := b.Delete(ctxFor(t), key, ""); err != nil {
			t.Fatalf("delete %q: %v", key, err)
		}
		_, err := b.Stat(ctxFor(t), key, "")
		checkMissing(t, "stat after delete", key, err)
	}
	if err := b.Delete(ctxFor(t), "del/never-existed", ""); err != nil {
		t.Errorf("delete of a missing key: %v, want no error", err)
	}
	if got := keysOf(list(t, b, backends.ListOptions{})); !slices.Equal(got, []string{"keep"}) {
		t.Errorf("list after deletes: %q, want [keep]", got)
	}
	// A deleted key can be written again, even where a directory was.
	put(t, b, "del", []byte("now a file"), backends.PutOptions{})
	if got, _ := get(t, b, "del", backends.GetOptions{}); string(got) != "now a file" {
		t.Errorf("get del: %q", got)
	}
}

func uploadPart(t *testing.T, b backends.Bucket, key, id string, n int32, data []byte, opts backends.PartOptions) backends.Part {
	t.Helper()
	etag, err := b.UploadPart(ctxFor(t), key, id, n, bytes.NewReader(data), int64(len(data)), opts)
	if err != nil {
		t.Fatalf("upload part %d of %q: %v", n, key, err)
	}
	if !partETags && etag != md5hex(data) {
		t.Errorf("part %d: etag %q, want its MD5 %q", n, etag, md5hex(data))
	}
	if partETags && len(etag) != 32 {
		t.Errorf("part %d: etag %q, want 32 hex digits", n, etag)
	}
	return backends.Part{Number: n, ETag: etag, Size: int64(len(data))}
}

func createMultipart(t *testing.T, b backends.Bucket, key string, opts backends.PutOptions) string {
	t.Helper()
	id, err := b.CreateMultipart(ctxFor(t), key, opts)
	if err != nil {
		t.Fatalf("create multipart upload of %q: %v", key, err)
	}
	if id == "" {
		t.Fatalf("create multipart upload of %q: empty upload ID", key)
	}
	return id
}

func testMultipart(t *testing.T, b backends.Bucket) {
	const key = "mp/big file.bin"
	id := createMultipart(t, b, key, backends.PutOptions{
		ContentType: "application/x-voyageur-test",
		Metadata:    map[string]string{"Part-Test": "yes"},
	})
	chunks := [][]byte{randomBytes(t, partSize), randomBytes(t, partSize), randomBytes(t, 1234)}
	parts := make([]backends.Part, len(chunks))
	// Out of order, as concurrent uploads finish.
	for _, i := range []int{1, 2, 0} {
		parts[i] = uploadPart(t, b, key, id, int32(i+1), chunks[i], backends.PartOptions{})
	}
	listed, err := b.ListParts(ctxFor(t), key, id)
	if err != nil {
		t.Fatalf("list parts: %v", err)
	}
	if !slices.Equal(listed, parts) {
		t.Errorf("list parts: %+v, want %+v", listed, parts)
	}
	if ups := uploadsOf(t, b, key); !slices.ContainsFunc(ups, func(u backends.Upload) bool { return u.UploadID == id && u.Key == key }) {
		t.Errorf("incomplete uploads %+v do not include %s", ups, id)
	}

	oi, err := b.CompleteMultipart(ctxFor(t), key, id, parts)
	if err != nil {
		t.Fatalf("complete: %v", err)
	}
	sums := make([][]byte, len(chunks))
	for i, c := range chunks {
		s := md5.Sum(c)
		sums[i] = s[:]
		if partETags {
			sums[i], _ = backends.PartMD5(parts[i].ETag)
		}
	}
	wantETag := backends.MultipartETag(sums)
	if oi.ETag != wantETag {
		t.Errorf("complete: etag %q, want %q", oi.ETag, wantETag)
	}
	whole := bytes.Join(chunks, nil)
	st := stat(t, b, key, "")
	if st.Size != int64(len(whole)) || st.ETag != wantETag || st.ContentType != "application/x-voyageur-test" || st.Metadata["part-test"] != "yes" {
		t.Errorf("stat after complete: %+v, want size %d etag %q and the upload's content type and metadata", st, len(whole), wantETag)
	}
	got, _ := get(t, b, key, backends.GetOptions{})
	if !bytes.Equal(got, whole) {
		t.Errorf("get after complete: %d bytes (md5 %s), want %d (md5 %s)", len(got), md5hex(got), len(whole), md5hex(whole))
	}
	tail, _ := get(t, b, key, backends.GetOptions{Offset: partSize - 2, Length: 4})
	if !bytes.Equal(tail, whole[partSize-2:partSize+2]) {
		t.Errorf("ranged get across the part boundary: %x, want %x", tail, whole[partSize-2:partSize+2])
	}
	if ups := uploadsOf(t, b, key); len(ups) != 0 {
		t.Errorf("incomplete uploads after complete: %+v", ups)
	}
	if err := b.AbortMultipart(ctxFor(t), key, id); !errors.Is(err, backends.ErrNoSuchUpload) {
		t.Errorf("abort of a completed upload: %v, want ErrNoSuchUpload", err)
	}
}

func testMultipartSmallPart(t *testing.T, b backends.Bucket) {
	const key = "mp/small-parts"
	id := createMultipart(t, b, key, backends.PutOptions{})
	parts := []backends.Part{
		uploadPart(t, b, key, id, 1, []byte("too small to be anything but the last part"), backends.PartOptions{}),
		uploadPart(t, b, key, id, 2, []byte("last"), backends.PartOptions{}),
	}
	if anyPartSize {
		if _, err := b.CompleteMultipart(ctxFor(t), key, id, parts); err != nil {
			t.Errorf("complete with small parts on a store that takes them: %v", err)
		} else if got, _ := get(t, b, key, backends.GetOptions{}); string(got) != "too small to be anything but the last partlast" {
			t.Errorf("get after complete of small parts: %q", got)
		}
	} else {
		if _, err := b.CompleteMultipart(ctxFor(t), key, id, parts); err == nil {
			t.Error("complete with a first part below 5 MiB succeeded")
		} else if backends.IsRetryable(err) {
			t.Errorf("complete with a small part: %v is retryable", err)
		}
		if err := b.AbortMultipart(ctxFor(t), key, id); err != nil {
			t.Errorf("abort after a refused complete: %v", err)
		}
	}
	// A single small part is a whole object.
	id = createMultipart(t, b, key, backends.PutOptions{})
	p := uploadPart(t, b, key, id, 1, []byte("single"), backends.PartOptions{})
	if _, err := b.CompleteMultipart(ctxFor(t), key, id, []backends.Part{p}); err != nil {
		t.Fatalf("complete with one small part: %v", err)
	}
	if got, _ := get(t, b, key, backends.GetOptions{}); string(got) != "single" {
		t.Errorf("get: %q, want single", got)
	}
}

func uploadsOf(t *testing.T, b backends.Bucket, prefix string) []backends.Upload {
	t.Helper()
	var out []backends.Upload
	for u, err := range b.ListMultipartUploads(ctxFor(t), prefix) {
		if err != nil {
			t.Fatalf("list multipart uploads %q: %v", prefix, err)
		}
		out = append(out, u)
	}
	return out
}

func testAbortMultipart(t *testing.T, b backends.Bucket) {
	const key = "abort/me"
	id := createMultipart(t, b, key, backends.PutOptions{})
	uploadPart(t, b, key, id, 1, []byte("part"), backends.PartOptions{})
	if err := b.AbortMultipart(ctxFor(t), key, id); err != nil {
		t.Fatalf("abort: %v", err)
	}
	if ups := uploadsOf(t, b, ""); len(ups) != 0 {
		t.Errorf("incomplete uploads after abort: %+v", ups)
	}
	if err := b.AbortMultipart(ctxFor(t), key, id); !errors.Is(err, backends.ErrNoSuchUpload) {
		t.Errorf("second abort: %v, want ErrNoSuchUpload", err)
	} else if backends.IsRetryable(err) || !strings.Contains(err.Error(), key) {
		t.Errorf("second abort: %q is retryable or does not name the key", err)
	}
	if _, err := b.UploadPart(ctxFor(t), key, id, 2, strings.NewReader("late"), 4, backends.PartOptions{}); !errors.Is(err, backends.ErrNoSuchUpload) {
		t.Errorf("upload part after abort: %v, want ErrNoSuchUpload", err)
	}
	if _, err := b.ListParts(ctxFor(t), key, id); !errors.Is(err, backends.ErrNoSuchUpload) {
		t.Errorf("list parts after abort: %v, want ErrNoSuchUpload", err)
	}
	if got := list(t, b, backends.ListOptions{}); len(got) != 0 {
		t.Errorf("list after abort: %+v, want nothing", got)
	}
}

func testListMultipartUploads(t *testing.T, b backends.Bucket) {
	keys := []string{"mpu/y/1", "mpu/x/2", "mpu/x/1", "other/1"}
	ids := map[string]string{}
	for _, key := range keys {
		ids[key] = createMultipart(t, b, key, backends.PutOptions{})
	}
	t.Cleanup(func() {
		for key, id := range ids {
			if err := b.AbortMultipart(context.Background(), key, id); err != nil {
				t.Errorf("abort %q: %v", key, err)
			}
		}
	})
	ups := uploadsOf(t, b, "")
	var got []string
	for _, u := range ups {
		got = append(got, u.Key)
		if u.UploadID != ids[u.Key] {
			t.Errorf("upload of %q: id %q, want %q", u.Key, u.UploadID, ids[u.Key])
		}
		if u.Initiated.IsZero() {
			t.Errorf("upload of %q: zero initiation time", u.Key)
		}
	}
	want := slices.Sorted(slices.Values(keys))
	if !slices.Equal(got, want) {
		t.Errorf("all uploads: %q, want %q (in key order)", got, want)
	}
	if ups := uploadsOf(t, b, "mpu/x/1"); len(ups) != 1 || ups[0].UploadID != ids["mpu/x/1"] {
		t.Errorf("uploads with the whole key as prefix: %+v, want the one of mpu/x/1", ups)
	}
}

// testListMultipartUploadsPrefix checks the filtering by a prefix that is
// not a whole key. MinIO's server answers such a prefix with nothing (it
// matches only "" or a whole key), so a backend talking to MinIO has to
// list everything and filter on the client.
func testListMultipartUploadsPrefix(t *testing.T, b backends.Bucket) {
	ids := map[string]string{}
	for _, key := range []string{"mpu/y/1", "mpu/x/2", "mpu/x/1"} {
		ids[key] = createMultipart(t, b, key, backends.PutOptions{})
	}
	t.Cleanup(func() {
		for key, id := range ids {
			if err := b.AbortMultipart(context.Background(), key, id); err != nil {
				t.Errorf("abort %q: %v", key, err)
			}
		}
	})
	ups := uploadsOf(t, b, "mpu/x/")
	if len(ups) != 2 || ups[0].Key != "mpu/x/1" || ups[1].Key != "mpu/x/2" {
		t.Fatalf("uploads under mpu/x/: %+v, want mpu/x/1 and mpu/x/2 in key order", ups)
	}
}

func testCancelledContext(t *testing.T, b backends.Bucket) {
	put(t, b, "ctx", []byte("x"), backends.PutOptions{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := b.Stat(ctx, "ctx", ""); err == nil || backends.IsRetryable(err) {
		t.Errorf("stat with a cancelled context: %v, want a non-retryable error", err)
	}
	if _, err := b.Put(ctx, "ctx2", strings.NewReader("y"), 1, backends.PutOptions{}); err == nil || backends.IsRetryable(err) {
		t.Errorf("put with a cancelled context: %v, want a non-retryable error", err)
	}
	var listErr error
	for _, err := range b.List(ctx, backends.ListOptions{}) {
		if err != nil {
			listErr = err
		}
	}
	if listErr == nil || backends.IsRetryable(listErr) {
		t.Errorf("list with a cancelled context: %v, want a non-retryable error", listErr)
	}
}

// fakeVersionID is well formed for MinIO (a UUID) but names no version.
func fakeVersionID(t *testing.T) string {
	b := randomBytes(t, 16)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func testGetVersion(t *testing.T, b backends.Bucket) {
	const key = "versioned/obj"
	v1 := put(t, b, key, []byte("one"), backends.PutOptions{})
	v2 := put(t, b, key, []byte("two!"), backends.PutOptions{})
	if v1.VersionID == "" || v2.VersionID == "" || v1.VersionID == v2.VersionID {
		t.Fatalf("put version IDs %q and %q, want two distinct ones", v1.VersionID, v2.VersionID)
	}
	if got, oi := get(t, b, key, backends.GetOptions{VersionID: v1.VersionID}); string(got) != "one" || oi.VersionID != v1.VersionID {
		t.Errorf("get version 1: %q (version %q), want one (%q)", got, oi.VersionID, v1.VersionID)
	}
	if got, oi := get(t, b, key, backends.GetOptions{}); string(got) != "two!" || oi.VersionID != v2.VersionID {
		t.Errorf("get latest: %q (version %q), want two! (%q)", got, oi.VersionID, v2.VersionID)
	}
	if oi := stat(t, b, key, v1.VersionID); oi.Size != 3 || oi.ETag != md5hex([]byte("one")) || oi.VersionID != v1.VersionID {
		t.Errorf("stat version 1: %+v", oi)
	}
	_, err := b.Stat(ctxFor(t), key, fakeVersionID(t))
	checkMissing(t, "stat of an unknown version", key, err)
	// If-Match against the latest ETag fails once the object changed.
	rc, _, err := b.Get(ctxFor(t), key, backends.GetOptions{IfMatch: v1.ETag})
	if err == nil {
		rc.Close()
	}
	if !errors.Is(err, backends.ErrPreconditionFailed) {
		t.Errorf("get with version 1's ETag as If-Match: %v, want ErrPreconditionFailed", err)
	}
}

func testListVersions(t *testing.T, b backends.Bucket) {
	a1 := put(t, b, "v/a", []byte("a1"), backends.PutOptions{})
	a2 := put(t, b, "v/a", []byte("a2"), backends.PutOptions{})
	if err := b.Delete(ctxFor(t), "v/a", ""); err != nil {
		t.Fatalf("delete v/a: %v", err)
	}
	b1 := put(t, b, "v/b", []byte("b1"), backends.PutOptions{})
	put(t, b, "w", []byte("outside the prefix"), backends.PutOptions{})

	vs := list(t, b, backends.ListOptions{Prefix: "v/", Versions: true})
	type row struct {
		key, version string
		latest, dm   bool
	}
	var got []row
	for _, v := range vs {
		got = append(got, row{v.Key, v.VersionID, v.IsLatest, v.DeleteMarker})
	}
	if len(got) != 4 {
		t.Fatalf("version listing: %+v, want 4 entries", got)
	}
	want := []row{
		{"v/a", got[0].version, true, true}, // the delete marker, newest first
		{"v/a", a2.VersionID, false, false},
		{"v/a", a1.VersionID, false, false},
		{"v/b", b1.VersionID, true, false},
	}
	if !slices.Equal(got, want) || got[0].version == "" {
		t.Errorf("version listing:\n got %+v\nwant %+v (with a delete marker version ID)", got, want)
	}
	if got := keysOf(list(t, b, backends.ListOptions{Prefix: "v/"})); !slices.Equal(got, []string{"v/b"}) {
		t.Errorf("listing after delete: %q, want [v/b]", got)
	}
	_, err := b.Stat(ctxFor(t), "v/a", "")
	checkMissing(t, "stat behind a delete marker", "v/a", err)
	if got, _ := get(t, b, "v/a", backends.GetOptions{VersionID: a2.VersionID}); string(got) != "a2" {
		t.Errorf("get of a version behind a delete marker: %q, want a2", got)
	}
	// Deleting one version removes it for good.
	if err := b.Delete(ctxFor(t), "v/a", a1.VersionID); err != nil {
		t.Fatalf("delete version: %v", err)
	}
	vs = list(t, b, backends.ListOptions{Prefix: "v/a", Versions: true})
	if len(vs) != 2 || vs[1].VersionID != a2.VersionID {
		t.Errorf("versions after deleting version 1: %+v, want the marker and version 2", vs)
	}
}

func testListVersionsUnversioned(t *testing.T, b backends.Bucket) {
	put(t, b, "u/a", []byte("1"), backends.PutOptions{})
	put(t, b, "u/a", []byte("2"), backends.PutOptions{})
	put(t, b, "u/b", []byte("3"), backends.PutOptions{})
	vs := list(t, b, backends.ListOptions{Prefix: "u/", Versions: true})
	if got := keysOf(vs); !slices.Equal(got, []string{"u/a", "u/b"}) {
		t.Fatalf("version listing of an unversioned store: %q, want each object once", got)
	}
	for _, v := range vs {
		if !v.IsLatest || v.DeleteMarker || v.VersionID != "" {
			t.Errorf("version listing entry %+v: want latest, no marker, empty version ID", v)
		}
	}
}

// lockFor is a governance retention of one day from now.
func lockFor() backends.PutOptions {
	return backends.PutOptions{LockMode: backends.LockGovernance, LockUntil: time.Now().Add(24 * time.Hour)}
}

// testNoObjectLock: on a bucket without object lock, a write that asks for
// retention fails and stores nothing, rather than storing an object that
// is not protected.
func testNoObjectLock(t *testing.T, b backends.Bucket) {
	on, err := b.ObjectLockEnabled(ctxFor(t))
	if err != nil || on {
		t.Fatalf("object lock enabled on a plain bucket: %v, %v; want false, nil", on, err)
	}
	const key = "lock/refused"
	if _, err := b.Put(ctxFor(t), key, bytes.NewReader([]byte("x")), 1, lockFor()); err == nil {
		t.Errorf("put with retention on a bucket without object lock succeeded")
	}
	_, err = b.Stat(ctxFor(t), key, "")
	checkMissing(t, "stat after a refused put", key, err)
	if id, err := b.CreateMultipart(ctxFor(t), key, lockFor()); err == nil {
		t.Errorf("create multipart upload with retention on a bucket without object lock succeeded")
		_ = b.AbortMultipart(ctxFor(t), key, id)
	}
	oi := put(t, b, "lock/plain", []byte("x"), backends.PutOptions{})
	if err := b.ExtendRetention(ctxFor(t), "lock/plain", oi.VersionID, backends.LockGovernance, time.Now().Add(time.Hour)); err == nil {
		t.Errorf("extend retention on a bucket without object lock succeeded")
	}
}

// testObjectLock: a version written with retention cannot be deleted
// before its date, whether written in one request or by a multipart
// upload; overwriting and deleting the key add a version and a delete
// marker, and the locked version stays readable.
func testObjectLock(t *testing.T, b backends.Bucket) {
	on, err := b.ObjectLockEnabled(ctxFor(t))
	if err != nil || !on {
		t.Fatalf("object lock enabled: %v, %v; want true, nil", on, err)
	}
	const key = "lock/single"
	v1 := put(t, b, key, []byte("locked"), lockFor())
	if v1.VersionID == "" {
		t.Fatalf("put with retention returned no version ID")
	}
	if err := b.Delete(ctxFor(t), key, v1.VersionID); err == nil {
		t.Errorf("deleting a locked version succeeded")
	}
	v2 := put(t, b, key, []byte("newer"), backends.PutOptions{})
	if err := b.Delete(ctxFor(t), key, ""); err != nil {
		t.Errorf("delete (a delete marker) of a locked key: %v", err)
	}
	if got, oi := get(t, b, key, backends.GetOptions{VersionID: v1.VersionID}); string(got) != "locked" || oi.VersionID != v1.VersionID {
		t.Errorf("locked version after an overwrite and a delete: %q (version %q)", got, oi.VersionID)
	}
	if v2.VersionID == v1.VersionID {
		t.Errorf("the overwrite kept version %q", v1.VersionID)
	}

	const mp = "lock/multipart"
	id := createMultipart(t, b, mp, lockFor())
	part := uploadPart(t, b, mp, id, 1, []byte("one part"), backends.PartOptions{Locked: true})
	oi, err := b.CompleteMultipart(ctxFor(t), mp, id, []backends.Part{part})
	if err != nil {
		t.Fatalf("complete multipart upload with retention: %v", err)
	}
	if err := b.Delete(ctxFor(t), mp, oi.VersionID); err == nil {
		t.Errorf("deleting a locked version made by a multipart upload succeeded")
	}
	if got, _ := get(t, b, mp, backends.GetOptions{VersionID: oi.VersionID}); string(got) != "one part" {
		t.Errorf("locked multipart version: %q", got)
	}

	// A resumed upload's retention is moved later at completion: allowed
	// under governance without a bypass; moving it back is not.
	later := time.Now().Add(48 * time.Hour)
	if err := b.ExtendRetention(ctxFor(t), mp, oi.VersionID, backends.LockGovernance, later); err != nil {
		t.Errorf("extend the retention of a locked version: %v", err)
	}
	if err := b.ExtendRetention(ctxFor(t), mp, oi.VersionID, backends.LockGovernance, later.Add(-24*time.Hour)); err == nil {
		t.Errorf("moving a retention date earlier succeeded")
	}
}

// Recorder is an http.RoundTripper that records the requests it passes to
// http.DefaultTransport.
type Recorder struct {
	mu   sync.Mutex
	reqs []*http.Request
}

// RoundTrip records a clone of req (headers and URL; the body is not kept)
// and sends req.
func (r *Recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.reqs = append(r.reqs, req.Clone(req.Context()))
	r.mu.Unlock()
	return http.DefaultTransport.RoundTrip(req)
}

// Writes returns the PUT requests recorded for key.
func (r *Recorder) Writes(key string) []*http.Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*http.Request
	for _, req := range r.reqs {
		if req.Method == http.MethodPut && strings.HasSuffix(req.URL.Path, "/"+key) {
			out = append(out, req)
		}
	}
	return out
}

// testLockedMD5: stores that enforce object lock refuse a locked write, or
// a part of a locked upload, without an integrity header; voyageur sends
// Content-MD5 (the MD5 of the bytes sent, from the reader's position), and
// sends none on other writes, whose hashing would only cost CPU.
func testLockedMD5(t *testing.T, b backends.Bucket, rec *Recorder) {
	data := randomBytes(t, 1000)
	sum := md5.Sum(data)
	want := base64.StdEncoding.EncodeToString(sum[:])
	midStream := func() *bytes.Reader {
		r := bytes.NewReader(append([]byte("skip"), data...))
		r.Seek(4, io.SeekStart)
		return r
	}
	check := func(key string, locked bool) {
		t.Helper()
		reqs := rec.Writes(key)
		if len(reqs) == 0 {
			t.Fatalf("%s: no PUT recorded", key)
		}
		for _, req := range reqs {
			got := req.Header.Get("Content-MD5")
			if locked && got != want {
				t.Errorf("%s %s: Content-MD5 %q, want %q", key, req.URL.RawQuery, got, want)
			}
			if !locked && got != "" {
				t.Errorf("%s %s: unlocked write sent Content-MD5 %q", key, req.URL.RawQuery, got)
			}
		}
		if got, _ := get(t, b, key, backends.GetOptions{}); !bytes.Equal(got, data) {
			t.Errorf("%s: read back %d bytes that differ from the %d written", key, len(got), len(data))
		}
	}
	for _, locked := range []bool{true, false} {
		opts, name := backends.PutOptions{}, "plain"
		if locked {
			opts, name = lockFor(), "locked"
		}
		key := "md5/" + name
		if _, err := b.Put(ctxFor(t), key, midStream(), int64(len(data)), opts); err != nil {
			t.Fatalf("put %s: %v", key, err)
		}
		check(key, locked)

		key = "md5/" + name + "-multipart"
		id := createMultipart(t, b, key, opts)
		etag, err := b.UploadPart(ctxFor(t), key, id, 1, midStream(), int64(len(data)), backends.PartOptions{Locked: locked})
		if err != nil {
			t.Fatalf("upload part of %s: %v", key, err)
		}
		if _, err := b.CompleteMultipart(ctxFor(t), key, id, []backends.Part{{Number: 1, ETag: etag, Size: int64(len(data))}}); err != nil {
			t.Fatalf("complete %s: %v", key, err)
		}
		check(key, locked)
	}
}
