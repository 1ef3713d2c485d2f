package osnode

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// EnsurePlugins returns a copy of the distribution at home with plugins installed, built once
// under <cacheDir>/opensearch/<base of home>+<plugin>+... and reused as is afterwards. Each
// plugin is a zip file (a path ending in .zip) or Maven coordinates group:artifact:version of a
// zip on Maven Central, downloaded into <cacheDir>/m2 like the distribution. The plugins are
// installed with the distribution's own bin/opensearch-plugin, which checks that they fit its
// version. cacheDir "" means .cache in the repository root; javaHome "" as Config.JavaHome.
func EnsurePlugins(ctx context.Context, cacheDir, home, javaHome string, plugins []string) (string, error) {
	if len(plugins) == 0 {
		return home, nil
	}
	if cacheDir == "" {
		root, err := repoRoot()
		if err != nil {
			return "", fmt.Errorf("osnode: install plugins: %w", err)
		}
		cacheDir = filepath.Join(root, ".cache")
	}
	cacheDir, err := filepath.Abs(cacheDir)
	if err != nil {
		return "", fmt.Errorf("osnode: install plugins: %w", err)
	}
	parent := filepath.Join(cacheDir, "opensearch")
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return "", fmt.Errorf("osnode: install plugins: %w", err)
	}
	// The name says what the home holds: a finished one is never changed, so a name that
	// exists is a name that fits.
	name := filepath.Base(home)
	ids := make([]string, len(plugins))
	for i, p := range plugins {
		if ids[i], err = pluginID(p); err != nil {
			return "", fmt.Errorf("osnode: install plugin %s: %w", p, err)
		}
		name += "+" + ids[i]
	}
	target := filepath.Join(parent, name)
	if distComplete(target) {
		return target, nil
	}

	// One build at a time (test binaries run in parallel); whoever waited finds it done.
	unlock, err := lockFile(filepath.Join(parent, ".plugins.lock"))
	if err != nil {
		return "", fmt.Errorf("osnode: install plugins: %w", err)
	}
	defer unlock()
	if distComplete(target) {
		return target, nil
	}
	if javaHome, err = findJava(javaHome); err != nil {
		return "", err
	}
	zips := make([]string, len(plugins))
	for i, p := range plugins {
		if zips[i], err = pluginZip(ctx, cacheDir, p); err != nil {
			return "", fmt.Errorf("osnode: install plugin %s: %w", p, err)
		}
	}
	tmp, err := os.MkdirTemp(parent, ".plugins-")
	if err != nil {
		return "", fmt.Errorf("osnode: install plugins: %w", err)
	}
	defer os.RemoveAll(tmp) // after the rename, a no-op
	if err := copyTree(home, tmp); err != nil {
		return "", fmt.Errorf("osnode: copy %s to install plugins: %w", home, err)
	}
	for i, zip := range zips {
		if err := installPlugin(ctx, tmp, javaHome, zip); err != nil {
			return "", fmt.Errorf("osnode: install plugin %s: %w", plugins[i], err)
		}
	}
	if err := os.Rename(tmp, target); err != nil {
		return "", fmt.Errorf("osnode: install plugins: %w", err)
	}
	return target, nil
}

// isZipPath tells a plugin given as a file from one given as Maven coordinates.
func isZipPath(plugin string) bool { return strings.HasSuffix(plugin, ".zip") }

// pluginID names a plugin in the name of the home that holds it: artifact-version for Maven
// coordinates (a release never changes), name-<hash of the content> for a file (it may).
func pluginID(plugin string) (string, error) {
	if !isZipPath(plugin) {
		_, artifact, version, err := parseCoordinates(plugin)
		if err != nil {
			return "", err
		}
		return artifact + "-" + version, nil
	}
	f, err := os.Open(plugin)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return strings.TrimSuffix(filepath.Base(plugin), ".zip") + "-" + hex.EncodeToString(h.Sum(nil))[:12], nil
}

// parseCoordinates splits group:artifact:version (a trailing :zip is allowed).
func parseCoordinates(c string) (group, artifact, version string, err error) {
	parts := strings.Split(strings.TrimSuffix(c, ":zip"), ":")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return "", "", "", fmt.Errorf("want a path to a .zip or Maven coordinates group:artifact:version, got %q", c)
	}
	for _, p := range parts {
		if strings.ContainsAny(p, `/\ `) || p == "." || p == ".." {
			return "", "", "", fmt.Errorf("bad Maven coordinates %q", c)
		}
	}
	return parts[0], parts[1], parts[2], nil
}

// pluginZip returns the plugin's zip file, downloading it with Maven (as
// scripts/opensearch-dist.sh does the distribution) when it is not in <cacheDir>/m2 yet.
func pluginZip(ctx context.Context, cacheDir, plugin string) (string, error) {
	if isZipPath(plugin) {
		return filepath.Abs(plugin)
	}
	group, artifact, version, _ := parseCoordinates(plugin) // checked by pluginID
	repo := filepath.Join(cacheDir, "m2")
	zip := filepath.Join(repo, filepath.FromSlash(strings.ReplaceAll(group, ".", "/")), artifact, version, artifact+"-"+version+".zip")
	if _, err := os.Stat(zip); err == nil {
		return zip, nil // Maven puts it there only once complete
	}
	if _, err := exec.LookPath("mvn"); err != nil {
		return "", fmt.Errorf("mvn not found: install Maven (Debian: apt-get install maven) to download %s", plugin)
	}
	cmd := exec.CommandContext(ctx, "mvn", "-q", "-B", "-Dmaven.repo.local="+repo, "dependency:get",
		"-Dartifact="+group+":"+artifact+":"+version+":zip", "-Dtransitive=false")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("download from Maven Central: %w\n%s", err, out)
	}
	if _, err := os.Stat(zip); err != nil {
		return "", fmt.Errorf("mvn succeeded but %s is missing", zip)
	}
	return zip, nil
}

// installPlugin runs home's bin/opensearch-plugin on zip. Its config goes to home/config/<name>/,
// which every node's Dir gets a copy of.
func installPlugin(ctx context.Context, home, javaHome, zip string) error {
	cmd := exec.CommandContext(ctx, filepath.Join(home, "bin", "opensearch-plugin"), "install", "--batch", "file://"+zip)
	var env []string
	for _, kv := range os.Environ() {
		switch k, _, _ := strings.Cut(kv, "="); k {
		case "OPENSEARCH_PATH_CONF", "OPENSEARCH_JAVA_OPTS", "JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS", "JDK_JAVA_OPTIONS", "JAVA_HOME":
			continue // the tool must use home/config and our JDK
		}
		env = append(env, kv)
	}
	cmd.Env = append(env, "JAVA_HOME="+javaHome, "OPENSEARCH_JAVA_HOME="+javaHome)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("bin/opensearch-plugin install: %w\n%s", err, out.Bytes())
	}
	return nil
}

// lockFile takes an exclusive flock on path, waiting for it: the holder is building a home,
// which takes seconds.
func lockFile(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil // closing releases the lock
}
