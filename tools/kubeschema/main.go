// Command kubeschema writes the JSON schemas kubeconform reads, from a Kubernetes OpenAPI v2
// document (swagger.json), so that manifests can be validated without the network.
//
// kubeconform's usual schemas (the "standalone-strict" tree of yannh/kubernetes-json-schema)
// are downloaded from GitHub, which a build here cannot reach. They are made by
// openapi2jsonschema from the same swagger.json that Kubernetes publishes; this command does
// the same conversion, in the same layout:
//
//	<out>/v<version>-standalone-strict/<kind>[-<group>]-<version>.json
//
// Each file is one kind's schema with every definition it refers to under "definitions"
// (references stay "#/definitions/…", so recursive types need no expansion), objects closed
// with additionalProperties: false (strict), apiVersion and kind pinned by enum, and
// IntOrString and Quantity accepting numbers as YAML writes them.
//
// The Makefile feeds it the swagger.json of Kubernetes v1.27 that the module k8s.io/kube-openapi
// (pinned in tools/go.mod) carries as test data.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

func main() {
	swagger := flag.String("swagger", "", "Kubernetes swagger.json (OpenAPI v2)")
	out := flag.String("out", "", "directory to write <version>-standalone-strict/ into")
	version := flag.String("kubernetes-version", "", "version to name the tree after (default: the document's info.version)")
	flag.Parse()
	if *swagger == "" || *out == "" {
		fmt.Fprintln(os.Stderr, "usage: kubeschema -swagger swagger.json -out DIR [-kubernetes-version 1.27.0]")
		os.Exit(2)
	}
	n, dir, err := run(*swagger, *out, *version)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kubeschema:", err)
		os.Exit(1)
	}
	fmt.Printf("kubeschema: %d schemas in %s\n", n, dir)
}

type gvk struct{ Group, Version, Kind string }

func run(swaggerPath, out, version string) (int, string, error) {
	raw, err := os.ReadFile(swaggerPath)
	if err != nil {
		return 0, "", err
	}
	var doc struct {
		Info struct {
			Version string `json:"version"`
		} `json:"info"`
		Definitions map[string]map[string]any `json:"definitions"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return 0, "", fmt.Errorf("decode %s: %w", swaggerPath, err)
	}
	if version == "" {
		version = doc.Info.Version
	}
	version = strings.TrimPrefix(version, "v")
	if version == "" || version == "unversioned" {
		return 0, "", fmt.Errorf("%s names no Kubernetes version: pass -kubernetes-version", swaggerPath)
	}
	defs := doc.Definitions
	if len(defs) == 0 {
		return 0, "", fmt.Errorf("%s has no definitions", swaggerPath)
	}
	numbers := func(other string) map[string]any {
		return map[string]any{"oneOf": []any{map[string]any{"type": "string"}, map[string]any{"type": other}}}
	}
	for name, def := range defs {
		switch {
		case strings.HasSuffix(name, ".util.intstr.IntOrString"):
			defs[name] = numbers("integer")
		case strings.HasSuffix(name, ".api.resource.Quantity"):
			defs[name] = numbers("number")
		default:
			closeObjects(def)
		}
	}

	dir := filepath.Join(out, "v"+version+"-standalone-strict")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, "", err
	}
	names := make([]string, 0, len(defs))
	for name := range defs {
		names = append(names, name)
	}
	sort.Strings(names)
	n := 0
	for _, name := range names {
		for _, k := range kinds(defs[name]) {
			schema, err := standalone(defs, name, k)
			if err != nil {
				return n, dir, err
			}
			file := strings.ToLower(k.Kind)
			if k.Group != "" {
				file += "-" + strings.ToLower(strings.Split(k.Group, ".")[0])
			}
			file += "-" + strings.ToLower(k.Version) + ".json"
			if err := os.WriteFile(filepath.Join(dir, file), schema, 0o644); err != nil {
				return n, dir, err
			}
			n++
		}
	}
	return n, dir, nil
}

// kinds returns the group/version/kinds a definition is served as.
func kinds(def map[string]any) []gvk {
	list, _ := def["x-kubernetes-group-version-kind"].([]any)
	var out []gvk
	for _, e := range list {
		m, _ := e.(map[string]any)
		g, _ := m["group"].(string)
		v, _ := m["version"].(string)
		k, _ := m["kind"].(string)
		if v != "" && k != "" {
			out = append(out, gvk{g, v, k})
		}
	}
	return out
}

// closeObjects forbids undocumented fields in every object schema that lists its properties.
func closeObjects(s any) {
	switch v := s.(type) {
	case map[string]any:
		if _, ok := v["properties"]; ok {
			if _, set := v["additionalProperties"]; !set {
				v["additionalProperties"] = false
			}
		}
		for _, c := range v {
			closeObjects(c)
		}
	case []any:
		for _, c := range v {
			closeObjects(c)
		}
	}
}

const refPrefix = "#/definitions/"

// standalone returns the schema of one kind with every definition it reaches.
func standalone(defs map[string]map[string]any, name string, k gvk) ([]byte, error) {
	reached := map[string]any{}
	var walk func(any) error
	walk = func(s any) error {
		switch v := s.(type) {
		case map[string]any:
			if ref, ok := v["$ref"].(string); ok {
				target := strings.TrimPrefix(ref, refPrefix)
				if target == ref {
					return fmt.Errorf("%s: reference %q outside the document", name, ref)
				}
				if _, seen := reached[target]; !seen {
					def, ok := defs[target]
					if !ok {
						return fmt.Errorf("%s: reference to missing definition %q", name, target)
					}
					reached[target] = def
					if err := walk(def); err != nil {
						return err
					}
				}
			}
			for _, c := range v {
				if err := walk(c); err != nil {
					return err
				}
			}
		case []any:
			for _, c := range v {
				if err := walk(c); err != nil {
					return err
				}
			}
		}
		return nil
	}
	root := map[string]any{}
	for key, v := range defs[name] {
		root[key] = v
	}
	if err := walk(root); err != nil {
		return nil, err
	}
	apiVersion := k.Version
	if k.Group != "" {
		apiVersion = k.Group + "/" + k.Version
	}
	if props, ok := root["properties"].(map[string]any); ok {
		props = copyMap(props)
		if _, ok := props["apiVersion"]; ok {
			props["apiVersion"] = map[string]any{"type": "string", "enum": []any{apiVersion}}
		}
		if _, ok := props["kind"]; ok {
			props["kind"] = map[string]any{"type": "string", "enum": []any{k.Kind}}
		}
		root["properties"] = props
	}
	root["definitions"] = reached
	return json.MarshalIndent(root, "", "  ")
}

func copyMap(m map[string]any) map[string]any {
	c := make(map[string]any, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}
