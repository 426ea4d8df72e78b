package scrape

import (
	"context"
	"net/http"
	"net/http/httptest"
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
