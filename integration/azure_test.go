package integration

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/voyageur-ca/voyageur/integration/azuriteserver"
)

// TestMinioToAzurePlain: the real binary replicates MinIO objects (one in
// one request, one in parts) into an Azurite container; the bytes, content
// type and metadata are checked with the azblob SDK directly, not with
// voyageur's backend; then verify, from the Azure destination, finds
// nothing wrong.
func TestMinioToAzurePlain(t *testing.T) {
	src := startServer(t)
	az := azuriteserver.Start(t)
	bucket := src.CreateBucket(t, false)
	cont := az.CreateContainer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	objs := map[string][]byte{"small/a.csv": randomData(1000, 1), "big/b.bin": randomData(11<<20, 2)}
	for key, data := range objs {
		if _, err := src.Client(t).PutObject(ctx, bucket, key, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{
			ContentType: "text/csv", UserMetadata: map[string]string{"Ledger-Date": "date-" + key, "owner": "ledgers"},
		}); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "voyageur.yaml")
	yaml := fmt.Sprintf(`journal: %s
endpoints:
  source: {type: minio, url: %q, access_key: %q, secret_key: %q}
  canada: {type: azure, account: %s, key: %q, url: %q, region: canadacentral}
jobs:
  - name: ledgers
    source: source:%s/
    destination: canada:%s/replica/
    transfer: {part_size: 5MiB, concurrency: 4}
`, filepath.Join(dir, "journal.db"), src.URL, src.AccessKey, src.SecretKey, azuriteserver.Account, azuriteserver.Key, az.URL, bucket, cont)
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	s := syncJSON(t, 0, "-c", cfg)
	if s.Copied != int64(len(objs)) {
		t.Fatalf("sync copied %d objects, want %d", s.Copied, len(objs))
	}
	client := az.Client(t)
	for key, data := range objs {
		dl, err := client.DownloadStream(ctx, cont, "replica/"+key, nil)
		if err != nil {
			t.Fatalf("download %s with the azblob sdk: %v", key, err)
		}
		got, err := io.ReadAll(dl.Body)
		dl.Body.Close()
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s: %d bytes read back (%v), want the %d written", key, len(got), err, len(data))
		}
		// Azure compares metadata names case-insensitively; the SDK
		// returns them as Go canonicalizes HTTP headers.
		meta := map[string]string{}
		for k, v := range dl.Metadata {
			meta[strings.ToLower(k)] = *v
		}
		if ct := *dl.ContentType; ct != "text/csv" || meta["vx_ledger_2ddate"] != "date-"+key || meta["vx_voyageur_2dfp"] == "" || meta["owner"] != "ledgers" {
			t.Errorf("%s: content type %q metadata %v, want text/csv, ledger-date (as vx_ledger_2ddate), owner, and voyageur-fp (as vx_voyageur_2dfp)", key, ct, meta)
		}
	}
	if res := runVoyageur(t, "verify", "-c", cfg, "--job", "ledgers"); res.code != 0 {
		t.Fatalf("verify from azure: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	} else {
		t.Logf("verify: %s", res.stdout)
	}
}
