package osnode

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Config describes one node. Only Dir is required.
type Config struct {
	// Home is the unpacked distribution; default: EnsureDistribution(ctx, "", Version).
	Home string
	// Version is the OpenSearch version to download when Home is empty; default
	// $OPENSEARCH_VERSION, else DefaultVersion.
	Version string
	// Plugins are installed into a copy of Home, made once and cached (see EnsurePlugins): zip
	// files, or Maven coordinates group:artifact:version of a zip on Maven Central, e.g.
	// org.opensearch.plugin:opensearch-security:2.19.4.0 for Version 2.19.4.
	Plugins []string
	// Dir is the node's own working directory (config copy, data, logs, tmp). It is created if
	// missing and reused as is: a second node on the same Dir finds the first one's data.
	Dir string
	// HTTPPort is the REST port on 127.0.0.1; 0 lets the kernel pick a free one at the first
	// start (Restart keeps it).
	HTTPPort int
	// HeapMB is the JVM heap; default 512.
	HeapMB int
	// Stdout receives the node's console output; nil discards it. The last lines are kept in
	// memory either way and shown when a start fails.
	Stdout io.Writer
	// ExtraSettings are more opensearch.yml settings; they override the defaults. Values are
	// written as YAML: plain when safe, a flow list/map when they start with [ or {, else quoted.
	ExtraSettings map[string]string
	// ConfigFiles are written into the node's config directory, by path relative to it, after
	// the copy of the distribution's (plugins' included): certificates, the security plugin's
	// opensearch-security/*.yml. Files the node reads must be in that directory.
	ConfigFiles map[string][]byte
	// ClientTLS, when set, says the REST port speaks TLS (the security plugin's
	// plugins.security.ssl.http.enabled): URL is https:// and the readiness check uses it.
	ClientTLS *tls.Config
	// User and Password, when User is set, go with the readiness check as basic auth (the
	// security plugin answers nothing without credentials).
	User, Password string
	// JavaHome is the JDK to run on; default: $OPENSEARCH_JAVA_HOME, else a JDK 11..23 from
	// $JAVA_HOME or /usr/lib/jvm, 17 preferred.
	JavaHome string
	// StartTimeout bounds Start and Restart (also bounded by their context); default 120 s.
	StartTimeout time.Duration
	// NoClassCache turns off the class data sharing archive (see cds.go).
	NoClassCache bool
}

const (
	defaultHeapMB       = 512
	defaultStartTimeout = 120 * time.Second
	// DefaultVersion is the OpenSearch version used when neither the caller nor
	// $OPENSEARCH_VERSION names one.
	DefaultVersion = "2.19.6"
)

func (c *Config) setDefaults() {
	if c.HeapMB <= 0 {
		c.HeapMB = defaultHeapMB
	}
	if c.StartTimeout <= 0 {
		c.StartTimeout = defaultStartTimeout
	}
}

// Paths inside Dir.
func (c *Config) confDir() string   { return filepath.Join(c.Dir, "config") }
func (c *Config) dataDir() string   { return filepath.Join(c.Dir, "data") }
func (c *Config) logsDir() string   { return filepath.Join(c.Dir, "logs") }
func (c *Config) tmpDir() string    { return filepath.Join(c.Dir, "tmp") }
func (c *Config) portsFile() string { return filepath.Join(c.logsDir(), "http.ports") }

// settings returns the opensearch.yml settings of the node.
func (c *Config) settings() map[string]string {
	s := map[string]string{
		"cluster.name":   "podlogs",
		"node.name":      "podlogs-0",
		"discovery.type": "single-node",
		"network.host":   "127.0.0.1",
		// 0 = a free port chosen by the kernel at bind time, which cannot race with other
		// processes the way "find a free port, close it, hand it over" can. The node writes
		// the bound ports to logs/*.ports (node.portsfile), which is how Start learns them.
		"http.port":      strconv.Itoa(c.HTTPPort),
		"transport.port": "0",
		"node.portsfile": "true",
		"path.data":      c.dataDir(),
		"path.logs":      c.logsDir(),
		// A nearly full disk must not turn test indices read-only.
		"cluster.routing.allocation.disk.threshold_enabled": "false",
		"action.auto_create_index":                          "true",
		"bootstrap.memory_lock":                             "false",
	}
	maps.Copy(s, c.ExtraSettings)
	return s
}

// renderSettings renders settings as opensearch.yml, keys sorted.
func renderSettings(s map[string]string) string {
	var b strings.Builder
	b.WriteString("# Written by podlogs internal/osnode; rewritten on every start.\n")
	for _, k := range slices.Sorted(maps.Keys(s)) {
		fmt.Fprintf(&b, "%s: %s\n", k, yamlValue(s[k]))
	}
	return b.String()
}

var plainYAML = regexp.MustCompile(`^[A-Za-z0-9_./][A-Za-z0-9_./:*-]*$`)

// yamlValue writes v as a YAML value: plain if that cannot be misread, verbatim if it is a
// flow list or map, otherwise double-quoted (a JSON string is a valid YAML one).
func yamlValue(v string) string {
	switch {
	case plainYAML.MatchString(v):
		return v
	case strings.HasPrefix(v, "[") || strings.HasPrefix(v, "{"):
		return v
	}
	q, _ := json.Marshal(v)
	return string(q)
}

// renderJVMOptions renders the node's jvm.options. It replaces the distribution's file, whose
// G1 settings conflict with the serial GC and whose log and dump paths are relative to the
// distribution, which is read-only here.
func (c *Config) renderJVMOptions() string {
	return strings.Join([]string{
		"# Written by podlogs internal/osnode; rewritten on every start.",
		fmt.Sprintf("-Xms%dm", c.HeapMB),
		fmt.Sprintf("-Xmx%dm", c.HeapMB),
		// Small machines (2 cores, shared): the serial GC has no GC threads to compete with
		// tests, and C1 alone reaches a ready node about 1/3 sooner than tiered compilation.
		"-XX:+UseSerialGC",
		"-XX:TieredStopAtLevel=1",
		"-Djava.io.tmpdir=" + c.tmpDir(),
		"-XX:ErrorFile=" + filepath.Join(c.logsDir(), "hs_err_pid%p.log"),
		// As in the distribution's jvm.options.
		"18-:-Djava.security.manager=allow",
		"-Djava.util.concurrent.ForkJoinPool.common.threadFactory=org.opensearch.secure_sm.SecuredForkJoinWorkerThreadFactory",
		"",
	}, "\n")
}
