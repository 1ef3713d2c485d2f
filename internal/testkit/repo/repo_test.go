package repo

import (
	"os"
	"path/filepath"
	"testing"
)

func TestRoot(t *testing.T) {
	root, err := Root()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("Root() = %s, which holds no go.mod", root)
	}
	if _, err := os.Stat(filepath.Join(root, "internal", "testkit", "repo", "repo.go")); err != nil {
		t.Fatalf("Root() = %s is not this repository", root)
	}
}
