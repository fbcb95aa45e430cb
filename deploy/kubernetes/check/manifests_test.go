package check

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// manifests are the files under deploy/kubernetes, by name.
func manifests(t *testing.T) map[string][]byte {
	t.Helper()
	paths, err := filepath.Glob("../*.yaml")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no manifests in deploy/kubernetes: %v", err)
	}
	out := map[string][]byte{}
	for _, p := range paths {
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(p)] = raw
	}
	return out
}

// decode reads one manifest strictly: an unknown or misspelt field, a
// duplicate key or a wrong type is an error, as kubectl --validate=strict
// would say.
func decode(t *testing.T, name string, raw []byte) any {
	t.Helper()
	var meta struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := yaml.Unmarshal(raw, &meta); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	var obj any
	switch meta.APIVersion + " " + meta.Kind {
	case "batch/v1 Job":
		obj = &batchv1.Job{}
	case "batch/v1 CronJob":
		obj = &batchv1.CronJob{}
	case "v1 ConfigMap":
		obj = &corev1.ConfigMap{}
	case "v1 Secret":
		obj = &corev1.Secret{}
	case "v1 PersistentVolumeClaim":
		obj = &corev1.PersistentVolumeClaim{}
	default:
		t.Fatalf("%s: unexpected %s %s", name, meta.APIVersion, meta.Kind)
	}
	if err := yaml.UnmarshalStrict(raw, obj); err != nil {
		t.Fatalf("%s: strict decoding: %v", name, err)
	}
	return obj
}

func TestStrictDecodingCatchesMistakes(t *testing.T) {
	raw := manifests(t)["backfill-job.yaml"]
	for _, bad := range []string{
		strings.Replace(string(raw), "backoffLimitPerIndex:", "backoffLimitPerIdx:", 1),
		strings.Replace(string(raw), "completions: 8", "completions: eight", 1),
		strings.Replace(string(raw), "  parallelism: 8\n", "  parallelism: 8\n  parallelism: 4\n", 1),
	} {
		if err := yaml.UnmarshalStrict([]byte(bad), &batchv1.Job{}); err == nil {
			t.Errorf("a broken manifest decoded strictly:\n%s", bad)
		}
	}
}

var shardArg = regexp.MustCompile(`^auto/(\d+)$`)

func TestManifests(t *testing.T) {
	jobs := map[string]*batchv1.JobSpec{}
	var configMaps, secrets []string
	for name, raw := range manifests(t) {
		switch o := decode(t, name, raw).(type) {
		case *batchv1.Job:
			jobs[name] = &o.Spec
		case *batchv1.CronJob:
			if o.Spec.ConcurrencyPolicy != batchv1.ForbidConcurrent {
				t.Errorf("%s: concurrencyPolicy %q: a night that overruns must not start shards on the same journals", name, o.Spec.ConcurrencyPolicy)
			}
			jobs[name] = &o.Spec.JobTemplate.Spec
		case *corev1.ConfigMap:
			configMaps = append(configMaps, o.Name)
		case *corev1.Secret:
			secrets = append(secrets, o.Name)
		}
	}
	for _, want := range []string{"backfill-job.yaml", "nightly-cronjob.yaml", "restore-job.yaml"} {
		if jobs[want] == nil {
			t.Errorf("no %s", want)
		}
	}
	if !slices.Contains(configMaps, "voyageur-recipients") || !slices.Contains(secrets, "voyageur-config") {
		t.Errorf("config maps %v, secrets %v: want voyageur-recipients and voyageur-config", configMaps, secrets)
	}
	for name, spec := range jobs {
		t.Run(name, func(t *testing.T) { checkJob(t, name, spec) })
	}
}

func checkJob(t *testing.T, name string, spec *batchv1.JobSpec) {
	restore := strings.HasPrefix(name, "restore")
	if spec.CompletionMode == nil || *spec.CompletionMode != batchv1.IndexedCompletion {
		t.Errorf("completionMode %v, want Indexed", spec.CompletionMode)
	}
	if spec.Completions == nil || spec.Parallelism == nil || *spec.Parallelism < 1 || *spec.Parallelism > *spec.Completions {
		t.Fatalf("completions %v, parallelism %v: want both, parallelism at most completions", spec.Completions, spec.Parallelism)
	}
	if spec.BackoffLimitPerIndex == nil || *spec.BackoffLimitPerIndex < 1 {
		t.Errorf("backoffLimitPerIndex %v: want each index retried on its own", spec.BackoffLimitPerIndex)
	}
	pod := spec.Template.Spec
	if pod.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("restartPolicy %q, want Never (podFailurePolicy needs it)", pod.RestartPolicy)
	}
	checkFailurePolicy(t, spec.PodFailurePolicy)
	if len(pod.Containers) != 1 || pod.Containers[0].Name != "voyageur" {
		t.Fatalf("want one container named voyageur (the failure policy names it)")
	}
	c := pod.Containers[0]
	flag := func(name string) string {
		i := slices.Index(c.Args, name)
		if i < 0 || i+1 >= len(c.Args) {
			return ""
		}
		return c.Args[i+1]
	}
	m := shardArg.FindStringSubmatch(flag("--shard"))
	if m == nil {
		t.Fatalf("args %v: want --shard auto/N", c.Args)
	}
	if n, _ := strconv.Atoi(m[1]); int32(n) != *spec.Completions {
		t.Errorf("--shard auto/%d with %d completions: every index must be a shard, and only those", n, *spec.Completions)
	}
	if !strings.HasPrefix(flag("-c"), "/etc/voyageur/") {
		t.Errorf("-c %q: want the config from the voyageur-config Secret", flag("-c"))
	}
	mounts := map[string]string{} // volume → mount path
	for _, vm := range c.VolumeMounts {
		mounts[vm.Name] = vm.MountPath
	}
	vols := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		vols[v.Name] = v
	}
	mountedFrom := func(path string) (corev1.Volume, bool) {
		for name, mp := range mounts {
			if strings.HasPrefix(path, mp+"/") {
				v, ok := vols[name]
				return v, ok
			}
		}
		return corev1.Volume{}, false
	}
	if v, ok := mountedFrom(flag("-c")); !ok || v.Secret == nil || v.Secret.SecretName != "voyageur-config" {
		t.Errorf("the config is not mounted from the Secret voyageur-config")
	}
	hasRecipients, hasIdentity := false, false
	for _, v := range pod.Volumes {
		if v.ConfigMap != nil && v.ConfigMap.Name == "voyageur-recipients" && mounts[v.Name] != "" {
			hasRecipients = true
		}
		if v.Secret != nil && v.Secret.SecretName == "voyageur-identity" {
			hasIdentity = true
		}
	}
	if !hasRecipients {
		t.Errorf("the recipients are not mounted from the ConfigMap voyageur-recipients")
	}
	if hasIdentity != restore {
		t.Errorf("identity mounted: %v; the identity belongs in the restore Job only", hasIdentity)
	}
	if restore {
		if v, ok := mountedFrom(flag("--identity")); !ok || v.Secret == nil || v.Secret.SecretName != "voyageur-identity" {
			t.Errorf("--identity %q is not on the voyageur-identity Secret", flag("--identity"))
		}
		return
	}
	// A sync's journal is per index: its path names the index (and the
	// shard count), on a volume, or emptyDir (rebuilt from the replicas).
	j := flag("--journal")
	if !strings.Contains(j, "$(JOB_COMPLETION_INDEX)") || !strings.Contains(j, fmt.Sprintf("of-%d", *spec.Completions)) {
		t.Errorf("--journal %q: want one journal per index and shard count", j)
	}
	v, ok := mountedFrom(j)
	if !ok || (v.EmptyDir == nil && v.PersistentVolumeClaim == nil) {
		t.Errorf("--journal %q is on no emptyDir or persistent volume", j)
	}
	if strings.HasPrefix(name, "nightly") && (!ok || v.PersistentVolumeClaim == nil) {
		t.Errorf("the nightly journals are not on a persistent volume: without them no delete would reach the replica")
	}
}

// checkFailurePolicy wants exit 2 (configuration) to fail the Job and exit
// 3 (journal locked) to be retried.
func checkFailurePolicy(t *testing.T, p *batchv1.PodFailurePolicy) {
	t.Helper()
	if p == nil {
		t.Fatal("no podFailurePolicy")
	}
	action := func(code int32) batchv1.PodFailurePolicyAction {
		for _, r := range p.Rules {
			if e := r.OnExitCodes; e != nil && e.Operator == batchv1.PodFailurePolicyOnExitCodesOpIn && slices.Contains(e.Values, code) &&
				(e.ContainerName == nil || *e.ContainerName == "voyageur") {
				return r.Action
			}
		}
		return ""
	}
	if a := action(2); a != batchv1.PodFailurePolicyActionFailJob {
		t.Errorf("exit 2 (configuration) → %q, want FailJob", a)
	}
	if a := action(3); a != batchv1.PodFailurePolicyActionCount && a != batchv1.PodFailurePolicyActionIgnore {
		t.Errorf("exit 3 (journal locked) → %q, want a retry (Count or Ignore)", a)
	}
}
