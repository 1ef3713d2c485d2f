package finder

import (
	"testing"

	"github.com/podlogs/podlogs/internal/podpath"
)

func TestFilter(t *testing.T) {
	f := func(include, exclude []string, ns, pod, container string, want bool) {
		t.Helper()
		flt, err := NewFilter(include, exclude)
		if err != nil {
			t.Fatal(err)
		}
		if got := flt.Match(podpath.Ref{Namespace: ns, Pod: pod, Container: container}); got != want {
			t.Fatalf("include %v exclude %v: %s/%s/%s = %v, want %v", include, exclude, ns, pod, container, got, want)
		}
	}
	f(nil, nil, "ui", "ui-1", "ui", true)
	f([]string{"ui"}, nil, "ui", "ui-1", "ui", true)
	f([]string{"ui"}, nil, "carts", "carts-1", "carts", false)
	f(nil, []string{"kube-system"}, "kube-system", "kube-proxy-x", "kube-proxy", false)
	f(nil, []string{"*/*/istio-proxy"}, "ui", "ui-1", "istio-proxy", false)
	f(nil, []string{"*/*/istio-proxy"}, "ui", "ui-1", "ui", true)
	f([]string{"shop/cart-*"}, nil, "shop", "cart-7f9", "app", true)
	f([]string{"shop/cart-*"}, nil, "shop", "checkout-1", "app", false)
	f([]string{"*"}, []string{"ui/ui-1"}, "ui", "ui-1", "ui", false) // exclude wins
	f([]string{" ", ""}, nil, "ui", "ui-1", "ui", true)              // blanks are ignored
	var nilFilter *Filter
	if !nilFilter.Match(podpath.Ref{}) {
		t.Fatal("a nil filter must match everything")
	}
}

func TestFilterRejectsBadPatterns(t *testing.T) {
	for _, p := range []string{"a/b/c/d", "a//c", "[", "ns/["} {
		if _, err := NewFilter([]string{p}, nil); err == nil {
			t.Errorf("include %q accepted", p)
		}
		if _, err := NewFilter(nil, []string{p}); err == nil {
			t.Errorf("exclude %q accepted", p)
		}
	}
}
