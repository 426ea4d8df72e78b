// Package scrape reads a node's Prometheus metrics (metrics_listen) the
// way the benchmark and the tests need them: the page's text, and one
// unlabelled counter or gauge, or one histogram's buckets, from it.
package scrape

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Get returns the text of http://addr/metrics. A status other than 200 is
// an error that quotes the body.
func Get(ctx context.Context, addr string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET /metrics: %s: %s", resp.Status, b)
	}
	return string(b), nil
}

// Uint reads the unlabelled sample `name value` from a metrics page.
func Uint(text, name string) (uint64, error) {
	return parse(text, name, func(v string) (uint64, error) { return strconv.ParseUint(v, 10, 64) })
}

// Float reads the unlabelled sample `name value` from a metrics page, a
// number of seconds for instance.
func Float(text, name string) (float64, error) {
	return parse(text, name, func(v string) (float64, error) { return strconv.ParseFloat(v, 64) })
}

// parse finds the sample name and parses its value.
func parse[T any](text, name string, value func(string) (T, error)) (T, error) {
	for line := range strings.Lines(text) {
		n, v, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok || n != name {
			continue
		}
		x, err := value(v)
		if err != nil {
			return x, fmt.Errorf("metric %s: %q: %w", name, v, err)
		}
		return x, nil
	}
	var zero T
	return zero, fmt.Errorf("metric %s: not on the page", name)
}

// Bucket is one of a histogram's cumulative counts: the samples at most Le
// (+Inf for the last bucket).
type Bucket struct {
	Le    float64
	Count uint64
}

// Histogram reads the buckets `name_bucket{le="X"} N` of an unlabelled
// histogram, in the page's order, which ends with le="+Inf".
func Histogram(text, name string) ([]Bucket, error) {
	prefix := name + `_bucket{le="`
	var out []Bucket
	for line := range strings.Lines(text) {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), prefix)
		if !ok {
			continue
		}
		le, v, ok := strings.Cut(rest, `"} `)
		if !ok {
			return nil, fmt.Errorf("metric %s: bucket %q", name, line)
		}
		b := Bucket{Le: math.Inf(1)}
		var err error
		if le != "+Inf" {
			if b.Le, err = strconv.ParseFloat(le, 64); err != nil {
				return nil, fmt.Errorf("metric %s: bucket bound %q: %w", name, le, err)
			}
		}
		if b.Count, err = strconv.ParseUint(v, 10, 64); err != nil {
			return nil, fmt.Errorf("metric %s: bucket le=%s: %q: %w", name, le, v, err)
		}
		if n := len(out); n > 0 && (b.Le <= out[n-1].Le || b.Count < out[n-1].Count) {
			return nil, fmt.Errorf("metric %s: bucket le=%s (%d) after le=%g (%d): want rising bounds and counts", name, le, b.Count, out[n-1].Le, out[n-1].Count)
		}
		out = append(out, b)
	}
	if len(out) == 0 || !math.IsInf(out[len(out)-1].Le, 1) {
		return nil, fmt.Errorf("metric %s: no histogram ending in le=\"+Inf\" on the page", name)
	}
	return out, nil
}
