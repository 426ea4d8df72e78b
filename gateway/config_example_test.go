package gateway

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The documented example config parses and validates.
func TestExampleConfigValidates(t *testing.T) {
	c, err := LoadConfig(filepath.Join("..", "deploy", "node.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Party != "USA" || len(c.Partners) != 1 || c.Partners[0].Agreement == nil || len(c.Subscribers) != 1 {
		t.Fatalf("unexpected config: %+v", c)
	}
}

func TestConfigErrorsNameTheField(t *testing.T) {
	base, err := os.ReadFile(filepath.Join("..", "deploy", "node.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, from, to, want string
	}{
		{"bad party", "party: USA", "party: usa!", "party"},
		{"no listen", "listen: 0.0.0.0:7401", "listen: \"\"", "listen"},
		{"pki mode missing", "  mode: dev", "  mode: \"\"", "pki.mode is required"},
		{"pki mode unknown", "  mode: dev", "  mode: magic", "pki.mode \"magic\""},
		{"unknown key", "log_level: info", "log_level: info\nlog_levle: debug", "log_levle"},
		{"bad clearance", "clearance: SECRET", "clearance: SEKRIT", "clearance"},
		{"bad agreement level", "max_classification: SECRET", "max_classification: HUSH", "max_classification"},
		{"partner twice", "  - party: GBR", "  - party: USA", "partners[0].party USA"},
		{"no ca_file", "ca_file: /etc/tearline/partners/GBR-ca.pem", "ca_file: \"\"", "ca_file is required"},
		{"checkpoint interval", "checkpoint_interval: 30s", "checkpoint_interval: 10ms", "audit.checkpoint_interval"},
		{"delivery factor", "delivery_factor: 10", "delivery_factor: 0.5", "audit.anomalies.delivery_factor"},
		{"denials", "denials_per_partner: 20", "denials_per_partner: -1", "audit.anomalies.denials_per_partner"},
		{"memory limit too small", "memory_limit_mib: 1024", "memory_limit_mib: 16", "memory_limit_mib 16: want 0 (no limit) or 64"},
		{"memory limit negative", "memory_limit_mib: 1024", "memory_limit_mib: -5", "memory_limit_mib -5"},
		{"memory limit in bytes", "memory_limit_mib: 1024", "memory_limit_mib: 268435456", "memory_limit_mib 268435456"},
		{"gc percent too small", "gc_percent: 400", "gc_percent: 5", "gc_percent 5: want 0 (the runtime's default) or 10 to 10000"},
		{"gc percent negative", "gc_percent: 400", "gc_percent: -1", "gc_percent -1"},
		{"gc percent too large", "gc_percent: 400", "gc_percent: 100000", "gc_percent 100000"},
		{"metrics address", "metrics_listen: 127.0.0.1:9401", "metrics_listen: nowhere", "metrics_listen"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(string(base), tc.from) {
				t.Fatalf("example no longer contains %q", tc.from)
			}
			path := filepath.Join(t.TempDir(), "node.yaml")
			if err := os.WriteFile(path, []byte(strings.Replace(string(base), tc.from, tc.to, 1)), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := LoadConfig(path)
			if err == nil || !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("LoadConfig error = %v, want ErrConfig mentioning %q", err, tc.want)
			}
		})
	}
}

// The ends of gc_percent's range, and 0, are accepted as given.
func TestGCPercentRangeAccepted(t *testing.T) {
	base, err := os.ReadFile(filepath.Join("..", "deploy", "node.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []int{0, MinGCPercent, MaxGCPercent} {
		path := filepath.Join(t.TempDir(), "node.yaml")
		text := strings.Replace(string(base), "gc_percent: 400", fmt.Sprintf("gc_percent: %d", v), 1)
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := LoadConfig(path)
		if err != nil || c.GCPercent != v {
			t.Errorf("gc_percent %d: LoadConfig = %v, GCPercent %v; want it accepted as given", v, err, c.GCPercent)
		}
	}
}
