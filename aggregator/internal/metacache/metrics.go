package metacache

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	pods, tombstones prometheus.Gauge
	lookups, gets    *prometheus.CounterVec
	watchErrors      *prometheus.CounterVec
	resyncs, keysCut prometheus.Counter
	lookupSeconds    prometheus.Histogram
	lookupsBy        [len(sourceNames)]prometheus.Counter // lookups by Source, resolved once
}

func newMetrics(reg prometheus.Registerer) *metrics {
	const p = "podlogs_aggregator_metacache_"
	m := &metrics{
		pods:       prometheus.NewGauge(prometheus.GaugeOpts{Name: p + "pods", Help: "Pods in the metadata cache."}),
		tombstones: prometheus.NewGauge(prometheus.GaugeOpts{Name: p + "tombstones", Help: "Deleted pods whose metadata is kept for their late lines."}),
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{Name: p + "lookups_total",
			Help: "Lookups (one per source per batch) by result: hit, tombstone, fetched (GET fallback), miss (path only)."}, []string{"result"}),
		gets: prometheus.NewCounterVec(prometheus.CounterOpts{Name: p + "gets_total",
			Help: "Direct GETs of pods the informer had not delivered, by result: found, not_found, other_uid, error, throttled (not sent)."}, []string{"result"}),
		watchErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: p + "watch_errors_total",
			Help: "Informer watches that ended with an error and were re-established (re-list when needed)."}, []string{"resource"}),
		resyncs: prometheus.NewCounter(prometheus.CounterOpts{Name: p + "resyncs_total", Help: "Periodic informer resync events (no change, nothing rendered)."}),
		keysCut: prometheus.NewCounter(prometheus.CounterOpts{Name: p + "keys_dropped_total", Help: "Label and annotation keys left out by --enrich-max-keys, counted per pod rendering."}),
		lookupSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: p + "lookup_seconds",
			Help:    "Time to find a source's metadata, waits and GETs included.",
			Buckets: []float64{1e-6, 1e-5, 1e-4, 1e-3, 0.01, 0.1, 0.25, 0.5, 1, 2.5}}),
	}
	for i, r := range sourceNames {
		m.lookupsBy[i] = m.lookups.WithLabelValues(r)
	}
	for _, r := range []string{"found", "not_found", "other_uid", "error", "throttled"} {
		m.gets.WithLabelValues(r)
	}
	reg.MustRegister(m.pods, m.tombstones, m.lookups, m.gets, m.watchErrors, m.resyncs, m.keysCut, m.lookupSeconds)
	return m
}
