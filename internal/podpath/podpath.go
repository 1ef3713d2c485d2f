// Package podpath reads pod identity out of the paths kubelet gives container
// log files: <pods root>/<namespace>_<pod name>_<pod uid>/<container>/<restart>.log.
//
// Namespaces and pod names are DNS labels/subdomains and cannot contain '_',
// so the directory splits unambiguously on its first two underscores (the uid
// is a UUID, or for static pods a hash, neither containing '_').
package podpath

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Ref is what a log file's path says about the container that wrote it.
type Ref struct {
	Namespace string
	Pod       string
	PodUID    string
	Container string
	// Restart is the container's restart count (the file's base name).
	Restart int
	// Rotated is true for a file kubelet has rotated away (0.log.20231107-020510).
	Rotated bool
}

// ErrNotPodLog reports a path that does not have the shape of a pod log file.
var ErrNotPodLog = errors.New("not a pod log path")

// Parse reads a path relative to the pods root ("ns_pod_uid/container/0.log").
func Parse(rel string) (Ref, error) {
	podDir, rest, ok := strings.Cut(rel, "/")
	if !ok {
		return Ref{}, fmt.Errorf("%w: %q has no container directory", ErrNotPodLog, rel)
	}
	container, file, ok := strings.Cut(rest, "/")
	if !ok || container == "" || strings.Contains(file, "/") {
		return Ref{}, fmt.Errorf("%w: %q is not <pod dir>/<container>/<n>.log", ErrNotPodLog, rel)
	}
	ns, podAndUID, ok := strings.Cut(podDir, "_")
	if !ok {
		return Ref{}, fmt.Errorf("%w: pod directory %q is not <namespace>_<pod>_<uid>", ErrNotPodLog, podDir)
	}
	pod, uid, ok := strings.Cut(podAndUID, "_")
	if !ok || ns == "" || pod == "" || uid == "" || strings.Contains(uid, "_") {
		return Ref{}, fmt.Errorf("%w: pod directory %q is not <namespace>_<pod>_<uid>", ErrNotPodLog, podDir)
	}
	base, suffix, rotated := strings.Cut(file, ".log")
	if !rotated || (suffix != "" && suffix[0] != '.') {
		return Ref{}, fmt.Errorf("%w: file %q is not <n>.log", ErrNotPodLog, file)
	}
	restart, err := strconv.Atoi(base)
	if err != nil || restart < 0 {
		return Ref{}, fmt.Errorf("%w: file %q is not <n>.log", ErrNotPodLog, file)
	}
	return Ref{
		Namespace: ns,
		Pod:       pod,
		PodUID:    uid,
		Container: container,
		Restart:   restart,
		Rotated:   suffix != "",
	}, nil
}

// ContainerDir returns the part of rel that names the container
// ("ns_pod_uid/container"): it does not change when kubelet rotates the file.
func ContainerDir(rel string) string {
	if i := strings.LastIndexByte(rel, '/'); i >= 0 {
		return rel[:i]
	}
	return rel
}
