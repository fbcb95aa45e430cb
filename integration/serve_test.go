package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/voyageur-ca/voyageur/integration/minioserver"
	"github.com/voyageur-ca/voyageur/integration/testproc"
)

const (
	serveAccess = "serve-access-key"
	serveSecret = "serve-secret-Zq8vLw2xT9"
)

// serveObject is one source object of the serve test.
type serveObject struct {
	data        []byte
	contentType string
	meta        map[string]string
	multipart   bool // uploaded in 5 MiB parts: its ETag is "…-N"
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func shaFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha(b)
}

// awsServe runs the aws CLI against voyageur serve with the given key pair.
func awsServe(t *testing.T, srv *minioserver.Server, url, access, secret string, args ...string) (string, string, error) {
	t.Helper()
	aws := "/usr/bin/aws"
	if _, err := os.Stat(aws); err != nil {
		aws = testproc.NeedTool(t, "aws")
	}
	config := filepath.Join(t.TempDir(), "aws-config")
	if err := os.WriteFile(config, []byte("[default]\ns3 =\n    addressing_style = path\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, aws, append([]string{"--endpoint-url", url}, args...)...)
	cmd.Env = append(srv.AWSEnv(config), "AWS_ACCESS_KEY_ID="+access, "AWS_SECRET_ACCESS_KEY="+secret, "AWS_MAX_ATTEMPTS=2")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// TestServe replicates an encrypted job with the real binary, serves it
// with `voyageur serve` and reads it back with Debian's aws CLI: listings,
// whole, ranged and presigned GETs checked by SHA-256 against the source,
// metadata, refused writes, bad credentials, health, and a tampered
// replica.
func TestServe(t *testing.T) {
	srv := startServer(t)
	addSecret(serveSecret)
	ctx := context.Background()
	dir := t.TempDir()
	k := newKeys(t, dir, false)
	mc := srv.Client(t)
	src := side{srv: srv, bucket: srv.CreateBucket(t, false), kind: "aws"}
	// The destination bucket is created after serve starts: until then its
	// catalog cannot load and /healthz must say 503.
	dst := side{srv: srv, bucket: "serve-dst-" + strings.ToLower(hex.EncodeToString([]byte(t.Name()))[:8]), kind: "minio"}

	objects := map[string]serveObject{
		"a b/space key.csv":      {data: randomData(1000, 1), contentType: "text/csv", meta: map[string]string{"owner": "finance", "desk": "fx"}},
		"unicodé/relevé €.txt":   {data: randomData(77, 2), contentType: "text/plain; charset=utf-8"},
		"odd/plus+eq=amp&q?.bin": {data: randomData(300, 3)},
		"empty":                  {data: nil, contentType: "application/octet-stream"},
		"one":                    {data: []byte{42}},
		"part-1":                 {data: randomData(5<<20-1, 4)},
		"part+1":                 {data: randomData(5<<20+1, 5)},
		"big/17MiB.bin":          {data: randomData(17<<20, 6), contentType: "application/x-parquet", meta: map[string]string{"rows": "12345"}, multipart: true},
	}
	for i := range 7 {
		objects[fmt.Sprintf("dir/f%d", i)] = serveObject{data: randomData(10+i, byte(10+i))}
	}
	for key, o := range objects {
		opts := minio.PutObjectOptions{ContentType: o.contentType, UserMetadata: o.meta}
		if o.multipart {
			opts.PartSize = 5 << 20
		} else {
			opts.DisableMultipart = true
		}
		if _, err := mc.PutObject(ctx, src.bucket, "ledgers/"+key, bytes.NewReader(o.data), int64(len(o.data)), opts); err != nil {
			t.Fatalf("put %s: %v", key, err)
		}
	}

	cfg := writeConfig(t, dir, jobConfig{Src: src, Dst: dst, SrcPrefix: "ledgers/", DstPrefix: "replica/", ExtraJobLines: k.encryptionYAML("hashed", "zstd")})
	port, err := testproc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	listen := fmt.Sprintf("127.0.0.1:%d", port)
	url := "http://" + listen
	f, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "serve:\n  listen: %s\n  access_key: %s\n  secret_key: \"${VOYAGEUR_TEST_SERVE_SECRET}\"\n  refresh: 2s\n  cache: %s\n", listen, serveAccess, filepath.Join(dir, "serve-cache.db"))
	f.Close()

	// A job name that is not a bucket name is refused at start.
	raw, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	badCfg := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(badCfg, bytes.Replace(raw, []byte("- name: ledgers"), []byte("- name: Ledgers_2026"), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("VOYAGEUR_TEST_SERVE_SECRET", serveSecret)
	if res := runVoyageur(t, "serve", "-c", badCfg, "--identity", k.identity); res.code != 2 || !strings.Contains(res.stderr, `"Ledgers_2026" is not a valid S3 bucket name`) {
		t.Fatalf("serve of a job named Ledgers_2026: exit %d, %s", res.code, res.stderr)
	}

	logPath := filepath.Join(dir, "serve.log")
	cmd := exec.Command(voyageurBin, "serve", "-c", cfg, "--identity", k.identity)
	cmd.Env = append(os.Environ(), "VOYAGEUR_TEST_SERVE_SECRET="+serveSecret)
	proc, err := testproc.Start(cmd, logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		proc.Stop(30 * time.Second)
		log, _ := os.ReadFile(logPath)
		checkOutput(t, "serve", string(log))
	}()
	health := func() int {
		resp, err := http.Get(url + "/healthz")
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	deadline := time.Now().Add(2 * time.Minute)
	for health() != http.StatusServiceUnavailable {
		if proc.Exited() || time.Now().After(deadline) {
			t.Fatalf("serve never answered 503 while its destination was missing:\n%s", testproc.Tail(logPath, 4000))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := mc.MakeBucket(ctx, dst.bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	syncJSON(t, 0, "-c", cfg)
	if err := proc.WaitHealthy(url+"/healthz", 2*time.Minute); err != nil {
		t.Fatalf("serve: %v\n%s", err, testproc.Tail(logPath, 4000))
	}
	aws := func(args ...string) string {
		t.Helper()
		out, stderr, err := awsServe(t, srv, url, serveAccess, serveSecret, args...)
		if err != nil {
			t.Fatalf("aws %v: %v\n%s\nserve log:\n%s", args, err, stderr, testproc.Tail(logPath, 4000))
		}
		return out
	}
	// The catalog may have loaded before sync wrote everything: the
	// refresh (2s) must bring the rest.
	for {
		out := aws("s3", "ls", "--recursive", "s3://ledgers/")
		if strings.Count(out, "\n") == len(objects) {
			for key, o := range objects {
				if !regexp.MustCompile(`(?m)^\S+ \S+ +` + fmt.Sprint(len(o.data)) + ` ` + regexp.QuoteMeta(key) + `$`).MatchString(out) {
					t.Errorf("s3 ls --recursive does not list %q with size %d:\n%s", key, len(o.data), out)
				}
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("s3 ls --recursive lists %d lines, want %d:\n%s", strings.Count(out, "\n"), len(objects), out)
		}
		time.Sleep(500 * time.Millisecond)
	}

	// minio-go, another SDK: listing, whole and ranged reads, metadata.
	sc, err := minio.New(listen, &minio.Options{Creds: credentials.NewStaticV4(serveAccess, serveSecret, ""), Region: "us-east-1", BucketLookup: minio.BucketLookupPath})
	if err != nil {
		t.Fatal(err)
	}
	listed := 0
	for o := range sc.ListObjects(ctx, "ledgers", minio.ListObjectsOptions{Recursive: true}) {
		if o.Err != nil {
			t.Fatalf("minio-go list: %v", o.Err)
		}
		if int64(len(objects[o.Key].data)) != o.Size {
			t.Errorf("minio-go lists %q with size %d", o.Key, o.Size)
		}
		listed++
	}
	if listed != len(objects) {
		t.Errorf("minio-go lists %d objects, want %d", listed, len(objects))
	}
	for key, o := range objects {
		obj, err := sc.GetObject(ctx, "ledgers", key, minio.GetObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(obj)
		obj.Close()
		if err != nil || sha(b) != sha(o.data) {
			t.Errorf("minio-go get %s: %d bytes, %v", key, len(b), err)
		}
	}
	ropts := minio.GetObjectOptions{}
	if err := ropts.SetRange(17<<20-(1<<20), 17<<20-1); err != nil {
		t.Fatal(err)
	}
	if obj, err := sc.GetObject(ctx, "ledgers", "big/17MiB.bin", ropts); err != nil {
		t.Fatal(err)
	} else if b, err := io.ReadAll(obj); err != nil || sha(b) != sha(objects["big/17MiB.bin"].data[17<<20-(1<<20):]) {
		t.Errorf("minio-go ranged get of the last MiB: %d bytes, %v", len(b), err)
	}
	if st, err := sc.StatObject(ctx, "ledgers", "a b/space key.csv", minio.StatObjectOptions{}); err != nil || st.ContentType != "text/csv" || st.UserMetadata["Owner"] != "finance" {
		t.Errorf("minio-go stat: %+v %v", st, err)
	}

	// Bytes: s3 cp of each object, and s3 sync of the whole bucket.
	down := t.TempDir()
	for key, o := range objects {
		local := filepath.Join(down, sha([]byte(key)))
		aws("s3", "cp", "s3://ledgers/"+key, local)
		if got := shaFile(t, local); got != sha(o.data) {
			t.Errorf("s3 cp %s: SHA-256 %s, want %s", key, got, sha(o.data))
		}
	}
	synced := t.TempDir()
	aws("s3", "sync", "s3://ledgers/", synced)
	for key, o := range objects {
		if got := shaFile(t, filepath.Join(synced, filepath.FromSlash(key))); got != sha(o.data) {
			t.Errorf("s3 sync %s: SHA-256 differs", key)
		}
	}

	// Ranged GET, with its headers and metadata.
	big := objects["big/17MiB.bin"].data
	for _, r := range [][2]int{{0, 0}, {5<<20 - 3, 6<<20 + 7}, {len(big) - 100, len(big) - 1}} {
		out := filepath.Join(down, "range")
		res := aws("s3api", "get-object", "--bucket", "ledgers", "--key", "big/17MiB.bin", "--range", fmt.Sprintf("bytes=%d-%d", r[0], r[1]), out)
		var head struct {
			ContentRange, ContentType, ETag string
			ContentLength                   int64
			Metadata                        map[string]string
		}
		if err := json.Unmarshal([]byte(res), &head); err != nil {
			t.Fatalf("get-object output %q: %v", res, err)
		}
		if got := shaFile(t, out); got != sha(big[r[0]:r[1]+1]) {
			t.Errorf("range %v: SHA-256 differs", r)
		}
		if want := fmt.Sprintf("bytes %d-%d/%d", r[0], r[1], len(big)); head.ContentRange != want || head.ContentLength != int64(r[1]-r[0]+1) {
			t.Errorf("range %v: Content-Range %q length %d, want %q", r, head.ContentRange, head.ContentLength, want)
		}
		if head.ContentType != "application/x-parquet" || head.Metadata["rows"] != "12345" || !strings.HasSuffix(head.ETag, `-4"`) {
			t.Errorf("range %v: content type %q, metadata %v, ETag %s (want the source's multipart ETag)", r, head.ContentType, head.Metadata, head.ETag)
		}
	}
	// Conditions on the multipart ETag, which gofakes3 cannot express
	// itself (the front handler maps it).
	bigETag := statObject(t, src, "ledgers/big/17MiB.bin").etag
	if !strings.Contains(bigETag, "-") {
		t.Fatalf("the 17 MiB source has ETag %s, not a multipart one", bigETag)
	}
	aws("s3api", "get-object", "--bucket", "ledgers", "--key", "big/17MiB.bin", "--if-match", `"`+strings.Trim(bigETag, `"`)+`"`, "--range", "bytes=0-9", filepath.Join(down, "if-match"))
	if _, stderr, err := awsServe(t, srv, url, serveAccess, serveSecret, "s3api", "get-object", "--bucket", "ledgers", "--key", "big/17MiB.bin", "--if-none-match", `"`+strings.Trim(bigETag, `"`)+`"`, filepath.Join(down, "if-none-match")); err == nil || !strings.Contains(stderr, "304") {
		t.Errorf("If-None-Match the multipart ETag: %v %s, want 304", err, stderr)
	}
	srcHead := statObject(t, src, "ledgers/a b/space key.csv")
	var head struct {
		ContentType, ETag string
		Metadata          map[string]string
	}
	if err := json.Unmarshal([]byte(aws("s3api", "head-object", "--bucket", "ledgers", "--key", "a b/space key.csv")), &head); err != nil {
		t.Fatal(err)
	}
	if head.ContentType != "text/csv" || head.Metadata["owner"] != "finance" || head.Metadata["desk"] != "fx" || len(head.Metadata) != 2 || strings.Trim(head.ETag, `"`) != strings.Trim(srcHead.etag, `"`) {
		t.Errorf("head-object: %+v, source ETag %s", head, srcHead.etag)
	}

	// Listings: delimiter, prefix, max-keys and continuation tokens.
	type listing struct {
		Contents              []struct{ Key string }
		CommonPrefixes        []struct{ Prefix string }
		NextContinuationToken string
		IsTruncated           bool
	}
	var root listing
	if err := json.Unmarshal([]byte(aws("s3api", "list-objects-v2", "--bucket", "ledgers", "--delimiter", "/", "--no-paginate")), &root); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range root.CommonPrefixes {
		names = append(names, p.Prefix)
	}
	for _, c := range root.Contents {
		names = append(names, c.Key)
	}
	if got := strings.Join(names, ","); got != "a b/,big/,dir/,odd/,unicodé/,empty,one,part+1,part-1" {
		t.Errorf("root listing with delimiter: %s", got)
	}
	var keys []string
	token := ""
	pages := 0
	for {
		args := []string{"s3api", "list-objects-v2", "--bucket", "ledgers", "--prefix", "dir/", "--max-keys", "3", "--no-paginate"}
		if token != "" {
			args = append(args, "--continuation-token", token)
		}
		var page listing
		if err := json.Unmarshal([]byte(aws(args...)), &page); err != nil {
			t.Fatal(err)
		}
		pages++
		for _, c := range page.Contents {
			keys = append(keys, c.Key)
		}
		if !page.IsTruncated {
			break
		}
		token = page.NextContinuationToken
	}
	if pages != 3 || strings.Join(keys, ",") != "dir/f0,dir/f1,dir/f2,dir/f3,dir/f4,dir/f5,dir/f6" {
		t.Errorf("dir/ in pages of 3: %d pages, %v", pages, keys)
	}

	// A presigned URL, read with plain HTTP.
	presigned := strings.TrimSpace(aws("s3", "presign", "s3://ledgers/a b/space key.csv", "--expires-in", "600"))
	resp, err := http.Get(presigned)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || sha(body) != sha(objects["a b/space key.csv"].data) {
		t.Errorf("presigned GET: %d, %d bytes", resp.StatusCode, len(body))
	}
	forged := strings.Replace(presigned, "X-Amz-Signature=", "X-Amz-Signature=0", 1)
	if resp, err := http.Get(forged); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("presigned GET with a forged signature: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	// Errors: credentials, unknown key, writes.
	if _, stderr, err := awsServe(t, srv, url, serveAccess, "wrong-secret", "s3", "ls", "s3://ledgers/"); err == nil || !strings.Contains(stderr, "SignatureDoesNotMatch") {
		t.Errorf("wrong secret: %v %s", err, stderr)
	}
	if _, stderr, err := awsServe(t, srv, url, "unknown-access", serveSecret, "s3", "ls", "s3://ledgers/"); err == nil || !strings.Contains(stderr, "InvalidAccessKeyId") {
		t.Errorf("unknown access key: %v %s", err, stderr)
	}
	if _, stderr, err := awsServe(t, srv, url, serveAccess, serveSecret, "s3api", "get-object", "--bucket", "ledgers", "--key", "no/such key", filepath.Join(down, "x")); err == nil || !strings.Contains(stderr, "NoSuchKey") {
		t.Errorf("unknown key: %v %s", err, stderr)
	}
	before := listObjects(t, dst, "")
	upload := filepath.Join(down, "upload")
	writeFile(t, upload, 100, 9)
	for _, args := range [][]string{
		{"s3", "cp", upload, "s3://ledgers/new"},
		{"s3", "cp", upload, "s3://ledgers/one"},
		{"s3", "rm", "s3://ledgers/one"},
		{"s3api", "create-multipart-upload", "--bucket", "ledgers", "--key", "mp"},
	} {
		if _, stderr, err := awsServe(t, srv, url, serveAccess, serveSecret, args...); err == nil || !strings.Contains(stderr, "AccessDenied") {
			t.Errorf("aws %v: %v %s", args, err, stderr)
		}
	}
	after := listObjects(t, dst, "")
	if fmt.Sprint(before) != fmt.Sprint(after) || len(incompleteUploads(t, dst)) != 0 {
		t.Errorf("refused writes changed the destination:\n%v\n%v", before, after)
	}

	t.Run("rclone", func(t *testing.T) { rcloneServe(t, srv, url, src.bucket, objects) })

	// An object that sync adds while serve runs appears at the next
	// refresh (serve.refresh: 2s).
	added := randomData(4321, 33)
	if _, err := mc.PutObject(ctx, src.bucket, "ledgers/added later.csv", bytes.NewReader(added), int64(len(added)), minio.PutObjectOptions{ContentType: "text/csv", DisableMultipart: true}); err != nil {
		t.Fatal(err)
	}
	syncJSON(t, 0, "-c", cfg)
	for deadline := time.Now().Add(2 * time.Minute); ; {
		st, err := sc.StatObject(ctx, "ledgers", "added later.csv", minio.StatObjectOptions{})
		if err == nil {
			if st.Size != int64(len(added)) || st.ContentType != "text/csv" {
				t.Errorf("the added object: %+v", st)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("an object synced after serve started is still not served: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	objects["added later.csv"] = serveObject{data: added}

	// Tampering: one byte of the large replica flipped at the destination.
	// Its GET fails; the others still serve; the failure is counted.
	var bigReplica string
	for name, o := range before {
		if o.size > 17<<20 {
			bigReplica = name
		}
	}
	obj, err := mc.GetObject(ctx, dst.bucket, bigReplica, minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	replica, err := io.ReadAll(obj)
	obj.Close()
	if err != nil {
		t.Fatal(err)
	}
	replica[len(replica)/2] ^= 0x40
	if _, err := mc.PutObject(ctx, dst.bucket, bigReplica, bytes.NewReader(replica), int64(len(replica)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	tampered := filepath.Join(down, "tampered")
	if _, stderr, err := awsServe(t, srv, url, serveAccess, serveSecret, "s3", "cp", "s3://ledgers/big/17MiB.bin", tampered); err == nil {
		t.Errorf("s3 cp of a tampered replica succeeded (%s)", stderr)
	}
	if b, err := os.ReadFile(tampered); err == nil && sha(b) == sha(big) {
		t.Error("the tampered replica was served whole")
	}
	aws("s3", "cp", "s3://ledgers/one", filepath.Join(down, "one-again"))
	if shaFile(t, filepath.Join(down, "one-again")) != sha(objects["one"].data) {
		t.Error("another object no longer serves after the tampering")
	}
	resp, err = http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, re := range []string{
		`voyageur_serve_replica_failures_total\{voyageur_job="ledgers"\} [1-9]`,
		`voyageur_serve_requests_total\{operation="GetObject",status="200"\} [1-9]`,
		`voyageur_serve_requests_total\{operation="Write",status="403"\} [1-9]`,
		`voyageur_serve_catalog_objects\{voyageur_job="ledgers"\} ` + fmt.Sprint(len(objects)),
		`voyageur_serve_replica_bytes_fetched_total [1-9]`,
	} {
		if !regexp.MustCompile(re).Match(metrics) {
			t.Errorf("metrics lack %s", re)
		}
	}
	log, _ := os.ReadFile(logPath)
	if !strings.Contains(string(log), "key=big/17MiB.bin") {
		t.Errorf("the tampered replica is not logged with its key:\n%s", testproc.Tail(logPath, 4000))
	}
}

// startServe starts `voyageur serve` with args, waits for /healthz (with
// the CA for https) and stops it, checking its log for secrets, at the end
// of the test.
func startServe(t *testing.T, dir, url, caFile string, args ...string) string {
	t.Helper()
	logPath := filepath.Join(dir, fmt.Sprintf("serve-%d.log", time.Now().UnixNano()))
	cmd := exec.Command(voyageurBin, append([]string{"serve"}, args...)...)
	cmd.Env = append(os.Environ(), "VOYAGEUR_TEST_SERVE_SECRET="+serveSecret)
	proc, err := testproc.Start(cmd, logPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		proc.Stop(30 * time.Second)
		log, _ := os.ReadFile(logPath)
		checkOutput(t, "serve", string(log))
	})
	if err := proc.WaitHealthy(url+"/healthz", 3*time.Minute); err != nil {
		t.Fatalf("serve %v: %v\n%s", args, err, testproc.Tail(logPath, 4000))
	}
	return logPath
}

// TestServeJobs serves, over https, two of three jobs of one source with
// other replica formats: plain (encryption none) and post-quantum without
// compression with plain names on a versioned destination; reads both with
// the aws CLI against the source's SHA-256, and a past state with --as-of.
func TestServeJobs(t *testing.T) {
	srv := startServer(t)
	addSecret(serveSecret)
	ctx := context.Background()
	dir := t.TempDir()
	pq := newKeys(t, t.TempDir(), true)
	mc := srv.Client(t)
	src := srv.CreateBucket(t, false)
	plainDst, pqDst := srv.CreateBucket(t, false), srv.CreateBucket(t, true)

	objects := map[string]serveObject{
		"a b/space & key.csv": {data: randomData(1000, 21), contentType: "text/csv", meta: map[string]string{"owner": "finance"}},
		"empty":               {},
		"one":                 {data: []byte{7}},
		"part+1":              {data: randomData(5<<20+1, 22), contentType: "application/octet-stream"},
		"changed.txt":         {data: []byte("version 1\n"), contentType: "text/plain"},
	}
	put := func(key string, o serveObject) {
		t.Helper()
		if _, err := mc.PutObject(ctx, src, "in/"+key, bytes.NewReader(o.data), int64(len(o.data)), minio.PutObjectOptions{ContentType: o.contentType, UserMetadata: o.meta, DisableMultipart: true}); err != nil {
			t.Fatal(err)
		}
	}
	for key, o := range objects {
		put(key, o)
	}
	ca := newTestCA(t, "serve test CA")
	cert := ca.serverCert(t)
	certFile, keyFile, caFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), filepath.Join(dir, "ca.pem")
	for path, b := range map[string][]byte{certFile: cert.CertPEM, keyFile: cert.KeyPEM, caFile: cert.CAPEM} {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	port, err := testproc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	ep := side{srv: srv, kind: "aws"}.endpointYAML()
	cfg := filepath.Join(dir, "voyageur.yaml")
	yaml := fmt.Sprintf(`journal: %s
endpoints:
  minio: %s
jobs:
  - name: plain-copy
    source: minio:%s/in/
    destination: minio:%s/plain/
    encryption: none
  - name: pq-raw
    source: minio:%s/in/
    destination: minio:%s/pq/
%s  - name: unserved
    source: minio:%s/in/
    destination: minio:%s/unserved/
    encryption: none
serve:
  listen: 127.0.0.1:%d
  access_key: %s
  secret_key: "${VOYAGEUR_TEST_SERVE_SECRET}"
  tls_cert: %s
  tls_key: %s
  cache: %s
`, filepath.Join(dir, "journal.db"), ep, src, plainDst, src, pqDst, pq.encryptionYAML("plain", "none"), src, plainDst, port, serveAccess, certFile, keyFile, filepath.Join(dir, "serve-cache.db"))
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	// Every command expands the whole file, serve: included.
	t.Setenv("VOYAGEUR_TEST_SERVE_SECRET", serveSecret)
	res := runVoyageur(t, "sync", "-c", cfg)
	if res.code != 0 {
		t.Fatalf("sync: exit %d\n%s", res.code, res.stderr)
	}
	// The destination's clock decides --as-of: wait past the second the
	// first versions were stored in, change one object, replicate again.
	time.Sleep(1100 * time.Millisecond)
	asOf := time.Now().UTC().Format(time.RFC3339)
	time.Sleep(1100 * time.Millisecond)
	v2 := serveObject{data: []byte("version 2, longer\n"), contentType: "text/plain"}
	put("changed.txt", v2)
	if res := runVoyageur(t, "sync", "-c", cfg); res.code != 0 {
		t.Fatalf("second sync: exit %d\n%s", res.code, res.stderr)
	}

	url := fmt.Sprintf("https://127.0.0.1:%d", port)
	startServe(t, dir, url, caFile, "-c", cfg, "--identity", pq.identity, "--job", "plain-copy", "--job", "pq-raw")
	aws := func(args ...string) string {
		t.Helper()
		out, stderr, err := awsServe(t, srv, url, serveAccess, serveSecret, append([]string{"--ca-bundle", caFile}, args...)...)
		if err != nil {
			t.Fatalf("aws %v: %v\n%s", args, err, stderr)
		}
		return out
	}
	if got := aws("s3", "ls"); !strings.Contains(got, " plain-copy\n") || !strings.Contains(got, " pq-raw\n") || strings.Contains(got, "unserved") {
		t.Errorf("s3 ls lists buckets:\n%s", got)
	}
	objects["changed.txt"] = v2
	for _, bucket := range []string{"plain-copy", "pq-raw"} {
		down := t.TempDir()
		aws("s3", "sync", "s3://"+bucket+"/", down)
		for key, o := range objects {
			if got := shaFile(t, filepath.Join(down, filepath.FromSlash(key))); got != sha(o.data) {
				t.Errorf("%s: s3 sync of %s: SHA-256 differs", bucket, key)
			}
		}
		var head struct {
			ContentType string
			Metadata    map[string]string
		}
		if err := json.Unmarshal([]byte(aws("s3api", "head-object", "--bucket", bucket, "--key", "a b/space & key.csv")), &head); err != nil {
			t.Fatal(err)
		}
		if head.ContentType != "text/csv" || len(head.Metadata) != 1 || head.Metadata["owner"] != "finance" {
			t.Errorf("%s: head-object: %+v", bucket, head)
		}
		out := filepath.Join(down, "range")
		aws("s3api", "get-object", "--bucket", bucket, "--key", "part+1", "--range", "bytes=5242879-", out)
		if got := shaFile(t, out); got != sha(objects["part+1"].data[5242879:]) {
			t.Errorf("%s: range of part+1 differs", bucket)
		}
	}
	// Plain https is all it speaks: an http client gets nowhere.
	if resp, err := http.Get(strings.Replace(url, "https:", "http:", 1) + "/healthz"); err == nil && resp.StatusCode == http.StatusOK {
		t.Error("serve with tls_cert answered plain http")
	}

	// The state before the change, from the versioned destination.
	port2, err := testproc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	url2 := fmt.Sprintf("https://127.0.0.1:%d", port2)
	startServe(t, dir, url2, caFile, "-c", cfg, "--identity", pq.identity, "--job", "pq-raw", "--as-of", asOf, "--listen", fmt.Sprintf("127.0.0.1:%d", port2))
	old := filepath.Join(dir, "changed-as-of")
	if _, stderr, err := awsServe(t, srv, url2, serveAccess, serveSecret, "--ca-bundle", caFile, "s3", "cp", "s3://pq-raw/changed.txt", old); err != nil {
		t.Fatalf("as-of cp: %v\n%s", err, stderr)
	}
	if b, _ := os.ReadFile(old); string(b) != "version 1\n" {
		t.Errorf("--as-of %s served %q, want version 1", asOf, b)
	}
}

// rcloneServe reads the served bucket with rclone as an S3 remote: lsf,
// copy by SHA-256, and check (sizes and MD5 ETags) and check --download
// (bytes) against the source.
func rcloneServe(t *testing.T, srv *minioserver.Server, url, srcBucket string, objects map[string]serveObject) {
	bin := os.Getenv("VOYAGEUR_RCLONE_BIN")
	if bin == "" {
		bin = testproc.GopathBin("rclone")
	}
	if fi, err := os.Stat(bin); bin == "" || err != nil || !fi.Mode().IsRegular() {
		testproc.Unavailable(t, "rclone not found ($VOYAGEUR_RCLONE_BIN, GOPATH/bin/rclone); make bench installs it")
	}
	env := append(os.Environ(),
		"RCLONE_CONFIG="+filepath.Join(t.TempDir(), "none.conf"),
		"RCLONE_CONFIG_SERVE_TYPE=s3", "RCLONE_CONFIG_SERVE_PROVIDER=Other", "RCLONE_CONFIG_SERVE_ENDPOINT="+url,
		"RCLONE_CONFIG_SERVE_ACCESS_KEY_ID="+serveAccess, "RCLONE_CONFIG_SERVE_SECRET_ACCESS_KEY="+serveSecret,
		"RCLONE_CONFIG_SERVE_REGION=us-east-1", "RCLONE_CONFIG_SERVE_FORCE_PATH_STYLE=true",
		"RCLONE_CONFIG_SRC_TYPE=s3", "RCLONE_CONFIG_SRC_PROVIDER=Minio", "RCLONE_CONFIG_SRC_ENDPOINT="+srv.URL,
		"RCLONE_CONFIG_SRC_ACCESS_KEY_ID="+srv.AccessKey, "RCLONE_CONFIG_SRC_SECRET_ACCESS_KEY="+srv.SecretKey,
		"RCLONE_CONFIG_SRC_REGION=us-east-1", "NO_PROXY=127.0.0.1", "no_proxy=127.0.0.1",
	)
	rclone := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = env
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("rclone %v: %v\n%s", args, err, stderr.String())
		}
		return stdout.String()
	}
	listed := strings.Split(strings.TrimSpace(rclone("lsf", "-R", "--files-only", "serve:ledgers")), "\n")
	slices.Sort(listed)
	if want := sortedKeys(objects); fmt.Sprint(listed) != fmt.Sprint(want) {
		t.Errorf("rclone lsf -R:\n got %q\nwant %q", listed, want)
	}
	down := t.TempDir()
	rclone("copy", "serve:ledgers", down)
	for key, o := range objects {
		if got := shaFile(t, filepath.Join(down, filepath.FromSlash(key))); got != sha(o.data) {
			t.Errorf("rclone copy %s: SHA-256 differs", key)
		}
	}
	rclone("check", "serve:ledgers", "src:"+srcBucket+"/ledgers")
	rclone("check", "--download", "serve:ledgers", "src:"+srcBucket+"/ledgers")
}
