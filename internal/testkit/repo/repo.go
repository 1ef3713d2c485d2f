// Package repo finds the repository the process runs in, for test helpers
// and dev tools that call the project's scripts (scripts/*.sh) and cache.
package repo

import (
	"errors"
	"os"
	"path/filepath"
)

// ErrNotFound means no directory above the working directory holds go.mod.
var ErrNotFound = errors.New("no go.mod above the working directory")

// Root walks up from the working directory to the directory holding go.mod.
func Root() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", ErrNotFound
		}
		dir = parent
	}
}
