package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/voyageur-ca/voyageur/crypto"
)

// runCLI runs the CLI in-process and returns its exit code and outputs.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// TestHelp drives --help of every command, nested ones included: each
// exits 0 with its usage, and every command of voyageur's own shows
// examples.
func TestHelp(t *testing.T) {
	root, _ := newRootCmd(&bytes.Buffer{}, &bytes.Buffer{})
	// cobra adds these two when it executes; the walk needs them now.
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	var walk func(c *cobra.Command, path []string)
	n := 0
	walk = func(c *cobra.Command, path []string) {
		for _, sub := range c.Commands() {
			walk(sub, append(append([]string(nil), path...), sub.Name()))
		}
		n++
		code, stdout, stderr := runCLI(t, append(path, "--help")...)
		name := strings.Join(append([]string{"voyageur"}, path...), " ")
		if code != 0 || stderr != "" || !strings.Contains(stdout, "Usage:") {
			t.Errorf("%s --help: exit %d, stderr %q, stdout:\n%s", name, code, stderr, stdout)
		}
		// cobra's own commands (help, completion) come without examples.
		if len(path) > 0 && (path[0] == "completion" || path[0] == "help") {
			return
		}
		if !strings.Contains(stdout, "Examples:") {
			t.Errorf("%s --help shows no examples", name)
		}
	}
	walk(root, nil)
	if n < 16 {
		t.Errorf("walked %d commands, want every command (at least 16)", n)
	}
}

func TestVersion(t *testing.T) {
	version = "v1.2.3-test"
	defer func() { version = "" }()
	code, stdout, _ := runCLI(t, "version")
	if code != 0 || !strings.HasPrefix(stdout, "voyageur v1.2.3-test") || !strings.Contains(stdout, "go1.") {
		t.Errorf("version: exit %d, %q", code, stdout)
	}
	code, stdout, _ = runCLI(t, "version", "--json")
	var v buildVersion
	if err := json.Unmarshal([]byte(stdout), &v); code != 0 || err != nil || v.Version != "v1.2.3-test" || v.Platform == "" {
		t.Errorf("version --json: exit %d, %q (%v)", code, stdout, err)
	}
}

// TestInitSample: the sample init writes is a configuration every command
// accepts once its files exist, and init never overwrites a file.
func TestInitSample(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "voyageur.yaml")
	code, stdout, stderr := runCLI(t, "init", "-o", path)
	if code != 0 || stdout != "" || !strings.Contains(stderr, "wrote "+path) {
		t.Fatalf("init -o: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("sample config: %v, mode %v; want 0600", err, st.Mode())
	}
	if code, _, stderr := runCLI(t, "init", "-o", path); code != exitUsage || !strings.Contains(stderr, "never overwritten") {
		t.Errorf("init over an existing file: exit %d, %q", code, stderr)
	}
	if code, stdout, _ := runCLI(t, "init"); code != 0 || stdout != sampleConfig {
		t.Errorf("init to stdout: exit %d", code)
	}

	// The files the sample names, in a temporary directory.
	_, recipient, err := crypto.GenerateIdentity(false)
	if err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, filepath.Join(dir, "recipients.txt"), recipient+"\n")
	writeTestFile(t, filepath.Join(dir, "names.key"), strings.Repeat("k", 32))
	raw := strings.NewReplacer("/etc/voyageur/", dir+"/", "/var/lib/voyageur/", dir+"/").Replace(sampleConfig)
	writeTestFile(t, path+".local", raw)
	t.Setenv("OVH_ACCESS_KEY", "AKIA-TEST")
	t.Setenv("OVH_SECRET_KEY", "test-secret-value")
	cfg, jobs, specs, err := loadJobs(context.Background(), path+".local", "", true, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("the sample does not load: %v", err)
	}
	if len(jobs) != 1 || jobs[0].Name != "ledgers" || !jobs[0].Encryption.Enabled() || jobs[0].Encryption.Names != "hashed" || len(specs) != 1 {
		t.Errorf("sample jobs: %+v", jobs)
	}
	if cfg.Endpoints["bhs"].Type != "ovh" || cfg.Endpoints["aws-prod"].Type != "aws" {
		t.Errorf("sample endpoints: %+v", cfg.Endpoints)
	}
}

func TestLogFormat(t *testing.T) {
	// A config error is logged before anything touches a server: the
	// warning about inline secrets in a readable file, as one JSON object.
	dir := t.TempDir()
	path := fsConfig(t, dir, "", `  b: {type: minio, url: "http://127.0.0.1:1", access_key: k, secret_key: inline-secret}
`, `  - {name: j, source: "a:src", destination: "b:dst"}
`)
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, stderr := runCLI(t, "--log-format", "json", "status", "-c", path)
	line := strings.SplitN(stderr, "\n", 2)[0]
	var rec map[string]any
	if err := json.Unmarshal([]byte(line), &rec); err != nil || rec["level"] != "WARN" || rec["config"] != path {
		t.Errorf("--log-format json: first line %q is not the JSON warning (%v)", line, err)
	}
	if strings.Contains(stderr, "inline-secret") {
		t.Error("the secret appears in the log")
	}
	if code, _, stderr := runCLI(t, "--log-format", "xml", "status", "-c", path); code != exitUsage || !strings.Contains(stderr, "--log-format") {
		t.Errorf("--log-format xml: exit %d, %q", code, stderr)
	}
	if code, _, stderr := runCLI(t, "-v", "-q", "status", "-c", path); code != exitUsage || !strings.Contains(stderr, "choose one") {
		t.Errorf("-v -q: exit %d, %q", code, stderr)
	}
}

// TestCompletion: the shell scripts are generated, and --job completes the
// job names of the config given with -c.
func TestCompletion(t *testing.T) {
	for _, sh := range []string{"bash", "zsh", "fish", "powershell"} {
		if code, stdout, _ := runCLI(t, "completion", sh); code != 0 || !strings.Contains(stdout, "voyageur") {
			t.Errorf("completion %s: exit %d", sh, code)
		}
	}
	dir := t.TempDir()
	path := fsConfig(t, dir, "", "", `  - {name: ledgers, source: "a:src", destination: "a:dst"}
  - {name: statements, source: "a:src2", destination: "a:dst2"}
`)
	code, stdout, _ := runCLI(t, "__complete", "sync", "-c", path, "--job", "")
	if code != 0 || !strings.Contains(stdout, "ledgers\n") || !strings.Contains(stdout, "statements\n") {
		t.Errorf("--job completion: exit %d, %q", code, stdout)
	}
}

// oneJob is the jobs list of most tests: one job between two directories.
const oneJob = `  - {name: ledgers, source: "a:src", destination: "a:dst"}
`

// fsConfig writes dir/c.yaml: the journal (dir/j.db when empty), endpoint
// a (type fs on dir) and the extra endpoints, then the jobs, each block in
// YAML lines indented under its key.
func fsConfig(t *testing.T, dir, journal, endpoints, jobs string) string {
	t.Helper()
	if journal == "" {
		journal = filepath.Join(dir, "j.db")
	}
	path := filepath.Join(dir, "c.yaml")
	writeTestFile(t, path, "journal: "+journal+"\nendpoints:\n  a: {type: fs, path: "+dir+"}\n"+endpoints+"jobs:\n"+jobs)
	return path
}

func writeTestFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestStatusBeforeAnyRun: status on a journal that does not exist yet says
// so and creates nothing.
func TestStatusBeforeAnyRun(t *testing.T) {
	dir := t.TempDir()
	journalPath := filepath.Join(dir, "state", "j.db")
	path := fsConfig(t, dir, journalPath, "", oneJob)
	code, stdout, stderr := runCLI(t, "status", "-c", path)
	if code != 0 || !strings.Contains(stdout, "no journal at "+journalPath) || !strings.Contains(stdout, "last run: never") {
		t.Errorf("status before any run: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if _, err := os.Stat(filepath.Dir(journalPath)); !os.IsNotExist(err) {
		t.Errorf("status created the journal's directory: %v", err)
	}
}

// TestStatusJSONNames: the last run is reported under readable names, not
// the journal's compact ones.
func TestStatusJSONNames(t *testing.T) {
	raw, err := json.Marshal(jobStatus{LastRun: &lastRunStatus{Copied: 3, Complete: true}})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"copied":3`, `"complete":true`, `"bytes_written":0`, `"started":`} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("status JSON %s lacks %s", raw, want)
		}
	}
}

// TestDestinationMoved: a job whose destination changed under the same
// name exits 2 naming both, and copies nothing into the new bucket.
func TestDestinationMoved(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"src", "dst", "other"} {
		if err := os.MkdirAll(filepath.Join(dir, "store", d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	writeTestFile(t, filepath.Join(dir, "store", "src", "a.csv"), "a")
	config := func(dest string) string {
		path := filepath.Join(dir, dest+".yaml")
		writeTestFile(t, path, `journal: `+filepath.Join(dir, "j.db")+`
endpoints:
  local: {type: fs, path: `+filepath.Join(dir, "store")+`}
jobs:
  - {name: ledgers, source: "local:src", destination: "local:`+dest+`"}
`)
		return path
	}
	if code, _, stderr := runCLI(t, "sync", "-c", config("dst")); code != 0 {
		t.Fatalf("first sync: exit %d, %s", code, stderr)
	}
	code, _, stderr := runCLI(t, "sync", "-c", config("other"))
	if code != exitUsage || !strings.Contains(stderr, "local:src -> local:dst") || !strings.Contains(stderr, "local:src -> local:other") || !strings.Contains(stderr, "new name") {
		t.Errorf("sync to a moved destination: exit %d, %q", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "store", "other", "a.csv")); !os.IsNotExist(err) {
		t.Errorf("the object was copied to the new destination: %v", err)
	}
}

// TestStatusWithoutSecrets: status reads the journal from a shell that does
// not have the service's secrets; commands that contact a store still
// refuse an unset variable, and status refuses one outside the secrets.
func TestStatusWithoutSecrets(t *testing.T) {
	dir := t.TempDir()
	path := fsConfig(t, dir, "", `  b: {type: minio, url: "https://minio.example.ca", access_key: "${VOYAGEUR_TEST_UNSET_K}", secret_key: "${VOYAGEUR_TEST_UNSET_S}"}
`, `  - {name: ledgers, source: "a:src", destination: "b:dst", events: [{webhook: "127.0.0.1:0", token: "${VOYAGEUR_TEST_UNSET_T}"}]}
`)
	if code, stdout, stderr := runCLI(t, "status", "-c", path); code != 0 || !strings.Contains(stdout, "job ledgers") {
		t.Errorf("status without the secrets: exit %d, %q, %q", code, stdout, stderr)
	}
	if code, _, stderr := runCLI(t, "sync", "-c", path, "--dry-run"); code != exitUsage || !strings.Contains(stderr, "VOYAGEUR_TEST_UNSET_K is not set") {
		t.Errorf("sync without the secrets: exit %d, %q", code, stderr)
	}
	writeTestFile(t, path, `journal: ${VOYAGEUR_TEST_UNSET_J}
endpoints:
  a: {type: fs, path: `+dir+`}
jobs:
  - {name: ledgers, source: "a:src", destination: "a:dst"}
`)
	if code, _, stderr := runCLI(t, "status", "-c", path); code != exitUsage || !strings.Contains(stderr, "VOYAGEUR_TEST_UNSET_J is not set") {
		t.Errorf("status with an unset journal path: exit %d, %q", code, stderr)
	}
}
