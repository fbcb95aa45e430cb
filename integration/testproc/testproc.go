// Package testproc runs the server processes the tests need (MinIO, the
// SQS emulator): output to a log file, a wait for a health URL, and a stop
// that cannot hang. Only tests import it.
package testproc

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Process is one running child process.
type Process struct {
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{} // closed when the process has exited
	stop    sync.Once
}

// Start starts cmd with its output appended to logPath.
func Start(cmd *exec.Cmd, logPath string) (*Process, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child holds its own descriptor
	cmd.Stdout, cmd.Stderr = logf, logf
	// No server the tests start may ask the cloud metadata address for
	// credentials, whatever the caller's environment.
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	cmd.Env = append(cmd.Env, "AWS_EC2_METADATA_DISABLED=true")
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Process{cmd: cmd, logPath: logPath, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// WaitHealthy polls url until it answers 200, the process exits, or
// timeout passes.
func (p *Process) WaitHealthy(url string, timeout time.Duration) error {
	client := &http.Client{
		Timeout: 2 * time.Second,
		Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true,
			// Whether our own child is live, not whom to trust: tests
			// that serve https check certificates themselves.
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
	}
	deadline := time.Now().Add(timeout)
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("health probe: http status %d", resp.StatusCode)
		}
		if p.Exited() {
			return fmt.Errorf("exited before it answered: %s", p.cmd.ProcessState)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not answering after %v: %w", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// PID is the process id, for reading its CPU time from /proc.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// Stop sends SIGTERM, then kills the process if it has not exited after
// timeout. It is idempotent.
func (p *Process) Stop(timeout time.Duration) {
	p.stop.Do(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(timeout):
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	})
}

// Tail returns the last n bytes of the log.
func Tail(logPath string, n int) string {
	b, err := os.ReadFile(logPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	if len(b) == 0 {
		return "(empty log)"
	}
	return string(b)
}

// FreePort returns a port free on the loopback interface (for a moment:
// callers retry when the child loses the race for it).
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Unavailable reports that this machine lacks something a test needs (a
// tool, a kernel behaviour): a failure under CI=true, where `make test`
// provides everything, a skip otherwise.
func Unavailable(tb testing.TB, msg string) {
	tb.Helper()
	if os.Getenv("CI") == "true" {
		tb.Fatal(msg)
	}
	tb.Skip(msg)
}

// NeedTool returns the path of a command on PATH, or reports it
// Unavailable.
func NeedTool(tb testing.TB, name string) string {
	tb.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Unavailable(tb, name+" not found on PATH; `make test` installs it")
	}
	return p
}

// GopathBin returns GOPATH/bin/name (the first GOPATH entry; $GOPATH,
// else `go env GOPATH`, else ~/go), where make installs the pinned builds
// of the servers and tools, or "" when no GOPATH can be found. It does not
// check that the file exists.
func GopathBin(name string) string {
	gp := gopath()
	if gp == "" {
		return ""
	}
	return filepath.Join(gp, "bin", name)
}

var gopath = sync.OnceValue(func() string {
	if gp := os.Getenv("GOPATH"); gp != "" {
		return filepath.SplitList(gp)[0]
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		if gp := strings.TrimSpace(string(out)); gp != "" {
			return filepath.SplitList(gp)[0]
		}
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, "go")
	}
	return ""
})
