package sink

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/opensearch-project/opensearch-go/v4"

	"github.com/podlogs/podlogs/aggregator/internal/osrequest"
)

// KeyMapping says how kubernetes.labels, .annotations and .namespace_labels
// are mapped; it follows the aggregator's --enrich-key-style.
type KeyMapping int

const (
	// FlatObject maps them as flat_object: keys kept as written ("app" beside
	// "app.kubernetes.io/name"), one mapping field each whatever the keys.
	// The default: TestKeyStyleAgainstOpenSearch (aggregator/internal/enrich)
	// shows both styles filterable, and only this one immune to the field
	// limit when a cluster has many distinct keys.
	FlatObject KeyMapping = iota
	// KeywordFields maps each key as its own keyword field, for keys whose
	// dots were replaced by '_' (a dot would make an object path and collide).
	KeywordFields
)

// IndexTemplate returns the composable index template for the pod logs
// index, with labels and annotations mapped as flat_object.
func IndexTemplate(index string) map[string]any { return IndexTemplateFor(index, FlatObject) }

// IndexTemplateFor returns the composable index template for the pod logs
// index. kubernetes.* strings are keywords (exact filters and terms splits in
// the dashboard); labels and annotations follow keys; `data` (JSON bodies) is
// flat_object, so that one app's string and another's object under the same
// key cannot collide; `time` keeps the runtime's nanoseconds and
// podlogs.offset orders lines of one instant, so that a newest-first table
// sorted on both shows them in the order written.
func IndexTemplateFor(index string, keys KeyMapping) map[string]any {
	keyword := map[string]any{"type": "keyword", "ignore_above": 1024}
	keyMaps := map[string]any{"type": "flat_object"}
	if keys == KeywordFields {
		// Every string under kubernetes.* becomes a keyword (the dynamic
		// template below).
		keyMaps = map[string]any{"type": "object"}
	}
	return map[string]any{
		"index_patterns": []string{TemplatePattern(index)},
		"priority":       200,
		"template": map[string]any{
			// A pod with hundreds of labels cannot reach these: labels,
			// annotations and data are one field each (flat_object).
			"settings": map[string]any{
				"index.mapping.total_fields.limit": 2000,
				"index.mapping.depth.limit":        20,
			},
			"mappings": map[string]any{
				"dynamic_templates": []any{
					map[string]any{"kubernetes_strings": map[string]any{
						"path_match": "kubernetes.*", "match_mapping_type": "string", "mapping": keyword,
					}},
				},
				"properties": map[string]any{
					"@timestamp": map[string]any{"type": "date"},
					"time":       map[string]any{"type": "date_nanos"},
					"stream":     keyword,
					"log":        map[string]any{"type": "text"},
					"kubernetes": map[string]any{"properties": map[string]any{
						"pod_name":         keyword,
						"namespace_name":   keyword,
						"pod_id":           keyword,
						"host":             keyword,
						"container_name":   keyword,
						"docker_id":        keyword,
						"container_hash":   keyword,
						"container_image":  keyword,
						"labels":           keyMaps,
						"annotations":      keyMaps,
						"namespace_labels": keyMaps,
					}},
					"data": map[string]any{"type": "flat_object"},
					"podlogs": map[string]any{"properties": map[string]any{
						"offset":             map[string]any{"type": "long"},
						"malformed":          map[string]any{"type": "boolean"},
						"truncated":          map[string]any{"type": "boolean"},
						"original_bytes":     map[string]any{"type": "long"},
						"metadata_truncated": map[string]any{"type": "boolean"},
						"data_truncated":     map[string]any{"type": "boolean"},
					}},
				},
			},
		},
	}
}

// DeadLetterTemplate maps the dead-letter index: the rejected document is
// kept as an unindexed string, so whatever broke the main mapping cannot
// break this one. Its priority is above the main template's, which may
// match the dead-letter index too ("<name>-*" of a date pattern).
func DeadLetterTemplate(index string) map[string]any {
	return map[string]any{
		"index_patterns": []string{index},
		"priority":       210,
		"template": map[string]any{
			"mappings": map[string]any{
				"dynamic": false,
				"properties": map[string]any{
					"@timestamp":         map[string]any{"type": "date"},
					"index":              map[string]any{"type": "keyword"},
					"error_type":         map[string]any{"type": "keyword"},
					"reason":             map[string]any{"type": "text"},
					"status":             map[string]any{"type": "integer"},
					"document":           map[string]any{"type": "text", "index": false},
					"document_bytes":     map[string]any{"type": "long"},
					"document_truncated": map[string]any{"type": "boolean"},
					"dead_letter_reason": map[string]any{"type": "keyword"},
					"document_id":        map[string]any{"type": "keyword"},
					"deliveries":         map[string]any{"type": "integer"},
					"subject":            map[string]any{"type": "keyword"},
				},
			},
		},
	}
}

// PutTemplate installs (or replaces) a composable index template.
func PutTemplate(ctx context.Context, client *opensearch.Client, name string, body map[string]any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("encode index template %s: %w", name, err)
	}
	_, err = osrequest.Do(ctx, client, http.MethodPut, "/_index_template/"+name, b)
	if err != nil {
		return fmt.Errorf("install index template %s: %w", name, err)
	}
	return nil
}

// templateName derives a template name from an index name or date
// pattern: "podlogs-eks-pod-logs" for both "eks-pod-logs" and
// "eks-pod-logs-%Y.%m.%d", so that switching between the two replaces the
// template instead of adding an overlapping one.
func templateName(index string) string {
	return "podlogs-" + strings.Trim(strings.ReplaceAll(TemplatePattern(index), "*", ""), "-._")
}
