package main

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/podlogs/podlogs/aggregator/internal/metacache"
)

// newMetaCache returns the metadata cache, or nil when there is no
// Kubernetes API to read (enrichment off, or neither in a pod nor given a
// kubeconfig): documents then carry what log file paths say.
func newMetaCache(cfg config, reg prometheus.Registerer, log *slog.Logger) (*metacache.Cache, error) {
	if cfg.Enrichment == "off" {
		log.Info("enrichment is off: documents carry the pod metadata of their log file paths only")
		return nil, nil
	}
	var rc *rest.Config
	var err error
	source := "in-cluster"
	if cfg.Kubeconfig != "" {
		source = cfg.Kubeconfig
		rc, err = clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("read --kubeconfig %s: %w", cfg.Kubeconfig, err)
		}
	} else {
		rc, err = rest.InClusterConfig()
		if err != nil {
			// Not in a pod, or in one without a service account token: with
			// --enrichment=auto that is path-only enrichment, said clearly.
			reason := err.Error()
			if errors.Is(err, rest.ErrNotInCluster) {
				reason = "not running in a pod and no --kubeconfig"
			}
			log.Warn("no Kubernetes API: documents carry the pod metadata of their log file paths only (no labels, annotations or images); set --kubeconfig, or run in a pod with a service account",
				"reason", reason)
			return nil, nil
		}
	}
	rc.UserAgent = "podlogs-aggregator/" + version
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	log.Info("enriching documents from the Kubernetes API", "config", source, "host", rc.Host,
		"namespace_labels", cfg.EnrichNSLabels, "key_style", cfg.EnrichKeyStyle)
	return metacache.New(metacache.Config{
		Enrich: cfg.enrichOptions(), TombstoneTTL: cfg.TombstoneTTL, MissWait: cfg.MissWait,
		GetQPS: cfg.GetQPS, GetBurst: cfg.GetBurst, GetTimeout: max(5*cfg.MissWait, 5*time.Second), MissingTTL: cfg.TombstoneTTL,
		ResyncPeriod: cfg.ResyncPeriod,
	}, client, reg, log), nil
}
