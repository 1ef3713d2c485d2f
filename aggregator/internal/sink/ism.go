package sink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"github.com/opensearch-project/opensearch-go/v4"

	"github.com/podlogs/podlogs/aggregator/internal/osrequest"
)

// ISMPolicy asks for an Index State Management policy on the indices
// written, installed with the template and attached to new indices by its
// ism_template.
type ISMPolicy struct {
	// DeleteAfterDays deletes an index that many days after it was created
	// (0: never). A data stream's write index is deleted only after a
	// rollover made it a former one.
	DeleteAfterDays int
	// RolloverSize and RolloverAge (data streams only) start a new backing
	// index when the write index's primary shards reach that size ("50gb")
	// or it reaches that age ("1d"); empty: no such condition.
	RolloverSize string
	RolloverAge  string
}

// Enabled reports whether a policy is asked for.
func (p ISMPolicy) Enabled() bool {
	return p.DeleteAfterDays > 0 || p.RolloverSize != "" || p.RolloverAge != ""
}

var (
	ismSize = regexp.MustCompile(`^[0-9]+(b|kb|mb|gb|tb|pb)$`)
	ismAge  = regexp.MustCompile(`^[0-9]+(d|h|m|s)$`)
)

// Validate checks the policy against the index mode.
func (p ISMPolicy) Validate(mode IndexMode, index string) error {
	var errs []error
	if p.DeleteAfterDays < 0 {
		errs = append(errs, fmt.Errorf("the days after which indices are deleted must not be negative, got %d", p.DeleteAfterDays))
	}
	if p.RolloverSize != "" && !ismSize.MatchString(p.RolloverSize) {
		errs = append(errs, fmt.Errorf("rollover size %q: want a number and b, kb, mb, gb, tb or pb (50gb)", p.RolloverSize))
	}
	if p.RolloverAge != "" && !ismAge.MatchString(p.RolloverAge) {
		errs = append(errs, fmt.Errorf("rollover age %q: want a number and d, h, m or s (1d)", p.RolloverAge))
	}
	rollover := p.RolloverSize != "" || p.RolloverAge != ""
	switch {
	case rollover && mode != DataStream:
		errs = append(errs, errors.New("rollover needs a data stream (--index-mode=data-stream); a date pattern in --index starts new indices by itself"))
	case p.DeleteAfterDays > 0 && mode == DataStream && !rollover:
		errs = append(errs, errors.New("deleting a data stream's indices needs a rollover condition (size or age): the write index is never deleted"))
	case p.DeleteAfterDays > 0 && mode == PlainIndex && !IsDatePattern(index):
		errs = append(errs, errors.New("deleting after days needs a date pattern in --index (or a data stream): the fixed index would be deleted whole"))
	}
	return errors.Join(errs...)
}

// ISMPolicyBody returns the policy document for indices (or data streams)
// matching pattern: a "hot" state that rolls over when asked, and a
// "delete" state reached DeleteAfterDays after the index was created.
func ISMPolicyBody(p ISMPolicy, pattern string) map[string]any {
	hot := map[string]any{"name": "hot", "actions": []any{}, "transitions": []any{}}
	if p.RolloverSize != "" || p.RolloverAge != "" {
		cond := map[string]any{}
		if p.RolloverSize != "" {
			cond["min_primary_shard_size"] = p.RolloverSize
		}
		if p.RolloverAge != "" {
			cond["min_index_age"] = p.RolloverAge
		}
		hot["actions"] = []any{map[string]any{"rollover": cond}}
	}
	states := []any{hot}
	if p.DeleteAfterDays > 0 {
		hot["transitions"] = []any{map[string]any{
			"state_name": "delete",
			"conditions": map[string]any{"min_index_age": strconv.Itoa(p.DeleteAfterDays) + "d"},
		}}
		states = append(states, map[string]any{
			"name": "delete", "actions": []any{map[string]any{"delete": map[string]any{}}}, "transitions": []any{},
		})
	}
	return map[string]any{"policy": map[string]any{
		"description":   "podlogs: pod log indices " + pattern,
		"default_state": "hot",
		"states":        states,
		"ism_template":  []any{map[string]any{"index_patterns": []string{pattern}, "priority": 100}},
	}}
}

// ErrNoISM is returned when the cluster has no Index State Management
// plugin (the integ-test distribution, a cluster without the plugin).
var ErrNoISM = errors.New("OpenSearch has no Index State Management plugin (_plugins/_ism)")

const ismPolicies = "/_plugins/_ism/policies/"

// CheckISM returns ErrNoISM when the cluster has no ISM plugin, nil when it
// has one, and another error when OpenSearch did not answer.
func CheckISM(ctx context.Context, client *opensearch.Client) error {
	_, err := osrequest.Do(ctx, client, http.MethodGet, ismPolicies+"?size=1", nil)
	return ismErr(err)
}

// ismErr tells a missing plugin ("no handler found for uri", 400 or 405)
// from a missing policy (404) and other failures.
func ismErr(err error) error {
	var se *osrequest.StatusError
	if errors.As(err, &se) && (se.Status == http.StatusBadRequest || se.Status == http.StatusMethodNotAllowed) &&
		(strings.Contains(se.Body, "no handler found") || strings.Contains(se.Body, "Incorrect HTTP method")) {
		return fmt.Errorf("%w: %s", ErrNoISM, se.Body)
	}
	return err
}

// PutISMPolicy installs the policy id, or updates it when it exists.
func PutISMPolicy(ctx context.Context, client *opensearch.Client, id string, body map[string]any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("encode ISM policy %s: %w", id, err)
	}
	path := ismPolicies + id
	out, err := osrequest.Do(ctx, client, http.MethodGet, path, nil)
	var se *osrequest.StatusError
	switch {
	case err == nil:
		var cur struct {
			SeqNo       int64 `json:"_seq_no"`
			PrimaryTerm int64 `json:"_primary_term"`
		}
		if err := json.Unmarshal(out, &cur); err != nil {
			return fmt.Errorf("read ISM policy %s: %w", id, err)
		}
		path += fmt.Sprintf("?if_seq_no=%d&if_primary_term=%d", cur.SeqNo, cur.PrimaryTerm)
	case errors.As(err, &se) && se.Status == http.StatusNotFound:
	default:
		return fmt.Errorf("read ISM policy %s: %w", id, ismErr(err))
	}
	if _, err := osrequest.Do(ctx, client, http.MethodPut, path, b); err != nil {
		return fmt.Errorf("install ISM policy %s: %w", id, ismErr(err))
	}
	return nil
}
