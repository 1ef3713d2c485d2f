// Package enrich renders what a document says about its pod: the members of
// the "kubernetes" object that come from the Kubernetes API (labels,
// annotations, namespace labels, docker_id, container_hash,
// container_image) and the pod's podlogs.io/* annotations. It is pure: no
// I/O, no clocks.
//
// Rendering happens once per pod change (metacache renders in its
// informer's transform); a record then costs three slice copies. The output is
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
	"math"
	"slices"
	"strconv"
	"strings"
	"unique"
	"unsafe"

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
//
// Memory: a cache holds one Pod per pod, so a Pod keeps only what a record
// needs, and shares what pods have in common: the pods of one ReplicaSet have
// the same labels, annotations and images, so their renderings are
// canonical copies (package unique) that every pod with the same bytes
// points to; what is a pod's own is its identity and container ids.
type Pod struct {
	UID        string
	Namespace  string
	Name       string
	containers []container
	r          unique.Handle[rendering]
	// A Pod is 80 bytes.
}

// rendering is what a pod has in common with the pods of the same labels,
// annotations and namespace labels.
type rendering struct {
	// own is the pod's labels and annotations; extra is own followed by
	// nsExtra, its namespace's labels. The handles keep the canonical
	// copies (and so their sharing) alive.
	own, extra, nsExtra unique.Handle[string]
	mirrorOf            string
	// keysCut counts keys left out by MaxKeys, nsCut of them its
	// namespace's.
	dataFields, keysCut, nsCut int32
	exclude                    bool
}

// Extra is document.Meta.PodExtra: shared, never to be modified.
func (p *Pod) Extra() []byte { return bytesOf(p.r.Value().extra.Value()) }

// DataFields is document.Meta.DataFields for this pod's lines.
func (p *Pod) DataFields() int { return int(p.r.Value().dataFields) }

// Exclude says the pod's lines are dropped on purpose.
func (p *Pod) Exclude() bool { return p.r.Value().exclude }

// MirrorOf is the static pod's uid for a mirror pod ("" otherwise):
// kubelet names the log directory after it.
func (p *Pod) MirrorOf() string { return p.r.Value().mirrorOf }

// KeysCut counts the keys left out by MaxKeys.
func (p *Pod) KeysCut() int { return int(p.r.Value().keysCut) }

// container is one container's rendering: its image, and its ids at the
// restart counts the status names.
type container struct {
	name unique.Handle[string]
	// image is `,"container_hash":…,"container_image":…` for the runs the
	// status names, image[from:] (the spec's image alone) for the others;
	// zero: none.
	image unique.Handle[string]
	// ids[:split] is `,"docker_id":…` for the status's restart count,
	// ids[split:] for the one before, while its log file may still be read
	// (empty: unknown). One string, as most pods have not restarted.
	ids         string
	restart     int32
	split, from uint16
	// A container is 40 bytes: the cache holds a few per pod.
}

func (c *container) id() string   { return c.ids[:c.split] }
func (c *container) prev() string { return c.ids[c.split:] }

// Namespace is a namespace's rendered labels, shared by its pods; the zero
// value renders nothing.
type Namespace struct {
	extra   unique.Handle[string] // zero: none
	keysCut int32
}

// RenderNamespace renders a namespace's labels (for Options.NamespaceLabels).
func RenderNamespace(labels map[string]string, opts Options) Namespace {
	var ns Namespace
	if opts.NamespaceLabels {
		cut := 0
		ns.extra = fragment(appendMap(nil, "namespace_labels", labels, opts, &cut))
		ns.keysCut = int32(cut)
	}
	return ns
}

// Container returns document.Meta.ContainerExtra (the id) and ImageExtra
// for the named container at the restart count of its log file; known says
// the status names that restart. A restart the status does not name (yet)
// gets the image but no docker_id; a container the pod does not have gets
// nil. Both are shared, never to be modified.
func (p *Pod) Container(name string, restart int) (id, image []byte, known bool) {
	for i := range p.containers {
		c := &p.containers[i]
		if c.name.Value() != name {
			continue
		}
		image = shared(c.image)
		switch {
		case c.split > 0 && int(c.restart) == restart:
			return bytesOf(c.id()), image, true
		case int(c.split) < len(c.ids) && int(c.restart)-1 == restart:
			return bytesOf(c.prev()), image, true
		}
		return nil, image[c.from:], false
	}
	return nil, nil, false
}

// Restarts reports whether the pod's status knows the given restart of the
// named container, or a later one.
func (p *Pod) Restarts(name string, restart int) bool {
	for i := range p.containers {
		c := &p.containers[i]
		if c.name.Value() == name && (c.split > 0 && int(c.restart) >= restart || int(c.split) < len(c.ids) && int(c.restart)-1 >= restart) {
			return true
		}
	}
	return false
}

// Render renders pod; nsLabels are its namespace's labels (nil when
// unknown or not wanted).
func Render(pod *corev1.Pod, nsLabels map[string]string, opts Options) *Pod {
	return RenderWith(pod, RenderNamespace(nsLabels, opts), opts)
}

// RenderWith renders pod with its namespace's rendered labels.
func RenderWith(pod *corev1.Pod, ns Namespace, opts Options) *Pod {
	// Copies, so that no string keeps the decoded pod's memory (and its
	// pages) in use; the namespace is one copy for all its pods.
	p := &Pod{UID: strings.Clone(string(pod.UID)), Namespace: unique.Make(pod.Namespace).Value(), Name: strings.Clone(pod.Name)}
	r := rendering{
		mirrorOf: pod.Annotations[AnnotationMirror],
		exclude:  pod.Annotations[AnnotationExclude] == "true",
	}
	parse := opts.ParseJSON
	switch strings.ToLower(pod.Annotations[AnnotationParser]) {
	case "json":
		parse = true
	case "text", "none":
		parse = false
	}
	if parse {
		r.dataFields = int32(max(opts.MaxDataFields, 1))
	}
	var b []byte
	cut := 0
	if opts.Labels {
		b = appendMap(b, "labels", pod.Labels, opts, &cut)
	}
	if opts.Annotations {
		b = appendMap(b, "annotations", pod.Annotations, opts, &cut)
	}
	r.keysCut = int32(cut)
	r.own = unique.Make(string(b))
	p.r = r.withNamespace(ns)

	// One entry per container, in the order of the spec, then of the
	// statuses for containers the spec does not name.
	var index map[string]int
	entry := func(name string) *container {
		if i, ok := index[name]; ok {
			return &p.containers[i]
		}
		if index == nil {
			index = map[string]int{}
		}
		index[name] = len(p.containers)
		p.containers = append(p.containers, container{name: unique.Make(name), restart: -1})
		return &p.containers[len(p.containers)-1]
	}
	n := len(pod.Spec.InitContainers) + len(pod.Spec.Containers) + len(pod.Spec.EphemeralContainers)
	p.containers = make([]container, 0, n)
	images := make(map[string]string, n)
	addSpec := func(name, image string) {
		images[name] = image
		entry(name).image = fragment(appendImage(nil, image, ""))
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
			prev := ""
			// The previous run's log file (restart-1) is often still being read.
			if t := s.LastTerminationState.Terminated; t != nil && t.ContainerID != "" && s.RestartCount > 0 {
				prev = t.ContainerID
			}
			if s.ContainerID == "" && prev == "" {
				continue
			}
			image := images[s.Name]
			specImage := image != ""
			if image == "" {
				image = s.Image
			}
			c := entry(s.Name)
			c.restart = s.RestartCount
			// Lengths are checked as they go into uint16: ids and digests
			// are far shorter (a malformed one is left out).
			b := appendImage(nil, "", s.ImageID)
			if len(b) > math.MaxUint16 {
				b = b[:0]
			}
			c.from = uint16(len(b))
			b = appendImage(b, image, "")
			if !specImage {
				c.from = uint16(min(len(b), math.MaxUint16)) // no image for other runs
			}
			c.image = fragment(b)
			var ids []byte
			if s.ContainerID != "" {
				ids = appendID(ids, s.ContainerID)
			}
			if len(ids) > math.MaxUint16 {
				ids = ids[:0]
			}
			c.split = uint16(len(ids))
			if prev != "" {
				ids = appendID(ids, prev)
			}
			c.ids = string(ids)
		}
	}
	p.containers = slices.Clip(p.containers)
	return p
}

// WithNamespace returns p rendered with ns, its namespace's labels (p
// itself if they are the ones it has).
func (p *Pod) WithNamespace(ns Namespace) *Pod {
	if p.HasNamespace(ns) {
		return p
	}
	q := *p
	q.r = p.r.Value().withNamespace(ns)
	return &q
}

// HasNamespace reports whether p is rendered with ns.
func (p *Pod) HasNamespace(ns Namespace) bool {
	r := p.r.Value()
	return r.nsExtra == ns.extra && r.nsCut == ns.keysCut
}

// withNamespace returns the canonical r with ns, a namespace's labels, in
// place of the ones it has.
func (r rendering) withNamespace(ns Namespace) unique.Handle[rendering] {
	r.keysCut += ns.keysCut - r.nsCut
	r.nsExtra, r.nsCut = ns.extra, ns.keysCut
	r.extra = r.own
	if ns.extra != (unique.Handle[string]{}) {
		r.extra = unique.Make(r.own.Value() + ns.extra.Value())
	}
	return unique.Make(r)
}

// fragment returns b's canonical copy; zero for none.
func fragment(b []byte) unique.Handle[string] {
	if len(b) == 0 {
		return unique.Handle[string]{}
	}
	return unique.Make(string(b))
}

// shared returns a fragment's bytes, nil for the zero handle.
func shared(h unique.Handle[string]) []byte {
	if h == (unique.Handle[string]{}) {
		return nil
	}
	return bytesOf(h.Value())
}

// bytesOf returns s's bytes without a copy. Strings are immutable; these
// bytes are only ever read (copied into documents), as document.Meta says.
func bytesOf(s string) []byte {
	return unsafe.Slice(unsafe.StringData(s), len(s))
}

func appendID(b []byte, containerID string) []byte {
	b = append(b, `,"docker_id":`...)
	return document.AppendString(b, trimScheme(containerID))
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
	return p.Namespace + "/" + p.Name + " (" + p.UID + ", " + strconv.Itoa(len(p.containers)) + " containers)"
}
