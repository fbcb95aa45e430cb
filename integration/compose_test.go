package integration

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/voyageur-ca/voyageur/integration/testproc"
)

// TestComposeFile validates docker-compose.yml with a real parser, Debian's
// docker-compose (its `config` checks the file against the Compose schema
// and needs no container engine, which does not run here), and checks the
// services voyageur's setup relies on.
func TestComposeFile(t *testing.T) {
	dc := testproc.NeedTool(t, "docker-compose")
	root := repoRoot(t)
	cmd := exec.Command(dc, "--file", filepath.Join(root, "docker-compose.yml"), "--project-directory", root, "config")
	// The file's own defaults must be enough: nothing from the caller's
	// environment or an .env file may make it pass.
	cmd.Env = filterEnvPrefixes(os.Environ(), "SOURCE_", "CANADA_", "VOYAGEUR_WEBHOOK_", "COMPOSE_")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("docker-compose config: %v\n%s", err, stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{
		"image: minio/minio:RELEASE.", // pinned MinIO, never :latest
		"image: minio/mc:RELEASE.",
		"- watch", "- --metrics", "- :9090",
		"/etc/voyageur/voyageur.yaml:ro",
		"condition: service_completed_successfully",
		"MINIO_NOTIFY_WEBHOOK_ENDPOINT_VOY: http://voyageur:8088/minio/events",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("docker-compose config output lacks %q", want)
		}
	}
	if strings.Contains(out, ":latest") {
		t.Error("an image is not pinned (:latest)")
	}
	for _, svc := range []string{"source", "canada", "setup", "keys", "voyageur"} {
		if !regexp.MustCompile(`(?m)^  ` + svc + `:$`).MatchString(out) {
			t.Errorf("service %s missing from the compose file", svc)
		}
	}
}

// TestDockerfile checks the Dockerfile's shape, as no container engine (nor
// a Dockerfile linter) runs here: a build stage named build (docker-compose's
// keys service uses it), a static binary, a distroless final stage, and a
// non-root user.
func TestDockerfile(t *testing.T) {
	f, err := os.Open(filepath.Join(repoRoot(t), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var froms, users []string
	var cgoOff bool
	var entrypoint string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		fields := strings.Fields(line)
		if len(fields) == 0 || strings.HasPrefix(line, "#") {
			continue
		}
		switch strings.ToUpper(fields[0]) {
		case "FROM":
			froms = append(froms, strings.Join(fields[1:], " "))
		case "USER":
			users = append(users, fields[1])
		case "ENTRYPOINT":
			entrypoint = line
		}
		if strings.Contains(line, "CGO_ENABLED=0") {
			cgoOff = true
		}
	}
	if len(froms) != 2 || !strings.HasSuffix(froms[0], " AS build") || !strings.HasPrefix(froms[0], "golang:1.26") {
		t.Errorf("stages %q: want a golang:1.26 stage named build, then the final stage", froms)
	}
	if len(froms) > 0 && !strings.HasPrefix(froms[len(froms)-1], "gcr.io/distroless/static") && froms[len(froms)-1] != "scratch" {
		t.Errorf("final stage %q: want distroless/static or scratch", froms[len(froms)-1])
	}
	if len(users) == 0 || strings.HasPrefix(users[len(users)-1], "0") || strings.HasPrefix(users[len(users)-1], "root") {
		t.Errorf("USER %q: the image must run as a non-root user", users)
	}
	if !cgoOff {
		t.Error("the binary must be built with CGO_ENABLED=0 (static, for distroless/static)")
	}
	if !strings.Contains(entrypoint, "/usr/local/bin/voyageur") {
		t.Errorf("ENTRYPOINT %q: want voyageur", entrypoint)
	}
}

// TestComposeConfig runs the config that docker-compose.yml mounts
// (deploy/compose/voyageur.yaml) through the real binary: a sync from a
// source MinIO to a Canada MinIO, encrypted with keys laid out like the keys
// service makes them. Only what docker would provide is mapped: the
// service hostnames to the two loopback servers, the container paths to
// temporary directories, and the compose file's environment.
func TestComposeConfig(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "compose", "voyageur.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	srcSrv, dstSrv := startServer(t), startServer(t)
	srcSrv.AWS(t, "s3", "mb", "s3://fintech-prod")
	dstSrv.AWS(t, "s3", "mb", "s3://fintech-replica")
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys")
	if err := os.MkdirAll(keys, 0o700); err != nil {
		t.Fatal(err)
	}
	// As the keys service does: keygen's recipient into recipients.txt, the
	// identity elsewhere, 32 random bytes of name secret.
	res := runVoyageur(t, "keygen", "-o", filepath.Join(dir, "identity.txt"))
	recipient := strings.TrimSpace(strings.TrimPrefix(res.stderr, "Public key: "))
	if res.code != 0 || !strings.HasPrefix(recipient, "age1") {
		t.Fatalf("keygen: exit %d: %s", res.code, res.stderr)
	}
	if err := os.WriteFile(filepath.Join(keys, "recipients.txt"), []byte(recipient+"\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(keys, "names.key"), 32, 9)

	cfg := string(raw)
	for from, to := range map[string]string{
		"http://source:9000":  srcSrv.URL,
		"http://canada:9000":  dstSrv.URL,
		"/var/lib/voyageur/":  filepath.Join(dir, "journal") + "/",
		"/etc/voyageur/keys/": keys + "/",
	} {
		if !strings.Contains(cfg, from) {
			t.Fatalf("deploy/compose/voyageur.yaml no longer holds %q: update this test with docker-compose.yml", from)
		}
		cfg = strings.ReplaceAll(cfg, from, to)
	}
	path := filepath.Join(dir, "voyageur.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOURCE_ACCESS_KEY", srcSrv.AccessKey)
	t.Setenv("SOURCE_SECRET_KEY", srcSrv.SecretKey)
	t.Setenv("CANADA_ACCESS_KEY", dstSrv.AccessKey)
	t.Setenv("CANADA_SECRET_KEY", dstSrv.SecretKey)
	t.Setenv("VOYAGEUR_WEBHOOK_TOKEN", "compose-test-token")

	writeFile(t, filepath.Join(dir, "seed", "ledger.csv"), 100_000, 3)
	srcSrv.AWS(t, "s3", "cp", filepath.Join(dir, "seed", "ledger.csv"), "s3://fintech-prod/ledgers/2026-11-24.csv")
	if s := syncJSON(t, 0, "-c", path); s.Copied != 1 || s.Failed != 0 {
		t.Fatalf("sync with the compose config: %+v", s)
	}
	dst := side{srv: dstSrv, bucket: "fintech-replica"}
	for key := range listObjects(t, dst, "") {
		if !regexp.MustCompile(`^[0-9a-f]{64}\.age$`).MatchString(key) {
			t.Errorf("replica %q: want a hashed name", key)
		}
	}
	if st := runVoyageur(t, "status", "-c", path); st.code != 0 {
		t.Errorf("status: exit %d\n%s", st.code, st.stderr)
	}
}

// filterEnvPrefixes drops variables whose names start with any prefix.
func filterEnvPrefixes(env []string, prefixes ...string) []string {
	var out []string
next:
	for _, kv := range env {
		for _, p := range prefixes {
			if strings.HasPrefix(kv, p) {
				continue next
			}
		}
		out = append(out, kv)
	}
	return out
}
