package testproc

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestStartDisablesMetadata: a process the harness starts has the AWS
// metadata lookup disabled, even when the caller's environment lacks it.
func TestStartDisablesMetadata(t *testing.T) {
	t.Setenv("AWS_EC2_METADATA_DISABLED", "")
	os.Unsetenv("AWS_EC2_METADATA_DISABLED")
	log := filepath.Join(t.TempDir(), "out.log")
	p, err := Start(exec.Command("sh", "-c", `echo "metadata disabled: $AWS_EC2_METADATA_DISABLED"`), log)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for !p.Exited() {
		if time.Now().After(deadline) {
			t.Fatal("sh did not exit")
		}
		time.Sleep(10 * time.Millisecond)
	}
	out, err := os.ReadFile(log)
	if err != nil || !strings.Contains(string(out), "metadata disabled: true") {
		t.Errorf("the child saw %q (%v), want AWS_EC2_METADATA_DISABLED=true", out, err)
	}
}
