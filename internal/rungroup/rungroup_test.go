package rungroup

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"
)

// The first component to fail stops the others in the order they were
// added, each after the one before it returned, and its error is Run's.
func TestFailureStopsAllInOrder(t *testing.T) {
	var mu sync.Mutex
	var stops []string
	component := func(name string) func(context.Context) error {
		return func(ctx context.Context) error {
			<-ctx.Done()
			time.Sleep(10 * time.Millisecond) // a stop that takes a while
			mu.Lock()
			stops = append(stops, name)
			mu.Unlock()
			return nil
		}
	}
	boom := errors.New("boom")
	var g Group
	g.Until(context.Background())
	g.Add(component("input"))
	g.Add(func(context.Context) error { time.Sleep(20 * time.Millisecond); return boom })
	g.Add(component("output"))
	if err := g.Run(); !errors.Is(err, boom) {
		t.Fatalf("Run = %v, want the failing component's error", err)
	}
	if !slices.Equal(stops, []string{"input", "output"}) {
		t.Fatalf("stopped %v, want input before output", stops)
	}
}

// The end of Until's context (a signal) stops the group cleanly.
func TestUntilEndsCleanly(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var g Group
	g.Until(ctx)
	stopped := false
	g.AddStop(func() error { <-ctx.Done(); return nil }, func() { stopped = true })
	go func() { time.Sleep(10 * time.Millisecond); cancel() }()
	if err := g.Run(); err != nil || !stopped {
		t.Fatalf("Run = %v, stopped %v; want nil and stopped", err, stopped)
	}
}
