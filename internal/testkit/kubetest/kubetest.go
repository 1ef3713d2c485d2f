// Package kubetest gives tests a real Kubernetes API server: kube-apiserver and etcd started by
// envtest (sigs.k8s.io/controller-runtime/pkg/envtest) once per test binary, on first use.
//
//	func TestMain(m *testing.M) { code := m.Run(); kubetest.Stop(); os.Exit(code) }
//
//	func TestSomething(t *testing.T) {
//		cfg := kubetest.Config(t)
//		ns := kubetest.Namespace(t, kubernetes.NewForConfigOrDie(cfg))
//		...
//	}
//
// The binaries come from $KUBEBUILDER_ASSETS, else from scripts/kube-assets.sh (which unpacks
// ../shared/kube-assets or builds them from the Go module proxy, cached under .cache/). Tests
// that need the API server are skipped under -short. A bare API server has no controllers:
// pods stay Pending and deleted namespaces stay Terminating, so every test takes a fresh
// namespace.
package kubetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/podlogs/podlogs/internal/testkit/repo"
)

var (
	once sync.Once
	// Set by once.
	env     *envtest.Environment
	config  *rest.Config
	kubecfg string // kubeconfig file for processes
	tmpDir  string
	err0    error
)

// Config returns an admin configuration for the shared API server, starting it on first use.
func Config(t testing.TB) *rest.Config {
	t.Helper()
	start(t)
	return rest.CopyConfig(config)
}

// Kubeconfig returns the path of an admin kubeconfig file for the shared API server, for
// binaries started by the test.
func Kubeconfig(t testing.TB) string {
	t.Helper()
	start(t)
	return kubecfg
}

// Namespace creates a fresh namespace for the test; it is deleted (and stays Terminating on a
// bare API server) when the test ends.
func Namespace(t testing.TB, c kubernetes.Interface, labels map[string]string) string {
	t.Helper()
	b := make([]byte, 4)
	rand.Read(b)
	name := "t-" + hex.EncodeToString(b)
	_, err := c.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("kubetest: create namespace: %v", err)
	}
	t.Cleanup(func() {
		c.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	return name
}

// Metrics returns the API server's Prometheus metrics text.
func Metrics(t testing.TB) string {
	t.Helper()
	c, err := kubernetes.NewForConfig(Config(t))
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(context.Background())
	if err != nil {
		t.Fatalf("kubetest: GET /metrics: %v", err)
	}
	return string(b)
}

// Stop stops the API server and etcd if they were started.
func Stop() {
	once.Do(func() { err0 = errors.New("kubetest: used after Stop") })
	if env != nil {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "kubetest: stop:", err)
		}
		env = nil
	}
	if tmpDir != "" {
		os.RemoveAll(tmpDir)
	}
}

func start(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("kubetest: needs a real Kubernetes API server; skipped under -short")
	}
	once.Do(func() {
		assets, err := assetsDir()
		if err != nil {
			err0 = err
			return
		}
		e := &envtest.Environment{BinaryAssetsDirectory: assets}
		cfg, err := e.Start()
		if err != nil {
			err0 = fmt.Errorf("kubetest: start kube-apiserver and etcd from %s: %w", assets, err)
			return
		}
		env, config = e, cfg
		user, err := e.AddUser(envtest.User{Name: "podlogs-test", Groups: []string{"system:masters"}}, nil)
		if err != nil {
			err0 = fmt.Errorf("kubetest: add user: %w", err)
			return
		}
		kc, err := user.KubeConfig()
		if err != nil {
			err0 = fmt.Errorf("kubetest: kubeconfig: %w", err)
			return
		}
		if tmpDir, err = os.MkdirTemp("", "podlogs-kubetest-"); err != nil {
			err0 = err
			return
		}
		kubecfg = filepath.Join(tmpDir, "kubeconfig")
		err0 = os.WriteFile(kubecfg, kc, 0o600)
	})
	if err0 != nil {
		t.Fatal(err0)
	}
}

// assetsDir is $KUBEBUILDER_ASSETS, or what scripts/kube-assets.sh prints.
func assetsDir() (string, error) {
	if d := os.Getenv("KUBEBUILDER_ASSETS"); d != "" {
		if _, err := os.Stat(filepath.Join(d, "kube-apiserver")); err == nil {
			return d, nil
		}
	}
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("bash", filepath.Join(root, "scripts", "kube-assets.sh"))
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("kubetest: scripts/kube-assets.sh: %w\n%s", err, stderr.Bytes())
	}
	return string(bytes.TrimSpace(stdout.Bytes())), nil
}

func repoRoot() (string, error) {
	root, err := repo.Root()
	if errors.Is(err, repo.ErrNotFound) {
		return "", errors.New("kubetest: no go.mod above the working directory")
	}
	return root, err
}
