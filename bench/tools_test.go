package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/voyageur-ca/voyageur/integration/minioserver"
	"github.com/voyageur-ca/voyageur/integration/testproc"
	"github.com/voyageur-ca/voyageur/replicator"
)

// RcloneBinEnv names the variable pointing at the rclone binary (make bench
// installs the pinned build into GOPATH/bin).
const RcloneBinEnv = "VOYAGEUR_RCLONE_BIN"

// debianAWS is Debian's awscli, preferred over another aws on PATH so every
// machine measures the same client.
const debianAWS = "/usr/bin/aws"

// childTimeout bounds one run of a tool.
const childTimeout = 10 * time.Minute

// sample is one run of a child process.
type sample struct {
	wall time.Duration
	rss  int64         // peak resident set, bytes
	cpu  time.Duration // user and system CPU time
	// servers is the CPU both MinIO servers spent during the run: on this
	// machine they share the cores with the tool, so it is part of the
	// tool's cost.
	servers time.Duration
	out     []byte
	errs    []byte // stderr
}

// launchEnv, set to a file path, makes the test binary a launcher (see
// TestMain): it runs its arguments as a command and writes the command's
// wall time and peak RSS into that file.
//
// Why a launcher: Go starts children with vfork, and Linux carries the
// memory high-water mark of the address space a process had before exec
// into its ru_maxrss. A child started by this (large) benchmark process
// would report this process's peak; one started by the small launcher
// reports its own, above a floor of the launcher's ~10 MiB.
const launchEnv = "VOYAGEUR_BENCH_LAUNCH"

// launched is what the launcher reports.
type launched struct {
	Wall   time.Duration `json:"wall"`
	MaxRSS int64         `json:"maxrss"` // bytes
	CPU    time.Duration `json:"cpu"`
}

// launch runs args as a command with this process's standard streams and
// environment (less launchEnv), records it into path, and returns its exit
// code.
func launch(path string, args []string) int {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, launchEnv+"=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	start := time.Now()
	err := cmd.Run()
	res := launched{Wall: time.Since(start)}
	if cmd.ProcessState == nil {
		fmt.Fprintln(os.Stderr, "launch:", err)
		return 127
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		res.MaxRSS = ru.Maxrss << 10 // Linux reports KiB
		res.CPU = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	b, _ := json.Marshal(res)
	if werr := os.WriteFile(path, b, 0o600); werr != nil {
		fmt.Fprintln(os.Stderr, "launch:", werr)
		return 127
	}
	return cmd.ProcessState.ExitCode()
}

// run runs bin through the launcher and returns its wall time, peak RSS
// and output. A failure fails the benchmark with the child's stderr.
func run(tb testing.TB, env []string, bin string, args ...string) sample {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), childTimeout)
	defer cancel()
	report := filepath.Join(tb.TempDir(), "launched.json")
	cmd := exec.CommandContext(ctx, os.Args[0], append([]string{bin}, args...)...)
	cmd.Env = append(slices.Clip(env), launchEnv+"="+report)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		tb.Fatalf("%s %s: %v\nstderr:\n%s", filepath.Base(bin), strings.Join(args, " "), err, tail(stderr.String(), 4000))
	}
	var res launched
	if b, err := os.ReadFile(report); err != nil || json.Unmarshal(b, &res) != nil {
		tb.Fatalf("%s: no launcher report: %v", filepath.Base(bin), err)
	}
	return sample{wall: res.Wall, rss: res.MaxRSS, cpu: res.CPU, out: stdout.Bytes(), errs: stderr.Bytes()}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// baseEnv is the environment of every child: the host's, without
// variables that would change a tool's behaviour, and no proxy for loopback.
func baseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "AWS_") || strings.HasPrefix(kv, "RCLONE_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "NO_PROXY=127.0.0.1,localhost", "no_proxy=127.0.0.1,localhost")
}

// buildVoyageur builds the binary the way `make build` does.
func buildVoyageur(tb testing.TB, dir string) string {
	tb.Helper()
	bin := filepath.Join(dir, "voyageur")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "github.com/voyageur-ca/voyageur/cmd/voyageur")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("build voyageur: %v\n%s", err, out)
	}
	return bin
}

// findRclone returns the pinned rclone build: $VOYAGEUR_RCLONE_BIN, then
// GOPATH/bin/rclone. A missing one skips (fails under CI=true).
func findRclone(tb testing.TB) string {
	tb.Helper()
	p := os.Getenv(RcloneBinEnv)
	if p == "" {
		p = testproc.GopathBin("rclone")
	}
	if fi, err := os.Stat(p); p == "" || err != nil || !fi.Mode().IsRegular() {
		testproc.Unavailable(tb, "rclone not found ($"+RcloneBinEnv+", GOPATH/bin/rclone); make bench installs it")
	}
	return p
}

// awsEnv is awscli's environment for one server (see
// minioserver.Server.AWSEnv) with a config file of its own in dir: path
// style, 16 concurrent requests, 16 MiB parts (voyageur's defaults).
func awsEnv(tb testing.TB, dir string, srv *minioserver.Server) []string {
	tb.Helper()
	config := filepath.Join(dir, "aws-config")
	cfg := "[default]\ns3 =\n    addressing_style = path\n    max_concurrent_requests = 16\n    multipart_threshold = 16MB\n    multipart_chunksize = 16MB\n"
	if err := os.WriteFile(config, []byte(cfg), 0o644); err != nil {
		tb.Fatal(err)
	}
	return srv.AWSEnv(config)
}

// parseSummary decodes the output of a one-job `sync --json` and fails on
// failed objects or a job error.
func parseSummary(tb testing.TB, out []byte) replicator.Summary {
	tb.Helper()
	var s replicator.Summary
	if err := json.Unmarshal(out, &s); err != nil {
		tb.Fatalf("sync --json printed %q: %v", out, err)
	}
	if s.Failed != 0 || s.Error != "" {
		tb.Fatalf("sync: %d failed: %s", s.Failed, s.Error)
	}
	return s
}

// moduleVersion names the module and version a Go binary was built from
// (pinned builds report a useless version of their own).
func moduleVersion(bin string) string {
	out, err := exec.Command("go", "version", "-m", bin).Output()
	if err != nil {
		return fmt.Sprintf("%s: %v", filepath.Base(bin), err)
	}
	for line := range strings.Lines(string(out)) {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == "mod" {
			return f[1] + "@" + f[2]
		}
	}
	return filepath.Base(bin)
}

// firstLine runs a command and returns the first line of its output, for
// the machine description.
func firstLine(bin string, args ...string) string {
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		return fmt.Sprintf("%s: %v", filepath.Base(bin), err)
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}
