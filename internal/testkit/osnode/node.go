package osnode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// stopTimeout is how long Stop waits after SIGTERM before it sends SIGKILL.
const stopTimeout = 30 * time.Second

// Node is a running (or stopped) OpenSearch node. Its methods are safe for concurrent use.
type Node struct {
	cfg      Config // defaults applied; HTTPPort is fixed after the first start
	javaHome string
	jvmArgs  []string // from the distribution's JvmOptionsParser, computed once in Start
	cds      string   // class data sharing archive, see cds.go
	url      string   // set before Start returns, never changed
	out      *console

	ctl sync.Mutex // serializes Stop, Kill and Restart
	mu  sync.Mutex // guards proc
	// proc is the current or last JVM.
	proc *process
}

// process is one run of the JVM.
type process struct {
	cmd       *exec.Cmd
	done      chan struct{} // closed when the JVM has exited
	recording string        // class data sharing archive this run records, if any
}

// Start prepares cfg.Dir, starts the node and waits until it answers
// GET /_cluster/health?wait_for_status=yellow, for at most cfg.StartTimeout. On failure the
// process is killed and the error ends with the last lines the node printed.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	if cfg.Dir == "" {
		return nil, errors.New("osnode: Config.Dir is required")
	}
	cfg.setDefaults()
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("osnode: %w", err)
	}
	cfg.Dir = dir
	if cfg.Home == "" {
		if cfg.Home, err = EnsureDistribution(ctx, "", cfg.Version); err != nil {
			return nil, err
		}
	}
	if cfg.Home, err = EnsurePlugins(ctx, "", cfg.Home, cfg.JavaHome, cfg.Plugins); err != nil {
		return nil, err
	}
	if cfg.Home, err = runnableHome(cfg.Home); err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, out: &console{w: cfg.Stdout}}
	if n.javaHome, err = findJava(cfg.JavaHome); err != nil {
		return nil, err
	}
	n.cds = cdsArchive(cfg.Home, n.javaHome)
	if err := n.prepareDir(); err != nil {
		return nil, fmt.Errorf("osnode: prepare %s: %w", cfg.Dir, err)
	}
	if n.jvmArgs, err = n.parseJVMOptions(ctx); err != nil {
		return nil, err
	}
	if err := n.start(ctx); err != nil {
		return nil, err
	}
	return n, nil
}

// URL returns the node's REST endpoint, http://127.0.0.1:<port> (https with Config.ClientTLS).
func (n *Node) URL() string { return n.url }

// Dir returns the node's working directory (logs are in Dir()/logs).
func (n *Node) Dir() string { return n.cfg.Dir }

// Done returns a channel closed when the current JVM exits. After Restart, call it again.
func (n *Node) Done() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.proc.done
}

// Stop sends SIGTERM and waits for the node to exit; after 30 s it sends SIGKILL and returns
// an error. Stopping a stopped node does nothing.
func (n *Node) Stop() error {
	n.ctl.Lock()
	defer n.ctl.Unlock()
	return n.stop()
}

// Kill sends SIGKILL and waits for the node to be gone, as a crash or an outage would.
func (n *Node) Kill() error {
	n.ctl.Lock()
	defer n.ctl.Unlock()
	p := n.current()
	p.signal(syscall.SIGKILL)
	<-p.done
	return nil
}

// Restart stops the node if it runs, then starts it again on the same port and data, and waits
// as Start does.
func (n *Node) Restart(ctx context.Context) error {
	n.ctl.Lock()
	defer n.ctl.Unlock()
	if err := n.stop(); err != nil {
		return err
	}
	if err := n.writeSettings(); err != nil {
		return fmt.Errorf("osnode: restart: %w", err)
	}
	return n.start(ctx)
}

func (n *Node) current() *process {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.proc
}

func (n *Node) stop() error {
	p := n.current()
	select {
	case <-p.done:
		return nil
	default:
	}
	p.signal(syscall.SIGTERM)
	select {
	case <-p.done:
		n.keepCDS(p.recording)
		return nil
	case <-time.After(stopTimeout):
		p.signal(syscall.SIGKILL)
		<-p.done
		return fmt.Errorf("osnode: node did not stop within %v of SIGTERM and was killed", stopTimeout)
	}
}

// signal signals the JVM's process group (its own, see start).
func (p *process) signal(sig syscall.Signal) {
	if p.cmd.Process != nil {
		_ = syscall.Kill(-p.cmd.Process.Pid, sig) // ESRCH: already gone
	}
}

// prepareDir lays out Dir: a copy of the distribution's config with our opensearch.yml and
// jvm.options, and data, logs and tmp, all owned by the user the node runs as.
func (n *Node) prepareDir() error {
	c := &n.cfg
	for _, d := range []string{c.Dir, c.dataDir(), c.logsDir(), c.tmpDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if err := os.RemoveAll(c.confDir()); err != nil {
		return err
	}
	if err := os.Mkdir(c.confDir(), 0o755); err != nil {
		return err
	}
	if err := copyTree(filepath.Join(c.Home, "config"), c.confDir()); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(c.confDir(), "jvm.options"), []byte(c.renderJVMOptions()), 0o644); err != nil {
		return err
	}
	if err := n.writeSettings(); err != nil {
		return err
	}
	for name, content := range c.ConfigFiles {
		path := filepath.Join(c.confDir(), filepath.FromSlash(name))
		if rel, err := filepath.Rel(c.confDir(), path); err != nil || !filepath.IsLocal(rel) {
			return fmt.Errorf("config file %q is not inside the config directory", name)
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		// Private: keys are among them; the node's user owns them (below).
		if err := os.WriteFile(path, content, 0o600); err != nil {
			return err
		}
	}
	if !runningAsRoot() {
		return nil
	}
	err := filepath.WalkDir(c.Dir, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, nobody, nobody)
	})
	if err != nil {
		return err
	}
	if out, _ := asNobody(c.Dir, "-maxdepth", "0", "-writable", "-executable"); out != c.Dir {
		return fmt.Errorf("uid %d (the node's user: OpenSearch refuses to run as root) cannot reach it: "+
			"a parent directory is not world-traversable; use one from os.MkdirTemp(\"\", ...), not t.TempDir()", nobody)
	}
	return nil
}

func (n *Node) writeSettings() error {
	os.Remove(n.cfg.portsFile()) // so that Start never reads the previous run's port
	yml := filepath.Join(n.cfg.confDir(), "opensearch.yml")
	if err := os.WriteFile(yml, []byte(renderSettings(n.cfg.settings())), 0o644); err != nil {
		return err
	}
	if runningAsRoot() {
		return os.Chown(yml, nobody, nobody)
	}
	return nil
}

func (n *Node) classpath() string { return filepath.Join(n.cfg.Home, "lib", "*") }

// parseJVMOptions runs the distribution's JvmOptionsParser, as bin/opensearch does, to get its
// system options, our jvm.options and its ergonomic choices (direct memory from the heap).
func (n *Node) parseJVMOptions(ctx context.Context) ([]string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(n.javaHome, "bin", "java"), "-cp", n.classpath(),
		"org.opensearch.tools.launchers.JvmOptionsParser", n.cfg.confDir())
	cmd.Env = n.env()
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := errors.AsType[*exec.ExitError](err); ok {
			stderr = ee.Stderr
		}
		return nil, fmt.Errorf("osnode: JVM options parser (java %s): %w\n%s", n.javaHome, err, stderr)
	}
	return strings.Fields(string(out)), nil
}

// env is the JVM's environment: ours without the variables the JVM or the launcher would
// read options from (bin/opensearch drops them too), plus OpenSearch's own.
func (n *Node) env() []string {
	var env []string
	for _, kv := range os.Environ() {
		switch k, _, _ := strings.Cut(kv, "="); k {
		case "JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS", "JDK_JAVA_OPTIONS", "OPENSEARCH_JAVA_OPTS", "JAVA_HOME",
			"OPENSEARCH_PATH_CONF", "OPENSEARCH_TMPDIR":
			continue
		}
		env = append(env, kv)
	}
	return append(env, "JAVA_HOME="+n.javaHome, "OPENSEARCH_PATH_CONF="+n.cfg.confDir(), "OPENSEARCH_TMPDIR="+n.cfg.tmpDir())
}

// start launches the JVM and waits until the node is ready; on failure it kills it.
func (n *Node) start(ctx context.Context) error {
	c := &n.cfg
	cdsArgs, recording := n.cdsArgs()
	args := append([]string{"-Xshare:auto"}, n.jvmArgs...)
	args = append(args, cdsArgs...)
	args = append(args,
		"-Dopensearch.path.home="+c.Home,
		"-Dopensearch.path.conf="+c.confDir(),
		"-Dopensearch.distribution.type=zip",
		"-Dopensearch.bundled_jdk=false",
		"-cp", n.classpath(),
		"org.opensearch.bootstrap.OpenSearch")
	cmd := exec.Command(filepath.Join(n.javaHome, "bin", "java"), args...)
	cmd.Dir = c.Dir
	cmd.Env = n.env()
	cmd.Stdout, cmd.Stderr = n.out, n.out
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid:   true,            // Stop and Kill signal the group
		Pdeathsig: syscall.SIGKILL, // a dying test binary takes its node along
	}
	if runningAsRoot() {
		cmd.SysProcAttr.Credential = nobodyCred()
	}
	p := &process{cmd: cmd, done: make(chan struct{}), recording: recording}
	started := make(chan error, 1)
	go func() {
		// Pdeathsig fires when the thread that forked the child ends, not the process. Pin
		// this goroutine to its thread until the JVM is gone, so that no other goroutine can
		// lock that thread and end it under the running node.
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			close(p.done)
			return
		}
		started <- nil
		_ = cmd.Wait() // how it ended is in the console output
		close(p.done)
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("osnode: start java: %w", err)
	}
	n.mu.Lock()
	n.proc = p
	n.mu.Unlock()

	t0 := time.Now()
	if err := n.waitReady(ctx, p); err != nil {
		p.signal(syscall.SIGKILL)
		<-p.done
		return fmt.Errorf("osnode: node in %s not ready after %v: %w\n--- last lines of its output ---\n%s",
			c.Dir, time.Since(t0).Round(time.Millisecond), err, n.out.tail())
	}
	return nil
}

// waitReady polls until the node has bound its HTTP port and reports at least yellow health.
func (n *Node) waitReady(ctx context.Context, p *process) error {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.StartTimeout)
	defer cancel()
	client := &http.Client{Timeout: 5 * time.Second}
	scheme := "http"
	if n.cfg.ClientTLS != nil {
		scheme = "https"
		client.Transport = &http.Transport{TLSClientConfig: n.cfg.ClientTLS.Clone()}
	}
	defer client.CloseIdleConnections()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		select {
		case <-p.done:
			return errors.New("the JVM exited")
		case <-ctx.Done():
			return errors.Join(ctx.Err(), lastErr)
		case <-tick.C:
		}
		if n.url == "" {
			// Only the first start has to learn the port; from then on it is fixed.
			b, err := os.ReadFile(n.cfg.portsFile())
			if err != nil {
				continue
			}
			addr, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
			_, port, err := splitPort(addr)
			if err != nil {
				return fmt.Errorf("read %s: %w", n.cfg.portsFile(), err)
			}
			n.cfg.HTTPPort = port
			n.url = scheme + "://127.0.0.1:" + strconv.Itoa(port)
		}
		lastErr = health(ctx, client, n.url, n.cfg.User, n.cfg.Password)
		if lastErr == nil {
			return nil
		}
	}
}

func splitPort(addr string) (host string, port int, err error) {
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		return "", 0, fmt.Errorf("no port in %q", addr)
	}
	port, err = strconv.Atoi(addr[i+1:])
	return addr[:i], port, err
}

func health(ctx context.Context, client *http.Client, url, user, password string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/_cluster/health?wait_for_status=yellow&timeout=1s", nil)
	if err != nil {
		return err
	}
	if user != "" {
		req.SetBasicAuth(user, password)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("cluster health: %s: %s", resp.Status, body)
	}
	return nil
}
