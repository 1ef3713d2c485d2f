package finder

import (
	"fmt"
	"path"
	"strings"

	"github.com/podlogs/podlogs/internal/podpath"
)

// Filter selects containers by namespace, pod and container name. A pattern
// is "namespace[/pod[/container]]", each part a path.Match glob, missing
// parts matching anything: "kube-system", "*/*/istio-proxy",
// "shop/cart-*". A container is followed if it matches an include pattern
// (or there are none) and no exclude pattern.
type Filter struct {
	include, exclude [][3]string
}

// NewFilter checks the patterns and returns the filter.
func NewFilter(include, exclude []string) (*Filter, error) {
	f := &Filter{}
	var err error
	if f.include, err = parsePatterns(include); err != nil {
		return nil, fmt.Errorf("include pattern: %w", err)
	}
	if f.exclude, err = parsePatterns(exclude); err != nil {
		return nil, fmt.Errorf("exclude pattern: %w", err)
	}
	return f, nil
}

func parsePatterns(ps []string) ([][3]string, error) {
	var out [][3]string
	for _, p := range ps {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		parts := strings.Split(p, "/")
		if len(parts) > 3 {
			return nil, fmt.Errorf("%q has more than namespace/pod/container", p)
		}
		pat := [3]string{"*", "*", "*"}
		for i, part := range parts {
			if part == "" {
				return nil, fmt.Errorf("%q has an empty part", p)
			}
			if _, err := path.Match(part, ""); err != nil {
				return nil, fmt.Errorf("%q: %w", p, err)
			}
			pat[i] = part
		}
		out = append(out, pat)
	}
	return out, nil
}

// Match tells whether the container of ref is followed. A nil filter
// follows everything.
func (f *Filter) Match(ref podpath.Ref) bool {
	if f == nil {
		return true
	}
	name := [3]string{ref.Namespace, ref.Pod, ref.Container}
	if len(f.include) > 0 && !anyMatch(f.include, name) {
		return false
	}
	return !anyMatch(f.exclude, name)
}

func anyMatch(pats [][3]string, name [3]string) bool {
	for _, p := range pats {
		ok := true
		for i := range p {
			if m, _ := path.Match(p[i], name[i]); !m {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}
