// Package rungroup runs a binary's components until the first one returns,
// then stops them all in the order they were added (inputs first), each
// after the one before it has returned. It is oklog/run (the run group of
// Prometheus' main) with the two things both binaries need: a context that
// ends the group (the signal), and components as Run(ctx) functions.
package rungroup

import (
	"context"
	"errors"

	"github.com/oklog/run"
)

// Group is a set of components. The zero Group is ready.
type Group struct {
	g   run.Group
	ctx context.Context
}

// Until makes the group end when ctx does (SIGTERM): Run then returns nil.
func (g *Group) Until(ctx context.Context) {
	g.ctx = ctx
	g.g.Add(run.ContextHandler(ctx))
}

// Add adds a component: run runs until its context ends or it fails.
// Stopping it cancels that context and waits for run to return.
func (g *Group) Add(runFn func(context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	g.g.Add(func() error { defer close(done); return runFn(ctx) }, func(error) { cancel(); <-done })
}

// AddStop adds a component stopped by stop, which must make execute return
// and return itself once it has.
func (g *Group) AddStop(execute func() error, stop func()) {
	g.g.Add(execute, func(error) { stop() })
}

// Run runs every component and returns the error of the first to return,
// once all have; nil if that was the end of Until's context.
func (g *Group) Run() error {
	err := g.g.Run()
	if g.ctx != nil && g.ctx.Err() != nil && errors.Is(err, g.ctx.Err()) {
		return nil
	}
	return err
}
