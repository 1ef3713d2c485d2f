// Command loggen writes Kubernetes pod log files as kubelet and a container
// runtime would, under --root instead of /var/log/pods: for the demo
// pipeline, end-to-end tests and benchmarks. See package
// github.com/podlogs/podlogs/internal/loggen.
//
// Every flag may also be given in the environment as PODLOGS_<FLAG>
// (upper case, '-' and '.' as '_'); the command line wins.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/podlogs/podlogs/internal/loggen"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.LookupEnv, os.Stderr)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
	case errors.As(err, new(usageError)):
		fmt.Fprintln(os.Stderr, "loggen:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "loggen:", err)
		os.Exit(1)
	}
}

type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

// run parses args (with environment fallback from lookupEnv), logs to
// stderr, and writes logs until done or ctx is cancelled.
func run(ctx context.Context, args []string, lookupEnv func(string) (string, bool), stderr io.Writer) error {
	cfg := loggen.NewConfig()
	fs := flag.NewFlagSet("loggen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.Root, "root", "", "directory written as /var/log/pods would be (required)")
	fs.IntVar(&cfg.Pods, "pods", cfg.Pods, "number of pods, spread over the namespaces")
	namespaces := fs.String("namespaces", strings.Join(cfg.Namespaces, ","), "comma-separated namespaces, one Deployment each")
	fs.StringVar(&cfg.Format, "format", cfg.Format, "log file format: cri, docker or mixed (per pod)")
	fs.Int64Var(&cfg.Lines, "lines", cfg.Lines, "lines per pod, then stop (0: until SIGINT/SIGTERM)")
	fs.Float64Var(&cfg.Rate, "rate", cfg.Rate, "lines per second per pod (0: as fast as possible)")
	fs.Int64Var(&cfg.RotateBytes, "rotate-bytes", cfg.RotateBytes, "rotate a log file once it reaches this size (0: never)")
	fs.IntVar(&cfg.RotateKeep, "rotate-keep", cfg.RotateKeep, "rotated files kept per container, the older ones gzipped (kubelet's containerLogMaxFiles - 1)")
	fs.Int64Var(&cfg.Seed, "seed", cfg.Seed, "seed for pod names and messages")
	logLevel := fs.String("log.level", "info", "log level: debug, info, warn or error")
	logFormat := fs.String("log.format", "text", "log format: text or json")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected arguments %q", fs.Args())}
	}
	if err := envFallback(fs, lookupEnv); err != nil {
		return usageError{err}
	}
	cfg.Namespaces = strings.Split(*namespaces, ",")

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return usageError{fmt.Errorf("--log.level: %w", err)}
	}
	opts := &slog.HandlerOptions{Level: level}
	var logger *slog.Logger
	switch *logFormat {
	case "text":
		logger = slog.New(slog.NewTextHandler(stderr, opts))
	case "json":
		logger = slog.New(slog.NewJSONHandler(stderr, opts))
	default:
		return usageError{fmt.Errorf("--log.format must be text or json, got %q", *logFormat)}
	}
	if err := cfg.Validate(); err != nil {
		return usageError{err}
	}

	logger.Info("loggen starting", "root", cfg.Root, "pods", cfg.Pods, "namespaces", cfg.Namespaces,
		"format", cfg.Format, "lines_per_pod", cfg.Lines, "rate_per_pod", cfg.Rate,
		"rotate_bytes", cfg.RotateBytes, "rotate_keep", cfg.RotateKeep, "seed", cfg.Seed)
	start := time.Now()
	st, err := loggen.Run(ctx, cfg)
	elapsed := time.Since(start)
	attrs := []any{"lines", st.Lines, "bytes", st.Bytes, "rotations", st.Rotations,
		"elapsed", elapsed.Round(time.Millisecond).String()}
	if s := elapsed.Seconds(); s > 0 {
		attrs = append(attrs, "lines_per_second", int64(float64(st.Lines)/s))
	}
	if err != nil {
		logger.Error("loggen failed; files may be incomplete", append(attrs, "err", err)...)
		return err
	}
	logger.Info("loggen stopped", attrs...)
	return nil
}

// envFallback sets every flag not given on the command line from
// PODLOGS_<FLAG>, if that is set.
func envFallback(fs *flag.FlagSet, lookupEnv func(string) (string, bool)) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] {
			return
		}
		name := "PODLOGS_" + strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(f.Name))
		if v, ok := lookupEnv(name); ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", name, v, err))
			}
		}
	})
	return errors.Join(errs...)
}
