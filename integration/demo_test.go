package integration

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/voyageur-ca/voyageur/integration/minioserver"
	"github.com/voyageur-ca/voyageur/integration/testproc"
)

// repoRoot is the repository's top directory (tests run in integration/).
func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// TestDemo runs scripts/demo.sh (what `make demo` runs) with a 20 MiB
// archive instead of 300 MiB, so the demo cannot rot: it must exit 0, close
// with the verified restore, read a ledger through voyageur serve, and
// leave no server or directory behind.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two MinIO servers: not run with -short")
	}
	minio := minioserver.Binary(t)
	for _, tool := range []string{"age", "zstd", "openssl", "sha256sum"} {
		testproc.NeedTool(t, tool)
	}
	if _, err := os.Stat("/usr/bin/aws"); err != nil { // demo.sh prefers Debian's
		testproc.NeedTool(t, "aws")
	}
	tmp := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(repoRoot(t), "scripts", "demo.sh"))
	cmd.Env = append(os.Environ(),
		"VOYAGEUR_BIN="+voyageurBin,
		"VOYAGEUR_MINIO_BIN="+minio,
		"DEMO_ARCHIVE_MIB=20",
		"DEMO_LEDGER_ROWS=500",
		"TMPDIR="+tmp,
	)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	t.Logf("demo ran %s", time.Since(start).Round(time.Second))
	if err != nil {
		t.Fatalf("scripts/demo.sh: %v\n%s", err, out.String())
	}
	text := out.String()
	lines := strings.Split(strings.TrimSpace(text), "\n")
	last := lines[len(lines)-1]
	if !strings.Contains(last, "restore verified: 52/52 files match their SHA-256") {
		t.Errorf("closing line %q does not report the verified restore\n%s", last, text)
	}
	for _, want := range []string{
		"copied 51, skipped 0", // the first sync
		"copied 1, skipped 51", // only the new ledger
		"Names mentioning ledger, statement or archive: 0",
		"age-encryption.o", // the age header in the hex dump
		"restored 52",
		"SHA-256 matches the original",
		"catalog loaded", // the failover step: serve on the replica
		"through serve: SHA-256 matches the original",
		"aws s3 rm through serve  ->  AccessDenied",
		"fintech-prod: PASSED",             // the drill from the kit
		"failover path (voyageur serve): ", // the drill's GETs through serve
		"drill passed, report: ",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("demo output lacks %q\n%s", want, text)
		}
	}
	// The script removes its working directory and stops its servers: no
	// process may still run from it.
	if left, _ := filepath.Glob(filepath.Join(tmp, "voyageur-demo.*")); len(left) > 0 {
		t.Errorf("the demo left %v behind", left)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, []byte(tmp)) {
			t.Errorf("a process still runs from the demo's directory: %s", bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
		}
	}
}
