package azure_test

import (
	"encoding/base64"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/voyageur-ca/voyageur/backends"
	"github.com/voyageur-ca/voyageur/backends/azure"
	"github.com/voyageur-ca/voyageur/backends/backendtest"
	"github.com/voyageur-ca/voyageur/integration/azuriteserver"
)

func newBucket(t *testing.T, srv *azuriteserver.Server) *azure.Bucket {
	t.Helper()
	b, err := azure.New(azure.Config{Account: azuriteserver.Account, Key: azuriteserver.Key, URL: srv.URL, Container: srv.CreateContainer(t)})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestConformance(t *testing.T) {
	srv := azuriteserver.Start(t)
	backendtest.Run(t, func(t *testing.T) backends.Bucket { return newBucket(t, srv) },
		backendtest.Caps{BlockIDPartETags: true, AnyPartSize: true})
}

// TestResumeFromStagedBlocks: a second process (a new Bucket) finds the
// blocks the first one staged and completes the upload with them.
func TestResumeFromStagedBlocks(t *testing.T) {
	srv := azuriteserver.Start(t)
	ctx := t.Context()
	first := newBucket(t, srv)
	const key = "resume/obj"
	id, err := first.CreateMultipart(ctx, key, backends.PutOptions{ContentType: "text/csv", Metadata: map[string]string{"voyageur-fp": "abc"}})
	if err != nil {
		t.Fatal(err)
	}
	p1 := strings.Repeat("1", 100)
	e1, err := first.UploadPart(ctx, key, id, 1, strings.NewReader(p1), int64(len(p1)), backends.PartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	second, err := azure.New(azure.Config{Account: azuriteserver.Account, Key: azuriteserver.Key, URL: srv.URL, Container: strings.TrimPrefix(first.Name(), "azure://"+azuriteserver.Account+"/")})
	if err != nil {
		t.Fatal(err)
	}
	parts, err := second.ListParts(ctx, key, id)
	if err != nil || len(parts) != 1 || parts[0] != (backends.Part{Number: 1, ETag: e1, Size: 100}) {
		t.Fatalf("list parts in a new process: %+v, %v; want part 1", parts, err)
	}
	e2, err := second.UploadPart(ctx, key, id, 2, strings.NewReader("22"), 2, backends.PartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := second.CompleteMultipart(ctx, key, id, []backends.Part{parts[0], {Number: 2, ETag: e2, Size: 2}}); err != nil {
		t.Fatal(err)
	}
	got, oi, err := second.Get(ctx, key, backends.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	data, _ := io.ReadAll(got)
	if string(data) != p1+"22" || oi.ContentType != "text/csv" || oi.Metadata["voyageur-fp"] != "abc" || !strings.HasSuffix(oi.ETag, "-2") {
		t.Errorf("completed object: %q %+v", data, oi)
	}
	// The ETag pins ranged reads as on S3.
	if rc, _, err := second.Get(ctx, key, backends.GetOptions{Offset: 99, Length: 2, IfMatch: oi.ETag}); err != nil {
		t.Errorf("ranged get pinned to the multipart etag: %v", err)
	} else {
		rc.Close()
	}
}

// TestErrors: a missing container and a refused key each give one clear,
// classified error that quotes no secret.
func TestErrors(t *testing.T) {
	srv := azuriteserver.Start(t)
	ctx := t.Context()
	missing, err := azure.New(azure.Config{Account: azuriteserver.Account, Key: azuriteserver.Key, URL: srv.URL, Container: "no-such-container"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = missing.Stat(ctx, "k", "")
	for _, err2 := range missing.List(ctx, backends.ListOptions{}) {
		err = errors.Join(err, err2)
	}
	if !errors.Is(err, backends.ErrNoSuchBucket) {
		t.Errorf("missing container: %v, want ErrNoSuchBucket", err)
	}
	wrongKey := base64.StdEncoding.EncodeToString([]byte("not the account key, but base64 all the same"))
	refused, err := azure.New(azure.Config{Account: azuriteserver.Account, Key: wrongKey, URL: srv.URL, Container: srv.CreateContainer(t)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = refused.Stat(ctx, "k", "")
	var he *backends.HTTPError
	if !errors.As(err, &he) || he.Status != 403 || backends.IsRetryable(err) {
		t.Errorf("wrong key: %v, want a non-retryable 403", err)
	}
	t.Logf("wrong key: %v", err)
	if strings.Contains(err.Error(), wrongKey) || strings.Contains(err.Error(), "\n") {
		t.Errorf("error %q quotes the key or spans lines", err)
	}
	if _, err := azure.New(azure.Config{Account: "a", Key: "%%not base64 secret%%", Container: "c"}); err == nil || strings.Contains(err.Error(), "secret") {
		t.Errorf("bad key: %v, want an error that does not quote it", err)
	}
	sas := "sv=2024-01-01&sig=SECRETSIG"
	bySAS, err := azure.New(azure.Config{Account: azuriteserver.Account, SAS: sas, URL: "http://127.0.0.1:1/" + azuriteserver.Account, Container: "c"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = bySAS.Stat(ctx, "k", "")
	t.Logf("unreachable: %v", err)
	if err == nil || !backends.IsRetryable(err) || strings.Contains(err.Error(), "SECRETSIG") {
		t.Errorf("unreachable account: %v, want a retryable error without the sas", err)
	}
}
