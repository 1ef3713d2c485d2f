package sink

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	bulkRequests, docs, errors *prometheus.CounterVec
	bulkSeconds                prometheus.Histogram
	// docs by outcome, looked up once: they count every document.
	created, duplicate, retried, deadLettered prometheus.Counter
	deadLetters, dropped                      *prometheus.CounterVec
	split                                     prometheus.Counter
	// Per namespace (and per pod): Config.Accounting.
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		bulkRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podlogs_aggregator_bulk_requests_total", Help: "Bulk requests to OpenSearch by result (ok, failed).",
		}, []string{"result"}),
		docs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podlogs_aggregator_documents_total", Help: "Documents written to OpenSearch by outcome (created, duplicate, retried, dead_lettered).",
		}, []string{"outcome"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podlogs_aggregator_opensearch_errors_total", Help: "Per-document errors OpenSearch returned, by its error type.",
		}, []string{"type"}),
		bulkSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "podlogs_aggregator_bulk_seconds", Help: "Duration of bulk requests to OpenSearch.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 10),
		}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podlogs_aggregator_dead_letters_total",
			Help: "Documents written to the dead-letter index, by why they could not be indexed (rejected, too_many_deliveries, request_too_large, request_refused, unreadable_message, unpublishable).",
		}, []string{"reason"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podlogs_aggregator_dead_letters_dropped_total",
			Help: "Documents dropped because the dead-letter index refused them for good, by reason (dead_letter_refused); each is logged.",
		}, []string{"reason"}),
		split: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "podlogs_aggregator_bulk_requests_split_total",
			Help: "Bulk requests OpenSearch refused as a whole for what they hold (413, 400), then written apart.",
		}),
	}
	m.created, m.duplicate = m.docs.WithLabelValues("created"), m.docs.WithLabelValues("duplicate")
	m.retried, m.deadLettered = m.docs.WithLabelValues("retried"), m.docs.WithLabelValues("dead_lettered")
	for _, r := range deadLetterReasons {
		m.deadLetters.WithLabelValues(r)
	}
	m.dropped.WithLabelValues(dropRefused)
	reg.MustRegister(m.bulkRequests, m.docs, m.errors, m.bulkSeconds, m.deadLetters, m.dropped, m.split)
	return m
}
