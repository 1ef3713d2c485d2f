package main

import (
	"bytes"
	"errors"
	"flag"
	"path/filepath"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	f := func(args []string, env map[string]string, wantFiles int, wantLog ...string) {
		t.Helper()
		root := t.TempDir()
		var stderr bytes.Buffer
		lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
		err := run(t.Context(), append([]string{"--root", root}, args...), lookup, &stderr)
		if err != nil {
			t.Fatalf("run(%q): %v\n%s", args, err, &stderr)
		}
		files, _ := filepath.Glob(filepath.Join(root, "*", "*", "0.log"))
		if len(files) != wantFiles {
			t.Errorf("run(%q): %d log files, want %d", args, len(files), wantFiles)
		}
		for _, w := range wantLog {
			if !strings.Contains(stderr.String(), w) {
				t.Errorf("run(%q): log lacks %q:\n%s", args, w, &stderr)
			}
		}
	}
	f([]string{"--pods", "3", "--lines", "5", "--rate", "0"}, nil, 3,
		"msg=\"loggen starting\"", "msg=\"loggen stopped\" lines=15 ")
	// Environment fallback; the command line wins.
	f([]string{"--rate", "0"}, map[string]string{"PODLOGS_PODS": "2", "PODLOGS_LINES": "4", "PODLOGS_RATE": "1"}, 2, "lines=8 ")
	f([]string{"--pods", "4", "--rate", "0"}, map[string]string{"PODLOGS_PODS": "2", "PODLOGS_LINES": "1"}, 4, "lines=4 ")
	f([]string{"--pods", "1", "--lines", "3", "--rate", "0", "--namespaces", "shop", "--format", "docker", "--log.format", "json"}, nil, 1,
		`"msg":"loggen stopped"`, `"lines":3,`, `"elapsed":"`)
}

func TestRunErrors(t *testing.T) {
	f := func(args []string, env map[string]string, want string) {
		t.Helper()
		var stderr bytes.Buffer
		lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
		err := run(t.Context(), args, lookup, &stderr)
		if !errors.As(err, new(usageError)) || !strings.Contains(err.Error(), want) {
			t.Errorf("run(%q) = %v, want a usage error with %q", args, err, want)
		}
	}
	f([]string{"--pods", "2"}, nil, "root must be set")
	f([]string{"--root", "r", "--format", "xml"}, nil, "format")
	f([]string{"--root", "r", "--bogus"}, nil, "bogus")
	f([]string{"--root", "r", "extra"}, nil, "unexpected arguments")
	f([]string{"--root", "r"}, map[string]string{"PODLOGS_PODS": "many"}, "PODLOGS_PODS")
	f([]string{"--root", "r", "--log.level", "loud"}, nil, "log.level")

	if err := run(t.Context(), []string{"-h"}, nil, new(bytes.Buffer)); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v", err)
	}
}
