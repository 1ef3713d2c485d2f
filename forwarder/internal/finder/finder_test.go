package finder

import (
	"os"
	"path/filepath"
	"sort"
	"testing"
)

func TestScan(t *testing.T) {
	root := t.TempDir()
	write := func(rel string) {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("ui_ui-1_u1/ui/0.log")
	write("ui_ui-1_u1/ui/0.log.20231107-020510")
	write("ui_ui-1_u1/ui/0.log.20231107-010000.gz")
	write("ui_ui-1_u1/ui/0.log.20231107-030000.tmp")
	write("ui_ui-1_u1/ui/notes.txt")
	write("ui_ui-1_u1/ui/x.log") // not a restart count
	write("carts_carts-2_u2/carts/3.log")
	write("not-a-pod-dir/c/0.log")
	write("stray.log")

	files, err := Scan(root, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range files {
		got = append(got, f.Rel)
		if f.Inode == 0 || f.Size != 2 {
			t.Fatalf("%s: inode %d size %d", f.Rel, f.Inode, f.Size)
		}
	}
	sort.Strings(got)
	want := []string{"carts_carts-2_u2/carts/3.log", "ui_ui-1_u1/ui/0.log", "ui_ui-1_u1/ui/0.log.20231107-020510"}
	if len(got) != len(want) {
		t.Fatalf("Scan = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("Scan = %v, want %v", got, want)
		}
	}
}

func TestScanMissingRoot(t *testing.T) {
	if _, err := Scan(filepath.Join(t.TempDir(), "nope"), nil); err == nil {
		t.Fatal("Scan of a missing root succeeded")
	}
}
