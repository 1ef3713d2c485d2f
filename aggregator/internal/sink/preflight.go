package sink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/opensearch-project/opensearch-go/v4"

	"github.com/podlogs/podlogs/aggregator/internal/osrequest"
)

// ErrRequestLimit is returned by Preflight when OpenSearch takes smaller
// requests than the writer sends.
var ErrRequestLimit = errors.New("OpenSearch takes smaller requests than the writer sends")

// Preflight checks at start what will not heal by waiting: credentials and
// certificates OpenSearch refuses (ErrAccessDenied, ErrTLS), an ISM policy
// asked of a cluster without the plugin (ErrNoISM), and bulk requests of
// bulkBytes larger than the cluster's http.max_content_length
// (ErrRequestLimit). An OpenSearch that does not answer yet may come back:
// that is logged, not returned; documents wait in the buffer.
func Preflight(ctx context.Context, client *opensearch.Client, ism ISMPolicy, bulkBytes int, log *slog.Logger) error {
	probeCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	version, err := Probe(probeCtx, client)
	switch {
	case errors.Is(err, ErrAccessDenied) || errors.Is(err, ErrTLS):
		return err
	case err != nil:
		log.Warn("OpenSearch does not answer yet; documents wait in the buffer until it does", "err", err)
		return nil
	}
	log.Info("OpenSearch answered", "version", version)
	if ism.Enabled() {
		if err := CheckISM(probeCtx, client); errors.Is(err, ErrNoISM) {
			return err
		}
	}
	limit, err := maxContentLength(probeCtx, client)
	switch {
	case err != nil:
		// A managed domain may not show its settings: a request too
		// large is then found out by its 413 (written apart).
		log.Info("cannot read OpenSearch's http.max_content_length; a bulk request it refuses as too large is split", "err", err)
	case int64(bulkBytes)+bulkSlack > limit:
		return fmt.Errorf("%w: bulk requests of up to %d bytes, http.max_content_length %d", ErrRequestLimit, int64(bulkBytes)+bulkSlack, limit)
	}
	return nil
}

// bulkSlack is what a bulk request may pass its byte limit by: a batch is
// cut before a message would pass it, unless the message is alone, and the
// largest message is the largest document's (also below the limit) with
// its action lines.
const bulkSlack = 64 << 10

// maxContentLength reads the cluster's http.max_content_length.
func maxContentLength(ctx context.Context, client *opensearch.Client) (int64, error) {
	out, err := osrequest.Do(ctx, client, http.MethodGet,
		"/_cluster/settings?include_defaults=true&filter_path=*.http.max_content_length", nil)
	if err != nil {
		return 0, err
	}
	var settings map[string]struct {
		HTTP struct {
			MaxContentLength string `json:"max_content_length"`
		} `json:"http"`
	}
	if err := json.Unmarshal(out, &settings); err != nil {
		return 0, fmt.Errorf("decode cluster settings: %w", err)
	}
	// Explicit settings win over defaults.
	for _, level := range []string{"transient", "persistent", "defaults"} {
		if v := settings[level].HTTP.MaxContentLength; v != "" {
			return parseByteSize(v)
		}
	}
	return 0, errors.New("http.max_content_length is not in the cluster's settings")
}

// parseByteSize reads OpenSearch's byte sizes: "100mb", "10485760b", "1gb".
func parseByteSize(s string) (int64, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	for _, u := range []struct {
		suffix string
		scale  int64
	}{{"pb", 1 << 50}, {"tb", 1 << 40}, {"gb", 1 << 30}, {"mb", 1 << 20}, {"kb", 1 << 10}, {"b", 1}} {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			n, err := strconv.ParseFloat(num, 64)
			if err != nil || n < 0 {
				return 0, fmt.Errorf("byte size %q", s)
			}
			return int64(n * float64(u.scale)), nil
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("byte size %q", s)
	}
	return n, nil
}
