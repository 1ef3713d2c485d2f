// Command devstack runs the whole pipeline on one machine without Docker:
// a real OpenSearch node (the integ-test distribution, cached under .cache),
// the aggregator with its embedded JetStream, a forwarder over a local pods
// tree, and a log generator writing realistic pod logs into that tree. It
// prints where to look and stops everything on Ctrl-C. `make run` starts it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/podlogs/podlogs/internal/testkit/osnode"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "devstack:", err)
		os.Exit(1)
	}
}

type config struct {
	bin, dir       string
	opensearchPort int
	pods           int
	rate           float64
	index          string
}

func run() error {
	var c config
	flag.StringVar(&c.bin, "bin", "bin", "directory holding the aggregator, forwarder and loggen binaries")
	flag.StringVar(&c.dir, "dir", ".run", "working directory: pods tree, data, logs (kept between runs)")
	flag.IntVar(&c.opensearchPort, "opensearch-port", 9200, "OpenSearch HTTP port on 127.0.0.1 (0: any free port)")
	flag.IntVar(&c.pods, "pods", 10, "pods the log generator simulates")
	flag.Float64Var(&c.rate, "rate", 5, "lines per second per pod")
	flag.StringVar(&c.index, "index", "eks-pod-logs", "index to write to")
	flag.Parse()
	for _, b := range []string{"aggregator", "forwarder", "loggen"} {
		if _, err := os.Stat(filepath.Join(c.bin, b)); err != nil {
			return fmt.Errorf("binary %s missing in %s: run 'make build' first", b, c.bin)
		}
	}
	dir, err := filepath.Abs(c.dir)
	if err != nil {
		return err
	}
	logs := filepath.Join(dir, "logs")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	port := c.opensearchPort
	if port != 0 && !portFree(port) {
		fmt.Printf("port %d is taken; OpenSearch gets a free port instead\n", port)
		port = 0
	}
	fmt.Println("starting OpenSearch (first run downloads it from Maven Central)...")
	home, err := osnode.EnsureDistribution(ctx, os.Getenv("PODLOGS_CACHE_DIR"), "")
	if err != nil {
		return err
	}
	osLog, err := os.Create(filepath.Join(logs, "opensearch.log"))
	if err != nil {
		return err
	}
	defer osLog.Close()
	node, err := osnode.Start(ctx, osnode.Config{Home: home, Dir: filepath.Join(dir, "opensearch"), HTTPPort: port, HeapMB: 768, Stdout: osLog})
	if err != nil {
		return err
	}
	defer func() {
		fmt.Println("stopping OpenSearch")
		if err := node.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "devstack:", err)
		}
	}()

	aggListen, aggAdmin, fwdAdmin := "127.0.0.1:7370", "127.0.0.1:9370", "127.0.0.1:9371"
	agg, err := startProc(c.bin, logs, "aggregator",
		"--id=aggregator-0", "--listen="+aggListen, "--admin-addr="+aggAdmin, "--data-dir="+filepath.Join(dir, "aggregator"),
		"--opensearch-url="+node.URL(), "--index="+c.index, "--flush-interval=200ms", "--log.format=text")
	if err != nil {
		return err
	}
	defer agg.stop()
	if err := waitReady(ctx, agg, aggAdmin); err != nil {
		return err
	}
	hostname, _ := os.Hostname()
	fwd, err := startProc(c.bin, logs, "forwarder",
		"--pods-root="+filepath.Join(dir, "pods"), "--data-dir="+filepath.Join(dir, "forwarder"),
		"--aggregator=dns:///"+aggListen, "--admin-addr="+fwdAdmin, "--node-name="+hostname, "--log.format=text",
		"--poll-interval=100ms", "--batch-linger=100ms")
	if err != nil {
		return err
	}
	defer fwd.stop()
	if err := os.MkdirAll(filepath.Join(dir, "pods"), 0o755); err != nil {
		return err
	}
	if err := waitReady(ctx, fwd, fwdAdmin); err != nil {
		return err
	}
	gen, err := startProc(c.bin, logs, "loggen",
		"--root="+filepath.Join(dir, "pods"), "--pods="+strconv.Itoa(c.pods), "--rate="+strconv.FormatFloat(c.rate, 'f', -1, 64),
		"--format=mixed", "--rotate-bytes=10485760", "--log.format=text")
	if err != nil {
		return err
	}
	defer gen.stop() // stops first: deferred calls run in reverse

	printWelcome(node.URL(), c.index, dir, aggAdmin, fwdAdmin)
	select {
	case <-ctx.Done():
		fmt.Println("\nstopping: log generator, forwarder, aggregator, OpenSearch")
	case <-agg.done:
		return fmt.Errorf("aggregator exited (%v); see %s", agg.err, agg.log)
	case <-fwd.done:
		return fmt.Errorf("forwarder exited (%v); see %s", fwd.err, fwd.log)
	case <-gen.done:
		return fmt.Errorf("log generator exited (%v); see %s", gen.err, gen.log)
	case <-node.Done():
		return fmt.Errorf("OpenSearch exited; see %s", osLog.Name())
	}
	return nil
}

func printWelcome(osURL, index, dir, aggAdmin, fwdAdmin string) {
	q := `{"size":5,"sort":[{"@timestamp":"desc"},{"time":"desc"}],"query":{"term":{"kubernetes.namespace_name":"ui"}},"_source":["@timestamp","stream","kubernetes.pod_name","log"]}`
	fmt.Printf(`
podlogs is running.

  OpenSearch            %[1]s   (index %[2]s)
  newest ui lines       curl -s '%[1]s/%[2]s/_search?pretty' -H 'Content-Type: application/json' -d '%[3]s'
  documents so far      curl -s '%[1]s/%[2]s/_count?pretty'
  aggregator metrics    http://%[4]s/metrics
  lines per pod         http://%[4]s/debug/accounting   (received, published, indexed; or: bin/aggregator report --aggregators=%[4]s --opensearch-url=%[1]s --index=%[2]s)
  forwarder metrics     http://%[5]s/metrics
  pods tree             %[6]s/pods   (append a CRI line to any */*/0.log and search for it)
  process logs          %[6]s/logs

Ctrl-C stops everything.
`, osURL, index, q, aggAdmin, fwdAdmin, dir)
}

type proc struct {
	name, log string
	cmd       *exec.Cmd
	done      chan struct{}
	err       error
}

func startProc(bin, logs, name string, args ...string) (*proc, error) {
	logPath := filepath.Join(logs, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(filepath.Join(bin, name), args...)
	cmd.Stdout, cmd.Stderr = f, f
	// Die with devstack, whatever happens to it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// stop sends SIGTERM and waits; after 30 s it kills.
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func waitReady(ctx context.Context, p *proc, admin string) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			return fmt.Errorf("%s exited during start-up (%v); see %s", p.name, p.err, p.log)
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if resp, err := http.Get("http://" + admin + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return errors.New(p.name + " did not become ready within 60s; see " + p.log)
}

func portFree(port int) bool {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	ln.Close()
	return true
}
