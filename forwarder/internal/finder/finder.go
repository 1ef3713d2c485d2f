// Package finder lists the container log files under a pods root
// (<root>/<namespace>_<pod>_<uid>/<container>/<n>.log), with the rotated files
// kubelet leaves beside them (<n>.log.<timestamp>) until it compresses them.
//
// Symbolic links are not followed: kubelet makes none there. One that leads
// back to the directory holding it or above (a loop) is reported, as are the
// directories that cannot be read; the rest are skipped.
package finder

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/podlogs/podlogs/internal/podpath"
)

// File is one log file found.
type File struct {
	// Rel is the path relative to the root, with '/' separators.
	Rel    string
	Ref    podpath.Ref
	Device uint64
	Inode  uint64
	Size   int64
}

// Result is what one Scan found.
type Result struct {
	Files []File
	// Dirs are the pod and container directories read (root joined with
	// their path), with log files or not yet: where new ones will appear.
	Dirs []string
	// Unreadable are the paths that could not be read, or lead back into
	// the tree (a symbolic link loop); log files under them are not in
	// Files. A directory that vanished while Scan walked (a pod being
	// deleted) is not one of them.
	Unreadable []*fs.PathError
}

// Scan lists the log files under root of the containers filter matches. Only
// a root that cannot be read is an error.
func Scan(root string, filter *Filter) (Result, error) {
	pods, err := os.ReadDir(root)
	if err != nil {
		return Result{}, fmt.Errorf("list pods root %s: %w", root, err)
	}
	var res Result
	for _, pod := range pods {
		podDir := filepath.Join(root, pod.Name())
		containers, ok := res.readDir(pod, podDir, root)
		if !ok {
			continue
		}
		for _, c := range containers {
			logs, ok := res.readDir(c, filepath.Join(podDir, c.Name()), podDir, root)
			if !ok {
				continue
			}
			for _, l := range logs {
				if !IsLogName(l.Name()) || !l.Type().IsRegular() {
					continue
				}
				rel := path.Join(pod.Name(), c.Name(), l.Name())
				ref, err := podpath.Parse(rel)
				if err != nil || !filter.Match(ref) {
					continue
				}
				f, err := stat(filepath.Join(root, rel))
				if err != nil {
					res.unreadable("stat", filepath.Join(root, rel), err)
					continue
				}
				f.Rel, f.Ref = rel, ref
				res.Files = append(res.Files, f)
			}
		}
	}
	return res, nil
}

// readDir lists the directory at p, an entry of its parent; ancestors are the
// directories above it, up to the root. It returns false for anything else
// than a directory it could read (noting why when that is a problem).
func (res *Result) readDir(e fs.DirEntry, p string, ancestors ...string) ([]fs.DirEntry, bool) {
	if e.Type()&fs.ModeSymlink != 0 {
		if err := linkLoop(p, ancestors); err != nil {
			res.Unreadable = append(res.Unreadable, err)
		}
		return nil, false
	}
	if !e.IsDir() {
		return nil, false
	}
	entries, err := os.ReadDir(p)
	if err != nil {
		res.unreadable("open", p, err)
		return nil, false
	}
	res.Dirs = append(res.Dirs, p)
	return entries, true
}

// unreadable notes that p could not be read, unless it is gone: deleted (or
// replaced) since it was listed.
func (res *Result) unreadable(op, p string, err error) {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return
	}
	var pe *fs.PathError
	if !errors.As(err, &pe) {
		pe = &fs.PathError{Op: op, Path: p, Err: err}
	}
	res.Unreadable = append(res.Unreadable, pe)
}

// linkLoop returns an error if the symbolic link at p loops: it resolves to
// itself, or to one of the directories above it (so the tree under it would
// have no end).
func linkLoop(p string, ancestors []string) *fs.PathError {
	fi, err := os.Stat(p)
	if err != nil {
		var pe *fs.PathError
		if errors.Is(err, syscall.ELOOP) && errors.As(err, &pe) {
			return pe
		}
		return nil // dangling, or unreadable: not followed either way
	}
	if !fi.IsDir() {
		return nil
	}
	for _, a := range ancestors {
		if ai, err := os.Stat(a); err == nil && os.SameFile(fi, ai) {
			return &fs.PathError{Op: "follow", Path: p, Err: fmt.Errorf("it leads back to %s: %w", a, syscall.ELOOP)}
		}
	}
	return nil
}

// IsLogName tells whether a file name is a container log, current or rotated
// but not yet compressed.
func IsLogName(name string) bool {
	if strings.HasSuffix(name, ".log") {
		return true
	}
	i := strings.Index(name, ".log.")
	if i <= 0 {
		return false
	}
	// kubelet writes "<n>.log.<timestamp>", then "<n>.log.<timestamp>.gz",
	// and uses ".tmp" names while compressing.
	return !strings.HasSuffix(name, ".gz") && !strings.HasSuffix(name, ".tmp")
}

func stat(p string) (File, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return File{}, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return File{}, fmt.Errorf("stat %s: no device and inode on this platform", p)
	}
	return File{Device: uint64(st.Dev), Inode: st.Ino, Size: fi.Size()}, nil
}
