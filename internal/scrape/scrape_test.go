package scrape

import (
	"context"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

func TestGetUintAndFloat(t *testing.T) {
	page := "# HELP a_total A.\n# TYPE a_total counter\na_total 42\nb{kind=\"x\"} 7\nc 1.5\n"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.Error(w, "nothing here", http.StatusNotFound)
			return
		}
		w.Write([]byte(page))
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	text, err := Get(context.Background(), addr)
	if err != nil || text != page {
		t.Fatalf("Get = %q, %v; want the page", text, err)
	}
	if n, err := Uint(text, "a_total"); err != nil || n != 42 {
		t.Errorf("Uint(a_total) = %d, %v; want 42", n, err)
	}
	for _, name := range []string{"b", "c", "missing", "a"} {
		if n, err := Uint(text, name); err == nil {
			t.Errorf("Uint(%s) = %d, want an error", name, n)
		}
	}
	if x, err := Float(text, "c"); err != nil || x != 1.5 {
		t.Errorf("Float(c) = %v, %v; want 1.5", x, err)
	}
	if x, err := Float(text, "a_total"); err != nil || x != 42 {
		t.Errorf("Float(a_total) = %v, %v; want 42", x, err)
	}
	for _, name := range []string{"b", "missing", "a"} {
		if x, err := Float(text, name); err == nil {
			t.Errorf("Float(%s) = %v, want an error", name, x)
		}
	}
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	})
	if _, err := Get(context.Background(), addr); err == nil || !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), "down") {
		t.Errorf("Get of a 503 = %v, want an error with the status and body", err)
	}
}

func TestHistogram(t *testing.T) {
	page := "# TYPE h histogram\nh_bucket{le=\"0.001\"} 3\nh_bucket{le=\"0.01\"} 5\nh_bucket{le=\"+Inf\"} 6\nh_sum 0.2\nh_count 6\nhh_bucket{le=\"1\"} 9\n"
	got, err := Histogram(page, "h")
	want := []Bucket{{0.001, 3}, {0.01, 5}, {math.Inf(1), 6}}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("Histogram(h) = %v, %v; want %v", got, err, want)
	}
	for name, page := range map[string]string{
		"missing":          "h_count 6\n",
		"no +Inf":          "h_bucket{le=\"0.001\"} 3\n",
		"falling count":    "h_bucket{le=\"0.001\"} 3\nh_bucket{le=\"+Inf\"} 2\n",
		"falling bound":    "h_bucket{le=\"0.01\"} 3\nh_bucket{le=\"0.001\"} 3\nh_bucket{le=\"+Inf\"} 3\n",
		"bad bound":        "h_bucket{le=\"x\"} 3\nh_bucket{le=\"+Inf\"} 3\n",
		"bad count":        "h_bucket{le=\"0.1\"} -3\nh_bucket{le=\"+Inf\"} 3\n",
		"labelled further": "h_bucket{le=\"0.1\",x=\"y\"} 3\nh_bucket{le=\"+Inf\"} 3\n",
	} {
		if got, err := Histogram(page, "h"); err == nil {
			t.Errorf("%s: Histogram = %v, want an error", name, got)
		}
	}
}
