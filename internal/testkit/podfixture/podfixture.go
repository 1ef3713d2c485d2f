// Package podfixture builds Kubernetes pods for tests and benchmarks: the
// same pods for the metadata cache's benchmarks (metacache) and for the
// aggregator's memory in a real API server (bench).
package podfixture

import (
	"crypto/sha256"
	"fmt"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// RealisticPod is the i-th pod of an EKS cluster as the API server returns
// it, in namespace: Deployments of 10 replicas (pods 10d to 10d+9 are
// Deployment d's; the pods of one ReplicaSet share their labels,
// annotations and images, so put them in one namespace), each pod with
// Helm's labels, a config checksum and Prometheus annotations, an owner
// reference, an init container, the application and a sidecar, managed
// fields, env, volumes, probes and a full status; one pod in ten has
// restarted. Most of it is trimmed: the volumes name no source, and the
// managed fields are filler of their usual size, not a valid field set.
func RealisticPod(i int, namespace string) *corev1.Pod {
	d := i / 10 // the Deployment
	app := fmt.Sprintf("catalog-%d", d)
	hash := fmt.Sprintf("%x", sha256.Sum256([]byte(app)))
	templateHash := hash[:9]
	name := fmt.Sprintf("%s-%s-%05x", app, templateHash, i%(1<<20))
	id := func(what string) string {
		return fmt.Sprintf("containerd://%x", sha256.Sum256([]byte(name+"/"+what)))
	}
	image := fmt.Sprintf("123456789012.dkr.ecr.us-west-2.amazonaws.com/retail/%s:1.%d.0", app, d%7)
	imageID := fmt.Sprintf("123456789012.dkr.ecr.us-west-2.amazonaws.com/retail/%s@sha256:%s", app, hash)
	const (
		sidecar   = "public.ecr.aws/aws-observability/aws-otel-collector:v0.43.1"
		sidecarID = "public.ecr.aws/aws-observability/aws-otel-collector@sha256:5e9d7b1c0b2f6f3e4f2b1d7c9a8e6f5d4c3b2a1908f7e6d5c4b3a29180f7e6d5"
		initImage = "public.ecr.aws/docker/library/busybox:1.36"
		initID    = "public.ecr.aws/docker/library/busybox@sha256:9ae97d36d26566ff84e8893c64a6dc4fe8ca6d1144bf5b87b2b85a32def253c7"
	)
	started := metav1.NewTime(time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC))
	restarts := int32(0)
	var last corev1.ContainerState
	if i%10 == 3 {
		restarts = 1
		last.Terminated = &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "OOMKilled", ContainerID: id("catalog-0"), StartedAt: started, FinishedAt: started}
	}
	fields := make([]byte, 0, 1536)
	for len(fields) < 1500 {
		fields = append(fields, `{"f:metadata":{"f:labels":{".":{},"f:app.kubernetes.io/name":{}}},"f:spec":{"f:containers":{}}}`...)
	}
	probe := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/health", Port: intstr.FromInt32(8080)}}, PeriodSeconds: 10}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, GenerateName: app + "-" + templateHash + "-", Namespace: namespace,
			UID:             types.UID(fmt.Sprintf("%s-%s-%s-%s-%s", hash[9:17], hash[17:21], hash[21:25], hash[25:29], fmt.Sprintf("%012x", i))),
			ResourceVersion: strconv.Itoa(40000000 + i), CreationTimestamp: started,
			Labels: map[string]string{
				"app.kubernetes.io/name": app, "app.kubernetes.io/instance": app, "app.kubernetes.io/component": "service",
				"app.kubernetes.io/part-of": "retail-store", "app.kubernetes.io/managed-by": "Helm", "helm.sh/chart": "catalog-1.2.0",
				"pod-template-hash": templateHash,
			},
			Annotations: map[string]string{
				"prometheus.io/scrape": "true", "prometheus.io/port": "8080", "prometheus.io/path": "/metrics",
				"checksum/config":                   hash,
				"kubectl.kubernetes.io/restartedAt": "2026-11-20T08:00:00Z",
			},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: app + "-" + templateHash,
				UID: types.UID("5f3c2b1a-0e9d-4c8b-a7f6-" + hash[:12]), Controller: new(true), BlockOwnerDeletion: new(true)}},
			ManagedFields: []metav1.ManagedFieldsEntry{
				{Manager: "kube-controller-manager", Operation: "Update", APIVersion: "v1", FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: fields}},
				{Manager: "kubelet", Operation: "Update", APIVersion: "v1", FieldsType: "FieldsV1", Subresource: "status", FieldsV1: &metav1.FieldsV1{Raw: fields}},
			},
		},
		Spec: corev1.PodSpec{
			NodeName:           fmt.Sprintf("ip-10-42-%d-%d.us-west-2.compute.internal", i%256, i%7),
			ServiceAccountName: app,
			InitContainers:     []corev1.Container{{Name: "wait-for-db", Image: initImage, Command: []string{"sh", "-c", "until nc -z catalog-mysql 3306; do sleep 1; done"}}},
			Containers: []corev1.Container{{
				Name: "catalog", Image: image,
				Env:            []corev1.EnvVar{{Name: "DB_ENDPOINT", Value: "catalog-mysql:3306"}, {Name: "DB_USER", Value: "catalog"}},
				Ports:          []corev1.ContainerPort{{ContainerPort: 8080, Name: "http", Protocol: corev1.ProtocolTCP}},
				LivenessProbe:  probe,
				ReadinessProbe: probe,
				VolumeMounts:   []corev1.VolumeMount{{Name: "tmp", MountPath: "/tmp"}, {Name: "kube-api-access-x7k2p", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount", ReadOnly: true}},
			}, {
				Name: "otel-collector", Image: sidecar, Args: []string{"--config=/conf/collector.yaml"},
				VolumeMounts: []corev1.VolumeMount{{Name: "otel-config", MountPath: "/conf"}},
			}},
			Volumes: []corev1.Volume{{Name: "tmp"}, {Name: "otel-config"}, {Name: "kube-api-access-x7k2p"}},
		},
		Status: corev1.PodStatus{
			Phase: corev1.PodRunning, HostIP: "10.42.1.17", PodIP: fmt.Sprintf("10.42.%d.%d", i/256%256, i%256), StartTime: &started, QOSClass: corev1.PodQOSBurstable,
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}, {Type: corev1.ContainersReady, Status: corev1.ConditionTrue},
				{Type: corev1.PodInitialized, Status: corev1.ConditionTrue}, {Type: corev1.PodScheduled, Status: corev1.ConditionTrue}},
			InitContainerStatuses: []corev1.ContainerStatus{{
				Name: "wait-for-db", Ready: true, ContainerID: id("wait-for-db"), Image: initImage, ImageID: initID,
				State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Completed", ContainerID: id("wait-for-db")}},
			}},
			ContainerStatuses: []corev1.ContainerStatus{{
				Name: "catalog", RestartCount: restarts, Ready: true, ContainerID: id("catalog-" + strconv.Itoa(int(restarts))),
				Image: image, ImageID: imageID, LastTerminationState: last,
				State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: started}},
			}, {
				Name: "otel-collector", Ready: true, ContainerID: id("otel-collector"), Image: sidecar, ImageID: sidecarID,
				State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: started}},
			}},
		},
	}
}
