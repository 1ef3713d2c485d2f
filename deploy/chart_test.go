package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

const (
	chartDir = "helm/podlogs"
	// kubeVersion is the Kubernetes version the schemas are made for (Makefile KUBE_SCHEMA_VERSION).
	kubeVersion = "1.27.0"
	namespace   = "opensearch-exporter"
)

// valueSets are the documented value sets in the chart's ci/ folder.
var valueSets = []string{"default", "external-nats", "chart-nats", "sigv4"}

var (
	toolsOnce sync.Once
	toolsErr  error
	cacheDir  string
)

// tools builds (once, through make) the pinned helm and kubeconform and kubeconform's schemas.
func tools(t *testing.T) (helm, kubeconform, schemas string) {
	t.Helper()
	toolsOnce.Do(func() {
		root, err := filepath.Abs("..")
		if err != nil {
			toolsErr = err
			return
		}
		cacheDir = os.Getenv("PODLOGS_CACHE_DIR")
		if cacheDir == "" {
			cacheDir = filepath.Join(root, ".cache")
		}
		out, err := exec.Command("make", "--no-print-directory", "-s", "-C", root, "CACHE="+cacheDir, "deploy-tools").CombinedOutput()
		if err != nil {
			toolsErr = fmt.Errorf("make deploy-tools: %v\n%s", err, out)
		}
	})
	if toolsErr != nil {
		t.Fatal(toolsErr)
	}
	bin := filepath.Join(cacheDir, "bin")
	return filepath.Join(bin, "helm"), filepath.Join(bin, "kubeconform"), filepath.Join(cacheDir, "kubernetes-json-schema")
}

func valuesFile(set string) string { return filepath.Join(chartDir, "ci", set+"-values.yaml") }

// render runs helm template for a value set (plus --set overrides) and validates the result.
func render(t *testing.T, set string, overrides ...string) manifests {
	t.Helper()
	helm, _, _ := tools(t)
	args := []string{"template", "podlogs", chartDir, "--namespace", namespace, "--kube-version", kubeVersion, "-f", valuesFile(set)}
	for _, o := range overrides {
		args = append(args, "--set", o)
	}
	out, err := run(helm, args...)
	if err != nil {
		t.Fatalf("helm template %s: %v", set, err)
	}
	validate(t, set, out)
	return parse(t, out)
}

func run(name string, args ...string) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("%v\n%s%s", err, stderr.Bytes(), stdout.Bytes())
	}
	return stdout.Bytes(), nil
}

// validate checks every manifest against the Kubernetes schemas, strictly (unknown fields are
// errors). The CRDs' kinds (ServiceMonitor, Certificate) have no schema there and are
// checked by the tests that render them.
func validate(t *testing.T, set string, rendered []byte) {
	t.Helper()
	_, kubeconform, schemas := tools(t)
	cmd := exec.Command(kubeconform, "-strict", "-summary", "-kubernetes-version", kubeVersion,
		"-skip", "ServiceMonitor,Certificate",
		"-schema-location", schemas+"/{{ .NormalizedKubernetesVersion }}-standalone{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json", "-")
	cmd.Stdin = bytes.NewReader(rendered)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kubeconform %s: %v\n%s", set, err, out)
	}
	if !bytes.Contains(out, []byte("Invalid: 0, Errors: 0")) {
		t.Fatalf("kubeconform %s: %s", set, out)
	}
}

type manifest struct {
	Kind, Name string
	JSON       []byte
}

type manifests []manifest

func parse(t *testing.T, rendered []byte) manifests {
	t.Helper()
	var ms manifests
	for _, doc := range bytes.Split(rendered, []byte("\n---")) {
		j, err := yaml.YAMLToJSONStrict(doc)
		if err != nil {
			t.Fatalf("rendered YAML: %v\n%s", err, doc)
		}
		var head struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name      string `json:"name"`
				Namespace string `json:"namespace"`
			} `json:"metadata"`
		}
		if string(j) == "null" {
			continue
		}
		if err := json.Unmarshal(j, &head); err != nil {
			t.Fatal(err)
		}
		ms = append(ms, manifest{head.Kind, head.Metadata.Name, j})
	}
	return ms
}

func (ms manifests) kinds() []string {
	var ks []string
	for _, m := range ms {
		ks = append(ks, m.Kind+"/"+m.Name)
	}
	return ks
}

// get decodes the object of that kind and name strictly into v (unknown fields fail).
func (ms manifests) get(t *testing.T, kind, name string, v any) {
	t.Helper()
	if !ms.find(t, kind, name, v) {
		t.Fatalf("no %s %s among %v", kind, name, ms.kinds())
	}
}

func (ms manifests) find(t *testing.T, kind, name string, v any) bool {
	t.Helper()
	for _, m := range ms {
		if m.Kind == kind && m.Name == name {
			dec := json.NewDecoder(bytes.NewReader(m.JSON))
			dec.DisallowUnknownFields()
			if err := dec.Decode(v); err != nil {
				t.Fatalf("%s %s: %v", kind, name, err)
			}
			return true
		}
	}
	return false
}

func (ms manifests) has(kind, name string) bool {
	return slices.Contains(ms.kinds(), kind+"/"+name)
}

// env returns a container's environment: literal values, and fieldRef/secretKeyRef sources
// as "field:<path>" and "secret:<name>/<key>"; envFrom ConfigMaps are resolved.
func (ms manifests) env(t *testing.T, c corev1.Container) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, from := range c.EnvFrom {
		if from.ConfigMapRef == nil {
			t.Fatalf("container %s: envFrom other than a ConfigMap", c.Name)
		}
		var cm corev1.ConfigMap
		ms.get(t, "ConfigMap", from.ConfigMapRef.Name, &cm)
		for k, v := range cm.Data {
			env[k] = v
		}
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.FieldRef != nil:
			env[e.Name] = "field:" + e.ValueFrom.FieldRef.FieldPath
		case e.ValueFrom.SecretKeyRef != nil:
			env[e.Name] = "secret:" + e.ValueFrom.SecretKeyRef.Name + "/" + e.ValueFrom.SecretKeyRef.Key
		default:
			t.Fatalf("env %s: unexpected source", e.Name)
		}
	}
	return env
}

func wantEnv(t *testing.T, what string, env map[string]string, want map[string]string) {
	t.Helper()
	for k, v := range want {
		got, ok := env[k]
		switch {
		case v == "" && ok:
			t.Errorf("%s: %s=%q is set, want it absent", what, k, got)
		case v != "" && got != v:
			t.Errorf("%s: %s=%q, want %q", what, k, got, v)
		}
	}
}

func TestChartLint(t *testing.T) {
	helm, _, _ := tools(t)
	for _, set := range valueSets {
		if out, err := run(helm, "lint", "--strict", "--kube-version", kubeVersion, chartDir, "-f", valuesFile(set)); err != nil {
			t.Errorf("helm lint %s: %v\n%s", set, err, out)
		}
	}
}

// The chart cannot guess where OpenSearch is: without opensearch.host it refuses to render
// and says which value to set.
func TestChartNeedsOpenSearchHost(t *testing.T) {
	helm, _, _ := tools(t)
	_, err := run(helm, "template", "podlogs", chartDir, "--kube-version", kubeVersion)
	if err == nil || !strings.Contains(err.Error(), "opensearch.host is required") {
		t.Fatalf("helm template without opensearch.host: %v, want an error naming opensearch.host", err)
	}
	for _, c := range []struct{ set, want string }{
		{"opensearch.awsAuth=On", "set opensearch.awsRegion"},
		{"nats.mode=external", "nats.mode=external needs nats.url"},
		{"nats.mode=bogus", `nats.mode "bogus"`},
	} {
		_, err := run(helm, "template", "podlogs", chartDir, "--kube-version", kubeVersion, "-f", valuesFile("default"), "--set", c.set)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("--set %s: %v, want an error with %q", c.set, err, c.want)
		}
	}
}

// The command of issue 6 (and of the aws-for-fluent-bit habit) renders as expected.
func TestChartFluentBitStyleValues(t *testing.T) {
	ms := render(t, "default", "opensearch.host=search-logs-abc.us-west-2.es.amazonaws.com",
		"opensearch.awsRegion=us-west-2", "opensearch.httpUser=admin", "opensearch.httpPasswd=p@ss\\,word")
	var secret corev1.Secret
	ms.get(t, "Secret", "podlogs-opensearch", &secret)
	if secret.StringData["username"] != "admin" || secret.StringData["password"] != "p@ss,word" {
		t.Errorf("secret: %v", secret.StringData)
	}
	var d appsv1.Deployment
	ms.get(t, "Deployment", "podlogs-aggregator", &d)
	wantEnv(t, "aggregator", ms.env(t, d.Spec.Template.Spec.Containers[0]), map[string]string{
		"PODLOGS_OPENSEARCH_URL":      "https://search-logs-abc.us-west-2.es.amazonaws.com:443",
		"PODLOGS_OPENSEARCH_USER":     "secret:podlogs-opensearch/username",
		"PODLOGS_OPENSEARCH_PASSWORD": "secret:podlogs-opensearch/password",
		"PODLOGS_INDEX":               "eks-pod-logs",
		"PODLOGS_AWS_REGION":          "", // awsAuth is Off: basic auth, no signing
	})
}

func TestChartForwarder(t *testing.T) {
	for _, set := range valueSets {
		t.Run(set, func(t *testing.T) {
			ms := render(t, set)
			var ds appsv1.DaemonSet
			ms.get(t, "DaemonSet", "podlogs-forwarder", &ds)
			pod := ds.Spec.Template.Spec
			if len(pod.Containers) != 1 {
				t.Fatalf("containers: %d", len(pod.Containers))
			}
			c := pod.Containers[0]

			// Runs on every node, before the applications are evicted.
			if !slices.ContainsFunc(pod.Tolerations, func(tol corev1.Toleration) bool {
				return tol.Operator == corev1.TolerationOpExists && tol.Key == "" && tol.Effect == ""
			}) {
				t.Errorf("tolerations %v: want one that tolerates every taint", pod.Tolerations)
			}
			if pod.PriorityClassName != "podlogs-forwarder" || !ms.has("PriorityClass", "podlogs-forwarder") {
				t.Errorf("priority class %q", pod.PriorityClassName)
			}
			if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
				t.Error("the forwarder needs no API token; automountServiceAccountToken must be false")
			}
			if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
				t.Errorf("resources %v", c.Resources)
			}

			// Mounts: the logs read-only, the checkpoints in a hostPath.
			mounts := map[string]corev1.VolumeMount{}
			for _, m := range c.VolumeMounts {
				mounts[m.MountPath] = m
			}
			hostPaths := map[string]string{}
			for _, v := range pod.Volumes {
				if v.HostPath != nil {
					hostPaths[v.Name] = v.HostPath.Path
				}
			}
			for path, ro := range map[string]bool{"/var/log/pods": true, "/var/log/containers": true, "/var/lib/podlogs": false} {
				m, ok := mounts[path]
				if !ok || m.ReadOnly != ro {
					t.Errorf("mount %s: %+v, want readOnly=%v", path, m, ro)
					continue
				}
				if hostPaths[m.Name] != path {
					t.Errorf("mount %s: volume %s is hostPath %q", path, m.Name, hostPaths[m.Name])
				}
			}

			// Security: read-only root, no privilege escalation, no capabilities but the one
			// that reads root-only log files (as root), or none (non-root).
			sc := c.SecurityContext
			if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
				sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
				sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
				t.Fatalf("forwarder securityContext %+v", sc)
			}
			if pod.SecurityContext == nil || pod.SecurityContext.SeccompProfile == nil || pod.SecurityContext.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("seccomp profile: %+v", pod.SecurityContext)
			}
			if set == "chart-nats" { // runAsRoot: false
				if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || len(sc.Capabilities.Add) != 0 ||
					pod.SecurityContext.RunAsUser == nil || *pod.SecurityContext.RunAsUser == 0 ||
					!slices.Equal(pod.SecurityContext.SupplementalGroups, []int64{4}) {
					t.Errorf("non-root forwarder: %+v %+v", sc, pod.SecurityContext)
				}
				if len(pod.InitContainers) != 1 || !slices.Equal(pod.InitContainers[0].SecurityContext.Capabilities.Add, []corev1.Capability{"CHOWN"}) {
					t.Errorf("non-root forwarder: want one init container that may only chown the data dir: %+v", pod.InitContainers)
				}
				if m, ok := mounts["/var/lib/docker/containers"]; !ok || !m.ReadOnly {
					t.Errorf("docker containers dir: %+v", m)
				}
			} else {
				if sc.RunAsUser == nil || *sc.RunAsUser != 0 || !slices.Equal(sc.Capabilities.Add, []corev1.Capability{"DAC_READ_SEARCH"}) {
					t.Errorf("root forwarder: %+v", sc)
				}
				if len(pod.InitContainers) != 0 {
					t.Errorf("init containers %v", pod.InitContainers)
				}
			}

			// Probes on the admin port's health endpoints.
			probe(t, "forwarder liveness", c.LivenessProbe, "/healthz", "admin")
			probe(t, "forwarder readiness", c.ReadinessProbe, "/readyz", "admin")
			if len(c.Ports) != 1 || c.Ports[0].Name != "admin" || c.Ports[0].ContainerPort != 9371 {
				t.Errorf("ports %v", c.Ports)
			}

			want := map[string]string{
				"PODLOGS_NODE_NAME":  "field:spec.nodeName",
				"PODLOGS_AGGREGATOR": "dns:///podlogs-aggregator.opensearch-exporter.svc.cluster.local:7370",
				"PODLOGS_PODS_ROOT":  "/var/log/pods",
				"PODLOGS_DATA_DIR":   "/var/lib/podlogs",
				"PODLOGS_TLS_CERT":   "",
			}
			if set == "chart-nats" { // tls.enabled
				want["PODLOGS_TLS_CERT"] = "/etc/podlogs/tls/tls.crt"
				want["PODLOGS_TLS_KEY"] = "/etc/podlogs/tls/tls.key"
				want["PODLOGS_TLS_CA"] = "/etc/podlogs/tls/ca.crt"
				if m, ok := mounts["/etc/podlogs/tls"]; !ok || !m.ReadOnly {
					t.Errorf("tls mount %+v", m)
				}
			}
			wantEnv(t, "forwarder", ms.env(t, c), want)
		})
	}
}

func probe(t *testing.T, what string, p *corev1.Probe, path, port string) {
	t.Helper()
	if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != path || p.HTTPGet.Port.String() != port {
		t.Errorf("%s probe: %+v, want GET %s on port %s", what, p, path, port)
	}
}

func TestChartAggregator(t *testing.T) {
	for _, set := range valueSets {
		t.Run(set, func(t *testing.T) {
			ms := render(t, set)
			var d appsv1.Deployment
			ms.get(t, "Deployment", "podlogs-aggregator", &d)
			pod := d.Spec.Template.Spec
			c := pod.Containers[0]

			psc, sc := pod.SecurityContext, c.SecurityContext
			if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 ||
				sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
				sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
				sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 {
				t.Errorf("aggregator security: pod %+v container %+v", psc, sc)
			}
			probe(t, "aggregator liveness", c.LivenessProbe, "/healthz", "admin")
			probe(t, "aggregator readiness", c.ReadinessProbe, "/readyz", "admin")
			if len(pod.TopologySpreadConstraints) == 0 {
				t.Error("no topology spread constraints")
			}
			if pod.ServiceAccountName != "podlogs-aggregator" {
				t.Errorf("service account %q", pod.ServiceAccountName)
			}

			// Headless Service: forwarders resolve every ready replica.
			var svc corev1.Service
			ms.get(t, "Service", "podlogs-aggregator", &svc)
			if svc.Spec.ClusterIP != corev1.ClusterIPNone || svc.Spec.PublishNotReadyAddresses {
				t.Errorf("aggregator service must be headless, ready addresses only: %+v", svc.Spec)
			}
			if !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Port == 7370 && p.TargetPort.String() == "grpc" }) {
				t.Errorf("service ports %v", svc.Spec.Ports)
			}

			var pdb policyv1.PodDisruptionBudget
			ms.get(t, "PodDisruptionBudget", "podlogs-aggregator", &pdb)
			if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() != 1 {
				t.Errorf("pdb %+v", pdb.Spec)
			}

			var hpa autoscalingv2.HorizontalPodAutoscaler
			if set == "sigv4" { // autoscaling disabled, fixed replicas
				if ms.find(t, "HorizontalPodAutoscaler", "podlogs-aggregator", &hpa) {
					t.Error("HPA rendered with autoscaling.enabled=false")
				}
				if d.Spec.Replicas == nil || *d.Spec.Replicas != 3 {
					t.Errorf("replicas %v", d.Spec.Replicas)
				}
			} else {
				ms.get(t, "HorizontalPodAutoscaler", "podlogs-aggregator", &hpa)
				if d.Spec.Replicas != nil {
					t.Error("with the HPA the Deployment must not set replicas (upgrades would undo scaling)")
				}
				if hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas != 2 || hpa.Spec.ScaleTargetRef.Name != "podlogs-aggregator" ||
					hpa.Spec.Metrics[0].Resource == nil || hpa.Spec.Metrics[0].Resource.Name != corev1.ResourceCPU {
					t.Errorf("hpa %+v", hpa.Spec)
				}
				wantMetrics := 1
				if set == "external-nats" {
					wantMetrics = 2
					if m := hpa.Spec.Metrics[1]; m.Type != autoscalingv2.PodsMetricSourceType || m.Pods.Metric.Name != "podlogs_aggregator_records_acked_per_second" {
						t.Errorf("custom metric %+v", m)
					}
				}
				if len(hpa.Spec.Metrics) != wantMetrics {
					t.Errorf("hpa metrics %d, want %d", len(hpa.Spec.Metrics), wantMetrics)
				}
			}

			// Least RBAC: read pods (and namespaces when asked), nothing else.
			var role rbacv1.ClusterRole
			ms.get(t, "ClusterRole", "podlogs-aggregator", &role)
			wantRules := 1
			if set == "external-nats" {
				wantRules = 2
			}
			if len(role.Rules) != wantRules {
				t.Fatalf("rules %+v", role.Rules)
			}
			for i, r := range role.Rules {
				res := []string{"pods", "namespaces"}[i]
				if !slices.Equal(r.APIGroups, []string{""}) || !slices.Equal(r.Resources, []string{res}) ||
					!slices.Equal(r.Verbs, []string{"get", "list", "watch"}) || len(r.ResourceNames) != 0 {
					t.Errorf("rule %d: %+v, want get/list/watch %s", i, r, res)
				}
			}
			var binding rbacv1.ClusterRoleBinding
			ms.get(t, "ClusterRoleBinding", "podlogs-aggregator", &binding)
			if len(binding.Subjects) != 1 || binding.Subjects[0].Name != "podlogs-aggregator" || binding.Subjects[0].Namespace != namespace {
				t.Errorf("binding %+v", binding.Subjects)
			}

			env := ms.env(t, c)
			want := map[string]string{"PODLOGS_ID": "field:metadata.name", "PODLOGS_INDEX": "eks-pod-logs"}
			switch set {
			case "default":
				want["PODLOGS_OPENSEARCH_URL"] = "https://search-logs.example.com:443"
				want["PODLOGS_NATS_URL"] = natsURLs(3)
				want["PODLOGS_NATS_STREAM_REPLICAS"] = "3"
				want["PODLOGS_OPENSEARCH_USER"] = ""
				want["PODLOGS_AWS_REGION"] = ""
				want["PODLOGS_ENRICH_NAMESPACE_LABELS"] = ""
			case "external-nats":
				want["PODLOGS_OPENSEARCH_URL"] = "https://opensearch.logging.svc.cluster.local:9200"
				want["PODLOGS_NATS_URL"] = "nats://nats.nats.svc.cluster.local:4222"
				want["PODLOGS_NATS_STREAM_REPLICAS"] = "3"
				want["PODLOGS_OPENSEARCH_USER"] = "secret:podlogs-opensearch/username"
				want["PODLOGS_OPENSEARCH_PASSWORD"] = "secret:podlogs-opensearch/password"
				want["PODLOGS_ENRICH_NAMESPACE_LABELS"] = "true" // with rbac.namespaces
			case "chart-nats":
				want["PODLOGS_NATS_URL"] = natsURLs(3)
				want["PODLOGS_TLS_CERT"] = "/etc/podlogs/tls/tls.crt"
				want["PODLOGS_TLS_KEY"] = "/etc/podlogs/tls/tls.key"
				want["PODLOGS_TLS_CA"] = "/etc/podlogs/tls/ca.crt"
			case "sigv4":
				want["PODLOGS_OPENSEARCH_URL"] = "https://search-eks-logs-abc123xyz.us-west-2.es.amazonaws.com:443"
				want["PODLOGS_AWS_REGION"] = "us-west-2"
				want["PODLOGS_OPENSEARCH_USER"] = ""
				want["PODLOGS_OPENSEARCH_PASSWORD"] = ""
				want["PODLOGS_NATS_URL"] = "" // embedded
				want["PODLOGS_NATS_STREAM_REPLICAS"] = "1"
				var sa corev1.ServiceAccount
				ms.get(t, "ServiceAccount", "podlogs-aggregator", &sa)
				if sa.Annotations["eks.amazonaws.com/role-arn"] == "" {
					t.Error("SigV4: the aggregator's ServiceAccount carries no IAM role")
				}
				if ms.has("Secret", "podlogs-opensearch") {
					t.Error("SigV4 without basic auth renders a credentials Secret")
				}
			}
			if set != "chart-nats" {
				want["PODLOGS_TLS_CERT"] = ""
			}
			wantEnv(t, "aggregator", env, want)
		})
	}
}

func natsURLs(n int) string {
	var urls []string
	for i := range n {
		urls = append(urls, fmt.Sprintf("nats://podlogs-nats-%d.podlogs-nats.opensearch-exporter.svc.cluster.local:4222", i))
	}
	return strings.Join(urls, ",")
}

func TestChartNATS(t *testing.T) {
	for _, set := range valueSets {
		t.Run(set, func(t *testing.T) {
			ms := render(t, set)
			var sts appsv1.StatefulSet
			found := ms.find(t, "StatefulSet", "podlogs-nats", &sts)
			if chartRuns := set == "default" || set == "chart-nats"; found != chartRuns {
				t.Fatalf("NATS StatefulSet rendered: %v, want %v", found, chartRuns)
			}
			if !found {
				return
			}
			if sts.Spec.Replicas == nil || *sts.Spec.Replicas != 3 || sts.Spec.ServiceName != "podlogs-nats" {
				t.Errorf("statefulset %+v", sts.Spec)
			}
			if len(sts.Spec.VolumeClaimTemplates) != 1 || sts.Spec.VolumeClaimTemplates[0].Spec.Resources.Requests.Storage().IsZero() {
				t.Errorf("volume claims %+v", sts.Spec.VolumeClaimTemplates)
			}
			c := sts.Spec.Template.Spec.Containers[0]
			if sc := c.SecurityContext; sc == nil || !*sc.ReadOnlyRootFilesystem || *sc.AllowPrivilegeEscalation {
				t.Errorf("nats security %+v", sc)
			}
			if psc := sts.Spec.Template.Spec.SecurityContext; psc == nil || !*psc.RunAsNonRoot {
				t.Errorf("nats pod security %+v", psc)
			}
			var cm corev1.ConfigMap
			ms.get(t, "ConfigMap", "podlogs-nats", &cm)
			conf := cm.Data["nats.conf"]
			for _, want := range []string{"jetstream {", "store_dir: /data", "routes: [", natsRoute(0), natsRoute(2)} {
				if !strings.Contains(conf, want) {
					t.Errorf("nats.conf lacks %q:\n%s", want, conf)
				}
			}
			var svc corev1.Service
			ms.get(t, "Service", "podlogs-nats", &svc)
			if svc.Spec.ClusterIP != corev1.ClusterIPNone {
				t.Error("NATS service must be headless (stable per-server names for routes)")
			}
		})
	}
}

func natsRoute(i int) string {
	return fmt.Sprintf("nats://podlogs-nats-%d.podlogs-nats.opensearch-exporter.svc.cluster.local:6222", i)
}

// CRD objects (no schema among Kubernetes' own) are checked here.
func TestChartCustomResources(t *testing.T) {
	type object struct {
		APIVersion string         `json:"apiVersion"`
		Kind       string         `json:"kind"`
		Spec       map[string]any `json:"spec"`
	}
	ms := render(t, "external-nats")
	for _, name := range []string{"podlogs-aggregator", "podlogs-forwarder"} {
		var sm object
		var raw map[string]any
		ms.get(t, "ServiceMonitor", name, &raw)
		b, _ := json.Marshal(raw)
		json.Unmarshal(b, &sm)
		if sm.APIVersion != "monitoring.coreos.com/v1" {
			t.Errorf("%s: apiVersion %s", name, sm.APIVersion)
		}
		eps, _ := sm.Spec["endpoints"].([]any)
		if len(eps) != 1 || eps[0].(map[string]any)["port"] != "admin" || eps[0].(map[string]any)["path"] != "/metrics" {
			t.Errorf("%s endpoints %v", name, sm.Spec["endpoints"])
		}
	}
	var svc corev1.Service
	ms.get(t, "Service", "podlogs-forwarder-metrics", &svc)

	ms = render(t, "chart-nats")
	for name, usage := range map[string]string{"podlogs-aggregator-tls": "server auth", "podlogs-forwarder-tls": "client auth"} {
		var cert map[string]any
		ms.get(t, "Certificate", name, &cert)
		spec := cert["spec"].(map[string]any)
		if spec["secretName"] != name || !slices.Contains(spec["usages"].([]any), any(usage)) {
			t.Errorf("certificate %s: %v", name, spec)
		}
		if name == "podlogs-aggregator-tls" && !slices.Contains(spec["dnsNames"].([]any), any("podlogs-aggregator.opensearch-exporter.svc.cluster.local")) {
			t.Errorf("aggregator certificate does not name the address forwarders dial: %v", spec["dnsNames"])
		}
	}
	var d appsv1.Deployment
	ms.get(t, "Deployment", "podlogs-aggregator", &d)
	if !slices.ContainsFunc(d.Spec.Template.Spec.Volumes, func(v corev1.Volume) bool {
		return v.Secret != nil && v.Secret.SecretName == "podlogs-aggregator-tls"
	}) {
		t.Error("aggregator does not mount its certificate Secret")
	}
}

// Every kind the chart renders, per value set: nothing missing, nothing unexpected.
func TestChartObjects(t *testing.T) {
	common := []string{
		"ConfigMap/podlogs-aggregator", "ConfigMap/podlogs-forwarder", "DaemonSet/podlogs-forwarder",
		"Deployment/podlogs-aggregator", "Service/podlogs-aggregator", "PodDisruptionBudget/podlogs-aggregator",
		"ServiceAccount/podlogs-aggregator", "ServiceAccount/podlogs-forwarder", "ClusterRole/podlogs-aggregator",
		"ClusterRoleBinding/podlogs-aggregator", "PriorityClass/podlogs-forwarder",
	}
	nats := []string{"StatefulSet/podlogs-nats", "Service/podlogs-nats", "ConfigMap/podlogs-nats", "PodDisruptionBudget/podlogs-nats"}
	hpa := []string{"HorizontalPodAutoscaler/podlogs-aggregator"}
	secret := []string{"Secret/podlogs-opensearch"}
	want := map[string][]string{
		"default":       slices.Concat(common, nats, hpa),
		"external-nats": slices.Concat(common, hpa, secret, []string{"Service/podlogs-forwarder-metrics", "ServiceMonitor/podlogs-aggregator", "ServiceMonitor/podlogs-forwarder"}),
		"chart-nats":    slices.Concat(common, nats, hpa, secret, []string{"Certificate/podlogs-aggregator-tls", "Certificate/podlogs-forwarder-tls"}),
		"sigv4":         common,
	}
	for _, set := range valueSets {
		got := render(t, set).kinds()
		slices.Sort(got)
		w := slices.Clone(want[set])
		slices.Sort(w)
		if !slices.Equal(got, w) {
			t.Errorf("%s renders\n  %v\nwant\n  %v", set, got, w)
		}
	}
}
