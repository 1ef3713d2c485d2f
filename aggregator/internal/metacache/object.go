package metacache

import (
	"sync/atomic"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podlogs/podlogs/aggregator/internal/enrich"
)

// podObject is what the pod informer's store holds in place of a pod: its
// resource version and its rendering, which has the identity the store's
// key function and the handlers need. A pod, even trimmed, is a few
// kilobytes; this is 24 bytes besides the rendering the cache needs anyway.
//
// It implements metav1.Object because the informer reads names and
// resource versions through meta.Accessor; the other getters return zero
// values and the setters do nothing (nothing calls them: the informer never
// modifies what it stores).
type podObject struct {
	resourceVersion string
	// pod is the current rendering, never nil: replaced when the
	// namespace's labels change, read by the event handlers.
	pod atomic.Pointer[enrich.Pod]
}

var _ metav1.Object = (*podObject)(nil)

func newPodObject(p *enrich.Pod, resourceVersion string) *podObject {
	o := &podObject{resourceVersion: resourceVersion}
	o.pod.Store(p)
	return o
}

// A pod's namespace, name and uid are its rendering's: renderings differ in
// their namespace labels only.
func (o *podObject) GetNamespace() string       { return o.pod.Load().Namespace }
func (o *podObject) GetName() string            { return o.pod.Load().Name }
func (o *podObject) GetUID() types.UID          { return types.UID(o.pod.Load().UID) }
func (o *podObject) GetResourceVersion() string { return o.resourceVersion }

func (o *podObject) GetGenerateName() string                       { return "" }
func (o *podObject) GetGeneration() int64                          { return 0 }
func (o *podObject) GetSelfLink() string                           { return "" }
func (o *podObject) GetCreationTimestamp() metav1.Time             { return metav1.Time{} }
func (o *podObject) GetDeletionTimestamp() *metav1.Time            { return nil }
func (o *podObject) GetDeletionGracePeriodSeconds() *int64         { return nil }
func (o *podObject) GetLabels() map[string]string                  { return nil }
func (o *podObject) GetAnnotations() map[string]string             { return nil }
func (o *podObject) GetFinalizers() []string                       { return nil }
func (o *podObject) GetOwnerReferences() []metav1.OwnerReference   { return nil }
func (o *podObject) GetManagedFields() []metav1.ManagedFieldsEntry { return nil }

func (o *podObject) SetNamespace(string)                          {}
func (o *podObject) SetName(string)                               {}
func (o *podObject) SetGenerateName(string)                       {}
func (o *podObject) SetUID(types.UID)                             {}
func (o *podObject) SetResourceVersion(string)                    {}
func (o *podObject) SetGeneration(int64)                          {}
func (o *podObject) SetSelfLink(string)                           {}
func (o *podObject) SetCreationTimestamp(metav1.Time)             {}
func (o *podObject) SetDeletionTimestamp(*metav1.Time)            {}
func (o *podObject) SetDeletionGracePeriodSeconds(*int64)         {}
func (o *podObject) SetLabels(map[string]string)                  {}
func (o *podObject) SetAnnotations(map[string]string)             {}
func (o *podObject) SetFinalizers([]string)                       {}
func (o *podObject) SetOwnerReferences([]metav1.OwnerReference)   {}
func (o *podObject) SetManagedFields([]metav1.ManagedFieldsEntry) {}
