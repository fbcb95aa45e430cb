package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// hostileKey retitles and clears a terminal, and forges a line, when
// printed raw.
const hostileKey = "in\x1b]0;OWNED\x07\x1b[2J\rx\nfailed forged: ok.txt"

// TestUntrustedNamesEscaped: keys with control characters reach ls, the
// failed lines of sync and status's failing lines escaped like %q, while
// --json keeps the exact key.
func TestUntrustedNamesEscaped(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"src", "dst"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	writeTestFile(t, filepath.Join(dir, "src", hostileKey), "payload")
	writeTestFile(t, filepath.Join(dir, "src", "bell\x07.txt"), "payload")
	// A directory where the replica of bell\x07.txt goes makes its copy fail.
	if err := os.MkdirAll(filepath.Join(dir, "dst", "bell\x07.txt", "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := fsConfig(t, dir, "", "", oneJob)
	quoted := strconv.Quote(hostileKey)
	raw := func(what, out string) {
		t.Helper()
		if strings.ContainsAny(out, "\x1b\x07\r") || strings.Contains(out, "\nfailed forged") {
			t.Errorf("%s prints a control character raw:\n%q", what, out)
		}
	}

	code, stdout, stderr := runCLI(t, "sync", "-c", cfg, "-q")
	raw("sync", stdout+stderr)
	if code != exitFailed || !strings.Contains(stdout, "  failed "+strconv.Quote("bell\x07.txt")+": ") {
		t.Errorf("sync: exit %d, want 1 and an escaped failed line:\n%s%s", code, stdout, stderr)
	}
	code, stdout, stderr = runCLI(t, "status", "-c", cfg)
	raw("status", stdout+stderr)
	if code != exitOK || !strings.Contains(stdout, "  failing: "+strconv.Quote("bell\x07.txt")+" (1 attempts): ") {
		t.Errorf("status: exit %d, want an escaped failing line:\n%s%s", code, stdout, stderr)
	}
	code, stdout, stderr = runCLI(t, "ls", "-c", cfg, "--job", "ledgers")
	raw("ls", stdout+stderr)
	if code != exitOK || !strings.Contains(stdout, quoted+"\n") {
		t.Errorf("ls: exit %d, want the key as %s:\n%s%s", code, quoted, stdout, stderr)
	}

	// The replica of bell\x07.txt was never written: verify names it.
	code, stdout, stderr = runCLI(t, "verify", "-c", cfg, "--job", "ledgers")
	raw("verify", stdout+stderr)
	if code != exitFailed || !strings.Contains(stdout, "  missing "+strconv.Quote("bell\x07.txt")+"\n") {
		t.Errorf("verify: exit %d, want 1 and an escaped missing line:\n%s%s", code, stdout, stderr)
	}

	// Machine output stays exact.
	code, stdout, _ = runCLI(t, "ls", "-c", cfg, "--job", "ledgers", "--json")
	var e lsEntry
	if err := json.Unmarshal([]byte(stdout), &e); code != exitOK || err != nil || e.Key != hostileKey {
		t.Errorf("ls --json: exit %d, %q (%v), want the exact key", code, stdout, err)
	}
	code, stdout, _ = runCLI(t, "status", "-c", cfg, "--json")
	if code != exitOK || !strings.Contains(stdout, `"key":"bell\u0007.txt"`) {
		t.Errorf("status --json: exit %d, %s; want the exact key", code, stdout)
	}
}

func TestTermSafe(t *testing.T) {
	for in, want := range map[string]string{
		"daily/2026-11-24.parquet": "daily/2026-11-24.parquet",
		"rapport été.pdf":          "rapport été.pdf",
		"a\x1b[2J":                 `"a\x1b[2J"`,
		"a\nb":                     `"a\nb"`,
		"rtl\u202egpj.exe":         `"rtl\u202egpj.exe"`,
		"bad\xffutf8":              `"bad\xffutf8"`,
	} {
		if got := termSafe(in); got != want {
			t.Errorf("termSafe(%q) = %s, want %s", in, got, want)
		}
	}
}
