package osnode

import (
	"archive/zip"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseCoordinates(t *testing.T) {
	f := func(in, group, artifact, version string, ok bool) {
		t.Helper()
		g, a, v, err := parseCoordinates(in)
		if (err == nil) != ok || g != group || a != artifact || v != version {
			t.Errorf("parseCoordinates(%q) = %q %q %q %v", in, g, a, v, err)
		}
	}
	f("org.opensearch.plugin:opensearch-security:2.19.4.0", "org.opensearch.plugin", "opensearch-security", "2.19.4.0", true)
	f("org.opensearch.plugin:opensearch-security:2.19.4.0:zip", "org.opensearch.plugin", "opensearch-security", "2.19.4.0", true)
	f("opensearch-security", "", "", "", false)
	f("org.opensearch.plugin:opensearch-security", "", "", "", false)
	f("org.opensearch.plugin::2.19.4.0", "", "", "", false)
	f("a:b:c:d", "", "", "", false)
	f("org.opensearch:../x:1", "", "", "", false)
}

func TestPluginID(t *testing.T) {
	id, err := pluginID("org.opensearch.plugin:opensearch-security:2.19.4.0")
	if err != nil || id != "opensearch-security-2.19.4.0" {
		t.Errorf("Maven plugin id = %q, %v", id, err)
	}
	dir := t.TempDir()
	a, b := filepath.Join(dir, "p.zip"), filepath.Join(dir, "q", "p.zip")
	os.Mkdir(filepath.Dir(b), 0o755)
	os.WriteFile(a, []byte("one"), 0o644)
	os.WriteFile(b, []byte("two"), 0o644)
	idA, errA := pluginID(a)
	idB, errB := pluginID(b)
	if errA != nil || errB != nil || !strings.HasPrefix(idA, "p-") || idA == idB {
		t.Errorf("file plugin ids %q (%v), %q (%v): want p-<hash>, different for different content", idA, errA, idB, errB)
	}
	if _, err := pluginID(filepath.Join(dir, "missing.zip")); err == nil {
		t.Error("id of a missing zip")
	}
}

// fakePlugin writes a plugin zip: a descriptor and a config file, which is all
// bin/opensearch-plugin looks at (the node would not start with it).
func fakePlugin(t *testing.T, osVersion string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "podlogs-fake-"+osVersion+".zip")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := zip.NewWriter(f)
	for name, content := range map[string]string{
		"plugin-descriptor.properties": "description=podlogs test plugin\nversion=0.0.1\nname=podlogs-fake\n" +
			"classname=org.podlogs.Fake\njava.version=11\nopensearch.version=" + osVersion + "\n",
		"config/fake.yml": "fake: true\n",
	} {
		fw, err := w.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		fw.Write([]byte(content))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// The plugin home is built once, with the plugin's files where the node looks for them, and
// reused; a plugin for another version is refused with the tool's reason, and leaves nothing.
func TestEnsurePlugins(t *testing.T) {
	if testing.Short() {
		t.Skip("runs bin/opensearch-plugin of a real distribution")
	}
	ctx := context.Background()
	home, err := EnsureDistribution(ctx, "", "")
	if err != nil {
		t.Fatal(err)
	}
	version := strings.TrimPrefix(filepath.Base(home), "opensearch-")
	cache := t.TempDir()

	same, err := EnsurePlugins(ctx, cache, home, "", nil)
	if err != nil || same != home {
		t.Fatalf("no plugins: %q, %v; want the distribution itself", same, err)
	}

	plugin := fakePlugin(t, version)
	got, err := EnsurePlugins(ctx, cache, home, "", []string{plugin})
	if err != nil {
		t.Fatal(err)
	}
	if dir := filepath.Dir(got); dir != filepath.Join(cache, "opensearch") || !strings.HasPrefix(filepath.Base(got), filepath.Base(home)+"+podlogs-fake-") {
		t.Fatalf("plugin home at %s", got)
	}
	for _, f := range []string{"plugins/podlogs-fake/plugin-descriptor.properties", "config/podlogs-fake/fake.yml", "config/jvm.options"} {
		if _, err := os.Stat(filepath.Join(got, f)); err != nil {
			t.Errorf("plugin home lacks %s: %v", f, err)
		}
	}
	if !distComplete(got) {
		t.Error("plugin home has no distribution")
	}
	// Reused as it is: not rebuilt (the mark survives).
	mark := filepath.Join(got, "mark")
	os.WriteFile(mark, nil, 0o644)
	again, err := EnsurePlugins(ctx, cache, home, "", []string{plugin})
	if err != nil || again != got {
		t.Fatalf("second call: %q, %v; want %q", again, err, got)
	}
	if _, err := os.Stat(mark); err != nil {
		t.Fatal("the plugin home was built again")
	}

	_, err = EnsurePlugins(ctx, cache, home, "", []string{fakePlugin(t, "1.0.0")})
	if err == nil || !strings.Contains(err.Error(), "was built for OpenSearch version 1.0.0") {
		t.Fatalf("plugin for OpenSearch 1.0.0 on %s: %v, want the tool's refusal", version, err)
	}
	entries, _ := os.ReadDir(filepath.Join(cache, "opensearch"))
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".plugins-") || strings.Contains(e.Name(), "1.0.0") {
			t.Errorf("a failed install left %s behind", e.Name())
		}
	}
}
