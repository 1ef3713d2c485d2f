package osnode

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/podlogs/podlogs/internal/testkit/repo"
)

// EnsureDistribution makes sure the OpenSearch distribution is unpacked under
// <cacheDir>/opensearch/opensearch-<version> and returns that directory. It runs
// scripts/opensearch-dist.sh (Maven download, unzip) unless the directory is already complete.
// cacheDir "" means .cache in the repository root (found by walking up from the working
// directory to go.mod); version "" means $OPENSEARCH_VERSION, else DefaultVersion.
func EnsureDistribution(ctx context.Context, cacheDir, version string) (string, error) {
	if version == "" {
		version = os.Getenv("OPENSEARCH_VERSION")
	}
	if version == "" {
		version = DefaultVersion
	}
	root, err := repoRoot()
	if err != nil {
		return "", fmt.Errorf("osnode: find the OpenSearch distribution: %w", err)
	}
	if cacheDir == "" {
		cacheDir = filepath.Join(root, ".cache")
	}
	cacheDir, err = filepath.Abs(cacheDir)
	if err != nil {
		return "", fmt.Errorf("osnode: find the OpenSearch distribution: %w", err)
	}
	home := filepath.Join(cacheDir, "opensearch", "opensearch-"+version)
	if distComplete(home) {
		return home, nil
	}
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "scripts", "opensearch-dist.sh"), cacheDir)
	cmd.Env = append(os.Environ(), "OPENSEARCH_VERSION="+version)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if _, err := cmd.Output(); err != nil {
		return "", fmt.Errorf("osnode: download OpenSearch %s with scripts/opensearch-dist.sh: %w\n%s", version, err, stderr.Bytes())
	}
	if !distComplete(home) {
		return "", fmt.Errorf("osnode: scripts/opensearch-dist.sh succeeded but %s holds no OpenSearch %s", home, version)
	}
	return home, nil
}

// distComplete reports whether home holds an unpacked distribution: the script moves the tree
// into place only when complete, and the jar is what the node needs most.
func distComplete(home string) bool {
	jars, _ := filepath.Glob(filepath.Join(home, "lib", "opensearch-[0-9]*.jar"))
	return len(jars) > 0
}

func repoRoot() (string, error) {
	root, err := repo.Root()
	if errors.Is(err, repo.ErrNotFound) {
		return "", errors.New("no go.mod above the working directory: run from inside the repository or set Config.Home")
	}
	return root, err
}

// findJava returns the JDK to run OpenSearch on (see Config.JavaHome).
func findJava(explicit string) (string, error) {
	for _, home := range []string{explicit, os.Getenv("OPENSEARCH_JAVA_HOME")} {
		if home != "" {
			return home, nil // the user's choice, taken as is
		}
	}
	candidates, _ := filepath.Glob("/usr/lib/jvm/*")
	slices.Sort(candidates)
	if env := os.Getenv("JAVA_HOME"); env != "" {
		candidates = append([]string{env}, candidates...)
	}
	best, bestMajor := "", 0
	for _, home := range candidates {
		if real, err := filepath.EvalSymlinks(home); err == nil {
			home = real // /usr/lib/jvm has aliases; one name keeps one CDS archive
		}
		major := javaMajor(home)
		// 11..23: OpenSearch 2.x needs 11+ and the SecurityManager, gone in 24. Prefer 17,
		// the version OpenSearch 2.x is tested on most; $JAVA_HOME wins among equals.
		if major < 11 || major > 23 {
			continue
		}
		if best == "" || (major == 17 && bestMajor != 17) {
			best, bestMajor = home, major
		}
	}
	if best == "" {
		return "", errors.New("osnode: no JDK 11..23 found in $JAVA_HOME or /usr/lib/jvm: install one (Debian: apt-get install openjdk-17-jre-headless) or set OPENSEARCH_JAVA_HOME")
	}
	return best, nil
}

// javaMajor reads the major version from a JDK's release file; 0 if it is not a JDK.
func javaMajor(home string) int {
	if _, err := os.Stat(filepath.Join(home, "bin", "java")); err != nil {
		return 0
	}
	f, err := os.Open(filepath.Join(home, "release"))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), "JAVA_VERSION=")
		if !ok {
			continue
		}
		v = strings.Trim(v, `"`)
		v = strings.TrimPrefix(v, "1.") // 1.8.0_x
		// "17.0.15", "21", "23-ea": the leading digits.
		end := strings.IndexFunc(v, func(r rune) bool { return r < '0' || r > '9' })
		if end >= 0 {
			v = v[:end]
		}
		major, _ := strconv.Atoi(v)
		return major
	}
	return 0
}

// nobody is the user the node runs as when this process is root.
const nobody = 65534

func runningAsRoot() bool { return os.Geteuid() == 0 }

// nobodyCred makes a child run as nobody with no supplementary groups. Set through
// SysProcAttr rather than setpriv/runuser: the kernel clears Pdeathsig when a process changes
// its uid, and Go sets the credentials before Pdeathsig, so this order keeps it.
func nobodyCred() *syscall.Credential {
	return &syscall.Credential{Uid: nobody, Gid: nobody, Groups: []uint32{}}
}

// asNobody runs find(1) as nobody, which answers access questions with the kernel's own
// checks (every parent directory included), and returns its output.
func asNobody(args ...string) (string, error) {
	cmd := exec.Command("find", args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: nobodyCred()}
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// runnableHome returns home if the node's user can read it, else a world-readable copy in the
// temp dir, made once and shared (the repository may live under a 0700 directory, as in CI).
func runnableHome(home string) (string, error) {
	if !runningAsRoot() {
		return home, nil
	}
	parts := []string{filepath.Join(home, "lib"), filepath.Join(home, "modules"), filepath.Join(home, "plugins")}
	out, err := asNobody(append(parts, `(`, `!`, `-readable`, `-o`, `-type`, `d`, `!`, `-executable`, `)`, `-print`, `-quit`)...)
	if err == nil && out == "" {
		return home, nil
	}
	cp := filepath.Join(os.TempDir(), "podlogs-"+filepath.Base(home))
	if st, err := os.Stat(cp); err == nil {
		// Only trust a copy this user made: the temp dir is shared.
		if sys, ok := st.Sys().(*syscall.Stat_t); ok && int(sys.Uid) == os.Geteuid() && distComplete(cp) {
			return cp, nil
		}
		return "", fmt.Errorf("osnode: %s is not readable by uid %d and %s exists but is not a copy of it made by this user: remove it", home, nobody, cp)
	}
	tmp, err := os.MkdirTemp(os.TempDir(), "podlogs-"+filepath.Base(home)+".tmp-")
	if err != nil {
		return "", fmt.Errorf("osnode: copy the distribution: %w", err)
	}
	defer os.RemoveAll(tmp) // after the rename, a no-op
	if err := copyTree(home, tmp); err != nil {
		return "", fmt.Errorf("osnode: copy the distribution to a place uid %d can read: %w", nobody, err)
	}
	if err := os.Rename(tmp, cp); err != nil && !distComplete(cp) { // another process won the race
		return "", fmt.Errorf("osnode: copy the distribution: %w", err)
	}
	return cp, nil
}

// copyTree copies the regular files and directories under src into dst (which exists), readable
// by everyone.
func copyTree(src, dst string) error {
	if err := os.Chmod(dst, 0o755); err != nil {
		return err
	}
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		switch {
		case rel == ".":
			return nil
		case d.IsDir():
			return os.Mkdir(target, 0o755)
		case d.Type().IsRegular():
			info, err := d.Info()
			if err != nil {
				return err
			}
			return copyFile(path, target, 0o644|info.Mode().Perm()&0o111)
		}
		return nil
	})
}

func copyFile(src, dst string, mode fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Chmod(mode); err != nil { // the umask may have cut it
		out.Close()
		return err
	}
	return out.Close()
}
