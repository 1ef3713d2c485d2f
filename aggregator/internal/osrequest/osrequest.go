// Package osrequest sends one request to OpenSearch and turns a non-2xx
// answer into an error carrying the status and OpenSearch's reason: what the
// bulk writer and the reconciliation report both need, below the typed API
// (bulk bodies are built by hand, and answers are decoded into small structs).
package osrequest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/opensearch-project/opensearch-go/v4"
)

// Do sends one request and returns the body of a 2xx answer, or an error
// naming the status and OpenSearch's reason.
func Do(ctx context.Context, client *opensearch.Client, method, path string, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Stream(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("read response: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		return nil, &StatusError{Status: resp.StatusCode, Body: truncate(out, 512), RetryAfter: resp.Header.Get("Retry-After")}
	}
	return out, nil
}

// StatusError is a non-2xx answer from OpenSearch.
type StatusError struct {
	Status     int
	Body       string
	RetryAfter string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("OpenSearch answered %d: %s", e.Status, e.Body)
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}
