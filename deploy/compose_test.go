package deploy

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

// loadCompose loads ../docker-compose.yaml as docker compose would (schema validation,
// interpolation with defaults only, consistency checks, paths resolved).
func loadCompose(t *testing.T) *types.Project {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	opts, err := cli.NewProjectOptions([]string{filepath.Join(root, "docker-compose.yaml")},
		cli.WithWorkingDirectory(root), cli.WithEnv(nil), cli.WithConsistency(true), cli.WithResolvedPaths(true))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("docker-compose.yaml: %v", err)
	}
	return p
}

func TestCompose(t *testing.T) {
	p := loadCompose(t)
	root, _ := filepath.Abs("..")

	want := []string{"aggregator", "dashboards", "dashboards-import", "forwarder", "loggen", "nats", "opensearch"}
	if got := slices.Sorted(func(yield func(string) bool) {
		for name := range p.Services {
			if !yield(name) {
				return
			}
		}
	}); !slices.Equal(got, want) {
		t.Fatalf("services %v, want %v", got, want)
	}

	// Every image compose builds comes from a Dockerfile in the repository, with a target of
	// that name; the others are pinned upstream images.
	built := map[string]bool{}
	for name, s := range p.Services {
		if s.Build == nil {
			if s.Image == "" || !strings.Contains(s.Image, ":") || strings.HasSuffix(s.Image, ":latest") {
				t.Errorf("%s: image %q must be pinned", name, s.Image)
			}
			continue
		}
		built[name] = true
		if s.Build.Context != root {
			t.Errorf("%s: build context %s, want the repository root", name, s.Build.Context)
		}
		dockerfile := filepath.Join(s.Build.Context, s.Build.Dockerfile)
		if !strings.HasPrefix(dockerfile, root+string(filepath.Separator)) {
			t.Errorf("%s: Dockerfile %s is outside the repository", name, dockerfile)
		}
		b, err := os.ReadFile(dockerfile)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !regexp.MustCompile(`(?m)^FROM \S+ AS ` + regexp.QuoteMeta(s.Build.Target) + `$`).Match(b) {
			t.Errorf("%s: %s has no stage %q", name, dockerfile, s.Build.Target)
		}
	}
	if !maps(built, "aggregator", "forwarder", "loggen") {
		t.Errorf("built services %v, want aggregator, forwarder, loggen", built)
	}

	env := func(service, key string) string {
		v := p.Services[service].Environment[key]
		if v == nil {
			return ""
		}
		return *v
	}
	for _, c := range []struct{ service, key, want string }{
		{"opensearch", "discovery.type", "single-node"},
		{"opensearch", "DISABLE_SECURITY_PLUGIN", "true"},
		{"dashboards", "OPENSEARCH_HOSTS", `["http://opensearch:9200"]`},
		{"aggregator", "PODLOGS_OPENSEARCH_URL", "http://opensearch:9200"},
		{"aggregator", "PODLOGS_NATS_URL", "nats://nats:4222"},
		{"aggregator", "PODLOGS_INDEX", "eks-pod-logs"},
		{"forwarder", "PODLOGS_AGGREGATOR", "dns:///aggregator:7370"},
		{"forwarder", "PODLOGS_PODS_ROOT", "/var/log/pods"},
	} {
		if got := env(c.service, c.key); got != c.want {
			t.Errorf("%s: %s=%q, want %q", c.service, c.key, got, c.want)
		}
	}
	if !slices.Contains(p.Services["nats"].Command, "--jetstream") {
		t.Errorf("nats runs without JetStream: %v", p.Services["nats"].Command)
	}

	// The log generator writes the pods tree the forwarder reads (read-only).
	mount := func(service, target string) *types.ServiceVolumeConfig {
		for _, v := range p.Services[service].Volumes {
			if v.Target == target {
				return &v
			}
		}
		return nil
	}
	gen, fwd := mount("loggen", "/var/log/pods"), mount("forwarder", "/var/log/pods")
	if gen == nil || fwd == nil || gen.Source != fwd.Source || gen.Type != types.VolumeTypeVolume || gen.ReadOnly || !fwd.ReadOnly {
		t.Errorf("pods volume: loggen %+v, forwarder %+v", gen, fwd)
	}
	if !slices.Contains(p.Services["loggen"].Command, "/var/log/pods") {
		t.Errorf("loggen command %v does not write /var/log/pods", p.Services["loggen"].Command)
	}
	if m := mount("forwarder", "/var/lib/podlogs"); m == nil || m.Type != types.VolumeTypeVolume {
		t.Error("forwarder checkpoints are not on a volume")
	}

	// The dashboard is imported on start, once Dashboards is healthy.
	imp := p.Services["dashboards-import"]
	if imp.DependsOn["dashboards"].Condition != types.ServiceConditionHealthy ||
		!slices.ContainsFunc(imp.Command, func(s string) bool { return strings.Contains(s, "/api/saved_objects/_import") }) ||
		mount("dashboards-import", "/dashboards") == nil {
		t.Errorf("dashboards-import: %+v", imp)
	}
	if p.Services["aggregator"].DependsOn["opensearch"].Condition != types.ServiceConditionHealthy ||
		p.Services["aggregator"].DependsOn["nats"].Condition != types.ServiceConditionHealthy {
		t.Errorf("aggregator depends on %v", p.Services["aggregator"].DependsOn)
	}
}

func maps(m map[string]bool, keys ...string) bool {
	if len(m) != len(keys) {
		return false
	}
	for _, k := range keys {
		if !m[k] {
			return false
		}
	}
	return true
}

// No Docker here: the Dockerfile is reviewed by its content. Multi-stage, static binaries
// (CGO_ENABLED=0), distroless base, non-root user, exec-form entrypoints, no ADD from URLs,
// no latest tags.
func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("docker/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	var froms []string
	stages := map[string]string{} // stage -> base
	for _, line := range strings.Split(df, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "FROM" {
			froms = append(froms, f[1])
			if len(f) == 4 && strings.EqualFold(f[2], "AS") {
				stages[f[3]] = f[1]
			}
		}
		if len(f) > 0 && f[0] == "ADD" {
			t.Errorf("use COPY, not ADD: %s", line)
		}
	}
	if stages["build"] == "" || !strings.HasPrefix(stages["build"], "golang:") {
		t.Errorf("no golang build stage: %v", stages)
	}
	for _, target := range []string{"aggregator", "forwarder", "loggen"} {
		base := stages[target]
		if !strings.HasPrefix(base, "gcr.io/distroless/static") || !strings.HasSuffix(base, ":nonroot") {
			t.Errorf("stage %s: base %q, want distroless/static:nonroot", target, base)
		}
		body := stageBody(df, target)
		for _, want := range []string{"USER 65532:65532", `ENTRYPOINT ["/` + target + `"]`, "COPY --from=build /out/" + target + " /" + target} {
			if !strings.Contains(body, want) {
				t.Errorf("stage %s lacks %q", target, want)
			}
		}
		if strings.Contains(body, "RUN ") {
			t.Errorf("stage %s runs commands: distroless has no shell", target)
		}
	}
	for _, from := range froms {
		if strings.HasSuffix(from, ":latest") || !strings.Contains(from, ":") {
			t.Errorf("unpinned base image %s", from)
		}
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "./forwarder/cmd/forwarder", "./aggregator/cmd/aggregator", "./cmd/loggen"} {
		if !strings.Contains(df, want) {
			t.Errorf("build stage lacks %q", want)
		}
	}
	ignore, err := os.ReadFile("docker/Dockerfile.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{".git", ".cache"} {
		if !slices.Contains(strings.Fields(string(ignore)), want) {
			t.Errorf("Dockerfile.dockerignore does not leave out %s", want)
		}
	}
}

func stageBody(df, stage string) string {
	_, rest, ok := strings.Cut(df, " AS "+stage+"\n")
	if !ok {
		return ""
	}
	if i := strings.Index(rest, "\nFROM "); i >= 0 {
		rest = rest[:i]
	}
	return rest
}
