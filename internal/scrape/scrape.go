// Package scrape reads a node's Prometheus metrics (metrics_listen) the
// way the benchmark and the tests need them: the page's text, and one
// unlabelled counter or gauge from it.
package scrape

import (
	"context"
	"fmt"
	"io"
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
