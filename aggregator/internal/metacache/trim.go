package metacache

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podlogs/podlogs/aggregator/internal/enrich"
)

// TrimPod is the pod informer's transform: it keeps what enrichment and the
// informer need (identity, resource version, labels, annotations, node,
// container names, images and statuses) and drops the rest (managed fields,
// volumes, env, probes…), which is most of a pod's memory.
func TrimPod(obj any) (any, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil // a DeletedFinalStateUnknown: passed on as it is
	}
	t := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID, ResourceVersion: pod.ResourceVersion,
			Labels: pod.Labels, DeletionTimestamp: pod.DeletionTimestamp,
		},
		Spec: corev1.PodSpec{NodeName: pod.Spec.NodeName},
	}
	if len(pod.Annotations) > 0 {
		t.Annotations = make(map[string]string, len(pod.Annotations))
		for k, v := range pod.Annotations {
			if !enrich.Ignored(k) {
				t.Annotations[k] = v
			}
		}
	}
	for _, c := range pod.Spec.InitContainers {
		t.Spec.InitContainers = append(t.Spec.InitContainers, corev1.Container{Name: c.Name, Image: c.Image})
	}
	for _, c := range pod.Spec.Containers {
		t.Spec.Containers = append(t.Spec.Containers, corev1.Container{Name: c.Name, Image: c.Image})
	}
	for _, c := range pod.Spec.EphemeralContainers {
		t.Spec.EphemeralContainers = append(t.Spec.EphemeralContainers, corev1.EphemeralContainer{
			EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: c.Name, Image: c.Image},
		})
	}
	t.Status.InitContainerStatuses = trimStatuses(pod.Status.InitContainerStatuses)
	t.Status.ContainerStatuses = trimStatuses(pod.Status.ContainerStatuses)
	t.Status.EphemeralContainerStatuses = trimStatuses(pod.Status.EphemeralContainerStatuses)
	return t, nil
}

func trimStatuses(in []corev1.ContainerStatus) []corev1.ContainerStatus {
	if len(in) == 0 {
		return nil
	}
	out := make([]corev1.ContainerStatus, len(in))
	for i, s := range in {
		out[i] = corev1.ContainerStatus{
			Name: s.Name, ContainerID: s.ContainerID, Image: s.Image, ImageID: s.ImageID, RestartCount: s.RestartCount,
		}
		if term := s.LastTerminationState.Terminated; term != nil {
			out[i].LastTerminationState.Terminated = &corev1.ContainerStateTerminated{ContainerID: term.ContainerID}
		}
	}
	return out
}

// TrimNamespace is the namespace informer's transform: name, resource
// version and labels.
func TrimNamespace(obj any) (any, error) {
	ns, ok := obj.(*corev1.Namespace)
	if !ok {
		return obj, nil
	}
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: ns.Name, UID: ns.UID, ResourceVersion: ns.ResourceVersion, Labels: ns.Labels,
	}}, nil
}
