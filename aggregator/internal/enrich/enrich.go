// Package enrich renders what a document says about its pod: the members of
// the "kubernetes" object that come from the Kubernetes API (labels,
// annotations, namespace labels, docker_id, container_hash,
// container_image) and the pod's podlogs.io/* annotations. It is pure: no
// I/O, no clocks.
//
// Rendering happens once per pod change (metacache calls Render from its
// informer handlers); a record then costs two slice copies. The output is
// immutable once returned and shared by every stream.
//
// Keys: label and annotation keys such as "app" and "app.kubernetes.io/name"
// break a dynamic mapping. KeysKept writes them as they are, for the index
// template's flat_object mapping (the default, chosen by
// TestKeyStyleAgainstOpenSearch); KeysUnderscore replaces dots by '_' (Fluent
// Bit's Replace_Dots), for a mapping of one keyword field per key. Keys that
// become equal after replacement are written once (the first in sort order).
package enrich

import (
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/podlogs/podlogs/aggregator/internal/document"
)

// Pod annotations podlogs reads.
const (
	// AnnotationExclude "true" drops the pod's lines (counted).
	AnnotationExclude = "podlogs.io/exclude"
	// AnnotationParser "json" parses the pod's JSON lines into "data";
	// "text" (or "none") does not, whatever the default.
	AnnotationParser = "podlogs.io/parser"
	// AnnotationMirror on a mirror pod holds the hash kubelet uses as the
	// static pod's uid in log paths.
	AnnotationMirror = "kubernetes.io/config.mirror"
)

// KeyStyle says how label and annotation keys are written.
type KeyStyle int

const (
	// KeysKept writes keys as they are (mapped as flat_object).
	KeysKept KeyStyle = iota
	// KeysUnderscore replaces every '.' in a key by '_'.
	KeysUnderscore
)

// ParseKeyStyle reads "flat_object" or "underscore".
func ParseKeyStyle(s string) (KeyStyle, bool) {
	switch s {
	case "flat_object", "kept":
		return KeysKept, true
	case "underscore":
		return KeysUnderscore, true
	}
	return 0, false
}

func (k KeyStyle) String() string {
	if k == KeysUnderscore {
		return "underscore"
	}
	return "flat_object"
}

// Options say what is rendered.
type Options struct {
	Labels          bool
	Annotations     bool
	NamespaceLabels bool
	Keys            KeyStyle
	// MaxKeys caps labels, annotations and namespace labels each (the
	// first keys in sort order are kept); 0 keeps all.
	MaxKeys int
	// ParseJSON is the default for pods without a podlogs.io/parser
	// annotation.
	ParseJSON bool
	// MaxDataFields caps the values kept under "data".
	MaxDataFields int
}

// Pod is a pod's rendered metadata.
type Pod struct {
	UID       string
	Namespace string
	Name      string
	// MirrorOf is the static pod's uid for a mirror pod ("" otherwise):
	// kubelet names the log directory after it.
	MirrorOf string
	// Exclude says the pod's lines are dropped on purpose.
	Exclude bool
	// DataFields is document.Meta.DataFields for this pod's lines.
	DataFields int
	// Extra is document.Meta.PodExtra.
	Extra []byte
	// KeysCut counts keys left out by MaxKeys.
	KeysCut    int
	containers []container
}

// container is one container's rendering at one restart count.
type container struct {
	name    string
	restart int32 // -1: any restart whose id is not known
	extra   []byte
}

// Container returns document.Meta.ContainerExtra for the named container at
// the restart count of its log file; known says the status names that
// restart. A restart the status does not name (yet) gets the image but no
// docker_id; a container the pod does not have gets nil.
func (p *Pod) Container(name string, restart int) (extra []byte, known bool) {
	var fallback []byte
	for i := range p.containers {
		c := &p.containers[i]
		if c.name != name {
			continue
		}
		if int(c.restart) == restart {
			return c.extra, true
		}
		if c.restart < 0 {
			fallback = c.extra
		}
	}
	return fallback, false
}

// Restarts reports whether the pod's status knows the given restart of the
// named container, or a later one.
func (p *Pod) Restarts(name string, restart int) bool {
	for i := range p.containers {
		if c := &p.containers[i]; c.name == name && int(c.restart) >= restart {
			return true
		}
	}
	return false
}

// Render renders pod; nsLabels are its namespace's labels (nil when
// unknown or not wanted).
func Render(pod *corev1.Pod, nsLabels map[string]string, opts Options) *Pod {
	p := &Pod{
		UID: string(pod.UID), Namespace: pod.Namespace, Name: pod.Name,
		MirrorOf: pod.Annotations[AnnotationMirror],
		Exclude:  pod.Annotations[AnnotationExclude] == "true",
	}
	parse := opts.ParseJSON
	switch strings.ToLower(pod.Annotations[AnnotationParser]) {
	case "json":
		parse = true
	case "text", "none":
		parse = false
	}
	if parse {
		p.DataFields = max(opts.MaxDataFields, 1)
	}
	var b []byte
	if opts.Labels {
		b = appendMap(b, "labels", pod.Labels, opts, &p.KeysCut)
	}
	if opts.Annotations {
		b = appendMap(b, "annotations", pod.Annotations, opts, &p.KeysCut)
	}
	if opts.NamespaceLabels {
		b = appendMap(b, "namespace_labels", nsLabels, opts, &p.KeysCut)
	}
	p.Extra = b

	images := map[string]string{}
	addSpec := func(name, image string) {
		images[name] = image
		p.containers = append(p.containers, container{name: name, restart: -1, extra: appendImage(nil, image, "")})
	}
	for _, c := range pod.Spec.InitContainers {
		addSpec(c.Name, c.Image)
	}
	for _, c := range pod.Spec.Containers {
		addSpec(c.Name, c.Image)
	}
	for _, c := range pod.Spec.EphemeralContainers {
		addSpec(c.Name, c.Image)
	}
	for _, list := range [][]corev1.ContainerStatus{pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses, pod.Status.EphemeralContainerStatuses} {
		for i := range list {
			s := &list[i]
			image := images[s.Name]
			if image == "" {
				image = s.Image
			}
			if s.ContainerID != "" {
				p.containers = append(p.containers, container{
					name: s.Name, restart: s.RestartCount, extra: appendContainer(nil, s.ContainerID, s.ImageID, image),
				})
			}
			// The previous run's log file (restart-1) is often still being read.
			if t := s.LastTerminationState.Terminated; t != nil && t.ContainerID != "" && s.RestartCount > 0 {
				p.containers = append(p.containers, container{
					name: s.Name, restart: s.RestartCount - 1, extra: appendContainer(nil, t.ContainerID, s.ImageID, image),
				})
			}
		}
	}
	return p
}

func appendContainer(b []byte, containerID, imageID, image string) []byte {
	b = append(b, `,"docker_id":`...)
	b = document.AppendString(b, trimScheme(containerID))
	return appendImage(b, image, imageID)
}

func appendImage(b []byte, image, imageID string) []byte {
	if imageID != "" {
		b = append(b, `,"container_hash":`...)
		b = document.AppendString(b, trimScheme(imageID))
	}
	if image != "" {
		b = append(b, `,"container_image":`...)
		b = document.AppendString(b, image)
	}
	return b
}

// trimScheme drops a runtime prefix: "containerd://9c1e…" is "9c1e…",
// "docker-pullable://repo@sha256:…" is "repo@sha256:…".
func trimScheme(s string) string {
	if _, after, ok := strings.Cut(s, "://"); ok {
		return after
	}
	return s
}

// ignoredAnnotations are never rendered: they are large and say nothing a
// log reader needs (the transform in metacache drops them too).
var ignoredAnnotations = map[string]bool{
	"kubectl.kubernetes.io/last-applied-configuration": true,
}

// Ignored reports whether an annotation is never rendered.
func Ignored(key string) bool { return ignoredAnnotations[key] }

func appendMap(b []byte, field string, m map[string]string, opts Options, cut *int) []byte {
	if len(m) == 0 {
		return b
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		if !ignoredAnnotations[k] {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return b
	}
	slices.Sort(keys)
	b = append(b, `,"`...)
	b = append(b, field...)
	b = append(b, `":{`...)
	seen := map[string]bool{}
	n := 0
	for _, k := range keys {
		out := k
		if opts.Keys == KeysUnderscore {
			out = strings.ReplaceAll(k, ".", "_")
		}
		if seen[out] {
			continue
		}
		if opts.MaxKeys > 0 && n >= opts.MaxKeys {
			*cut += len(keys) - n
			break
		}
		seen[out] = true
		if n > 0 {
			b = append(b, ',')
		}
		n++
		b = document.AppendString(b, out)
		b = append(b, ':')
		b = document.AppendString(b, m[k])
	}
	return append(b, '}')
}

// String is for logs and test failures.
func (p *Pod) String() string {
	return p.Namespace + "/" + p.Name + " (" + p.UID + ", " + strconv.Itoa(len(p.containers)) + " renderings)"
}
