package integration

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestNoCloudMetadata: the harness disables the AWS metadata lookup for
// the processes it starts, so an aws endpoint without credentials fails
// at once naming AWS_EC2_METADATA_DISABLED instead of asking
// 169.254.169.254 (run with `env -u AWS_EC2_METADATA_DISABLED` to see the
// harness do it).
func TestNoCloudMetadata(t *testing.T) {
	dir := t.TempDir()
	// No credentials from the host either.
	for _, v := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"} {
		t.Setenv(v, "")
		os.Unsetenv(v)
	}
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "none"))
	if err := os.MkdirAll(filepath.Join(dir, "dst"), 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(cfg, []byte(`journal: `+filepath.Join(dir, "j.db")+`
endpoints:
  src: {type: aws, url: "http://`+silentAddr(t)+`", region: us-east-1, path_style: true}
  a: {type: fs, path: `+dir+`}
jobs:
  - {name: ledgers, source: "src:ledgers", destination: "a:dst"}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	res := runVoyageur(t, "sync", "-c", cfg)
	if res.code == 0 || !strings.Contains(res.stdout+res.stderr, "AWS_EC2_METADATA_DISABLED") {
		t.Errorf("sync without credentials: exit %d, want a failure naming AWS_EC2_METADATA_DISABLED\nstdout: %s\nstderr: %s", res.code, res.stdout, res.stderr)
	}
}

// TestSDKLogsFollowLogFormat: the AWS SDK's own log lines (its notice of
// falling back to IMDSv1, from a fake metadata service on loopback) go
// through voyageur's logger: JSON with --log-format json, hidden with -q.
func TestSDKLogsFollowLogFormat(t *testing.T) {
	imds := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) {
		http.Error(rw, "forbidden", http.StatusForbidden)
	}))
	defer imds.Close()
	dir := t.TempDir()
	for _, v := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"} {
		t.Setenv(v, "")
		os.Unsetenv(v)
	}
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "none"))
	// The metadata lookup, on for this test only, goes to the fake.
	t.Setenv("AWS_EC2_METADATA_DISABLED", "false")
	t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.URL)
	if err := os.MkdirAll(filepath.Join(dir, "dst"), 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(cfg, []byte(`journal: `+filepath.Join(dir, "j.db")+`
endpoints:
  src: {type: aws, url: "http://`+silentAddr(t)+`", region: us-east-1, path_style: true}
  a: {type: fs, path: `+dir+`}
jobs:
  - {name: ledgers, source: "src:ledgers", destination: "a:dst"}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	res := runVoyageur(t, "--log-format", "json", "sync", "-c", cfg)
	if !strings.Contains(res.stderr, "IMDSv1") {
		t.Fatalf("no IMDSv1 notice from the SDK (exit %d):\n%s", res.code, res.stderr)
	}
	for line := range strings.Lines(res.stderr) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("--log-format json: a stderr line is not JSON: %q", line)
		}
	}
	res = runVoyageur(t, "-q", "sync", "-c", cfg)
	if strings.Contains(res.stderr, "IMDSv1") {
		t.Errorf("-q: the SDK's notice still shows:\n%s", res.stderr)
	}
}
