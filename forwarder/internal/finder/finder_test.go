package finder

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
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

	res, err := Scan(root, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Unreadable) != 0 {
		t.Fatalf("Unreadable = %v", res.Unreadable)
	}
	var got []string
	for _, f := range res.Files {
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

// Scan goes on past what it cannot read and says what that was; it follows
// no symbolic link and reports those that loop.
func TestScanReportsWhatItCannotRead(t *testing.T) {
	root := t.TempDir()
	mk := func(rel string) {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	link := func(target, rel string) {
		if err := os.Symlink(target, filepath.Join(root, rel)); err != nil {
			t.Fatal(err)
		}
	}
	mk("ui_ui-1_u1/ui/0.log")
	mk("db_db-0_u3/db/0.log")
	link("loop", "loop")                  // resolves to itself
	link("..", "ui_ui-1_u1/up")           // to the root
	link(".", "ui_ui-1_u1/self")          // to its own pod directory
	link("c", "ui_ui-1_u1/c")             // to itself, one level down
	link("ui_ui-1_u1", "ui_ui-1_u1-copy") // a pod seen twice: not followed, no loop
	link("nowhere", "dangling")
	locked := filepath.Join(root, "db_db-0_u3/db")
	if err := os.Chmod(locked, 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(locked, 0o755) })
	_, lockErr := os.ReadDir(locked)

	res, err := Scan(root, nil)
	if err != nil {
		t.Fatal(err)
	}
	var files, unreadable, dirs []string
	for _, f := range res.Files {
		files = append(files, f.Rel)
	}
	for _, u := range res.Unreadable {
		rel, _ := filepath.Rel(root, u.Path)
		unreadable = append(unreadable, rel)
		if !errors.Is(u, syscall.ELOOP) && !errors.Is(u, fs.ErrPermission) {
			t.Errorf("%s: %v, want a loop or a permission error", rel, u)
		}
	}
	for _, d := range res.Dirs {
		rel, _ := filepath.Rel(root, d)
		dirs = append(dirs, rel)
	}
	wantFiles := []string{"ui_ui-1_u1/ui/0.log"}
	wantUnreadable := []string{"loop", "ui_ui-1_u1/c", "ui_ui-1_u1/self", "ui_ui-1_u1/up"}
	wantDirs := []string{"db_db-0_u3", "ui_ui-1_u1", "ui_ui-1_u1/ui"}
	if lockErr == nil {
		// Root reads it anyway: the permission case is left to the
		// reader's classification test.
		t.Log("running as root: a directory of mode 000 is readable; not testing permission errors here")
		wantFiles = append(wantFiles, "db_db-0_u3/db/0.log")
		wantDirs = append(wantDirs, "db_db-0_u3/db")
	} else {
		wantUnreadable = append(wantUnreadable, "db_db-0_u3/db")
	}
	for _, c := range []struct {
		what      string
		got, want []string
	}{{"Files", files, wantFiles}, {"Unreadable", unreadable, wantUnreadable}, {"Dirs", dirs, wantDirs}} {
		slices.Sort(c.got)
		slices.Sort(c.want)
		if !slices.Equal(c.got, c.want) {
			t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
		}
	}
	for _, u := range res.Unreadable {
		if strings.HasSuffix(u.Path, "/up") && !strings.Contains(u.Error(), "leads back to "+root) {
			t.Errorf("the loop through %s does not say where it leads: %v", u.Path, u)
		}
	}
}

// A directory deleted between being listed and being read (a pod going away)
// is not a problem to report.
func TestVanishedIsNotUnreadable(t *testing.T) {
	var res Result
	for _, err := range []error{
		&fs.PathError{Op: "open", Path: "/p/ns_pod_u", Err: syscall.ENOENT},
		&fs.PathError{Op: "open", Path: "/p/ns_pod_u/c", Err: syscall.ENOTDIR},
	} {
		res.unreadable("open", "/p/x", err)
	}
	res.unreadable("stat", "/p/ns_pod_u/c/0.log", syscall.EACCES)
	if len(res.Unreadable) != 1 || res.Unreadable[0].Path != "/p/ns_pod_u/c/0.log" || !errors.Is(res.Unreadable[0], fs.ErrPermission) {
		t.Fatalf("Unreadable = %v, want the permission error only", res.Unreadable)
	}
}
