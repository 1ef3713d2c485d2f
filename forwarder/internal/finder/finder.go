// Package finder lists the container log files under a pods root
// (<root>/<namespace>_<pod>_<uid>/<container>/<n>.log), with the rotated files
// kubelet leaves beside them (<n>.log.<timestamp>) until it compresses them.
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

// Scan lists the log files under root of the containers filter matches.
// Directories that vanish while it walks (pods being deleted) are skipped,
// not errors.
func Scan(root string, filter *Filter) ([]File, error) {
	pods, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("list pods root %s: %w", root, err)
	}
	var files []File
	for _, pod := range pods {
		if !pod.IsDir() {
			continue
		}
		containers, err := os.ReadDir(filepath.Join(root, pod.Name()))
		if err != nil {
			continue
		}
		for _, c := range containers {
			if !c.IsDir() {
				continue
			}
			logs, err := os.ReadDir(filepath.Join(root, pod.Name(), c.Name()))
			if err != nil {
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
				if errors.Is(err, fs.ErrNotExist) {
					continue
				}
				if err != nil {
					return nil, err
				}
				f.Rel, f.Ref = rel, ref
				files = append(files, f)
			}
		}
	}
	return files, nil
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
		return File{}, fmt.Errorf("stat %s: %w", p, err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return File{}, fmt.Errorf("stat %s: no device and inode on this platform", p)
	}
	return File{Device: uint64(st.Dev), Inode: st.Ino, Size: fi.Size()}, nil
}
