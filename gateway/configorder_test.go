package gateway

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMissingPartnerCARefusedFirst: a config whose partner CA file is
// missing is refused before the node creates anything, naming the file
// and the field: the development CA is not created and no store is.
func TestMissingPartnerCARefusedFirst(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "usa.yaml")
	cfg := "party: USA\nlisten: 127.0.0.1:0\ndata_dir: data\npki: {mode: dev, dev_ca_dir: ca}\n" +
		"partners:\n- {party: GBR, address: '127.0.0.1:1', ca_file: partners/GBR-ca.pem, agreement: {max_classification: SECRET, valid_until: 2030-01-01T00:00:00Z}}\n"
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = NewServer(c, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if !errors.Is(err, ErrConfig) || !strings.HasPrefix(err.Error(), path+": config: partner GBR ca_file: ") {
		t.Fatalf("NewServer: %v, want %s: config: partner GBR ca_file: ...", err, path)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Fatalf("the refused node left %v beside its config", names)
	}
}
