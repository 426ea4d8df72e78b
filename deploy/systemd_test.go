// Package deploy tests the files to run a node for real: the systemd unit,
// the container image and the Kubernetes manifests. It has no code of its
// own.
package deploy

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tearline/tearline/gateway"
)

const unitFile = "systemd/tearline-node.service"

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tearline-deploy-test-")
	if err != nil {
		panic(err)
	}
	buildDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// unit is a parsed systemd unit: section → key → values in order.
type unit map[string]map[string][]string

func parseUnit(t *testing.T, path string) unit {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unit{}
	var section string
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";") {
			continue
		}
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			section = line[1 : len(line)-1]
			u[section] = map[string][]string{}
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || section == "" || strings.HasSuffix(line, `\`) {
			t.Fatalf("%s:%d: %q: want Key=Value in a section (no continuation lines)", path, n, line)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		u[section][k] = append(u[section][k], v)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return u
}

// last is the value in force (the last assignment).
func (u unit) last(section, key string) (string, bool) {
	vs := u[section][key]
	if len(vs) == 0 {
		return "", false
	}
	return vs[len(vs)-1], true
}

func yes(v string) bool {
	switch strings.ToLower(v) {
	case "yes", "true", "on", "1":
		return true
	}
	return false
}

// under reports whether p is dir or inside it.
func under(p, dir string) bool {
	p, dir = filepath.Clean(p), filepath.Clean(dir)
	return p == dir || strings.HasPrefix(p, dir+"/")
}

func TestSystemdUnit(t *testing.T) {
	u := parseUnit(t, unitFile)
	svc := u["Service"]
	if svc == nil {
		t.Fatal("no [Service] section")
	}
	get := func(k string) string { v, _ := u.last("Service", k); return v }

	exec0 := strings.Fields(get("ExecStart"))
	if len(exec0) < 1 || filepath.Base(exec0[0]) != "tearline" || !filepath.IsAbs(exec0[0]) ||
		strings.Join(exec0[1:], " ") != "node --config /etc/tearline/node.yaml" {
		t.Errorf("ExecStart=%s: want /ABS/PATH/tearline node --config /etc/tearline/node.yaml", get("ExecStart"))
	}
	if _, ok := svc["ExecReload"]; ok {
		// gateway/vault.go handles SIGHUP (CRL refresh) in pki.mode vault
		// only; nothing re-reads the config, and in mode dev SIGHUP ends
		// the process.
		t.Errorf("ExecReload=%s: the node does not reload its config on any signal", get("ExecReload"))
	}

	// Who it runs as.
	user := get("User")
	if !yes(get("DynamicUser")) && (user == "" || user == "root" || user == "0") {
		t.Errorf("User=%q: want a dedicated user or DynamicUser=yes", user)
	}
	if user != "" && !yes(get("DynamicUser")) {
		data, err := os.ReadFile("systemd/tearline.sysusers.conf")
		if err != nil {
			t.Errorf("User=%s but no sysusers.d file creates it: %v", user, err)
		} else if !strings.Contains(string(data), "\nu "+user+" ") && !strings.HasPrefix(string(data), "u "+user+" ") {
			t.Errorf("systemd/tearline.sysusers.conf does not create user %s", user)
		}
	}

	// The data dir of the example config is writable under ProtectSystem=strict.
	if get("ProtectSystem") != "strict" {
		t.Errorf("ProtectSystem=%q, want strict", get("ProtectSystem"))
	}
	cfg := exampleConfig(t)
	var writable []string
	for _, v := range svc["StateDirectory"] {
		for _, d := range strings.Fields(v) {
			writable = append(writable, filepath.Join("/var/lib", d))
		}
	}
	for _, v := range svc["ReadWritePaths"] {
		for _, d := range strings.Fields(v) {
			writable = append(writable, strings.TrimLeft(d, "-+"))
		}
	}
	paths := []string{cfg.Path(cfg.DataDir)}
	if cfg.PKI.DevCADir != "" {
		paths = append(paths, cfg.Path(cfg.PKI.DevCADir))
	}
	for _, p := range paths {
		ok := false
		for _, w := range writable {
			ok = ok || under(p, w)
		}
		if !ok {
			t.Errorf("%s (node.example.yaml) is not writable: not under StateDirectory/ReadWritePaths %v", p, writable)
		}
	}

	for k, want := range map[string]string{
		"NoNewPrivileges":        "yes",
		"ProtectHome":            "yes",
		"PrivateTmp":             "yes",
		"PrivateDevices":         "yes",
		"MemoryDenyWriteExecute": "yes",
		"LockPersonality":        "yes",
		"Restart":                "on-failure",
	} {
		if got := get(k); got != want {
			t.Errorf("%s=%q, want %s", k, got, want)
		}
	}
	if got := strings.Fields(get("RestrictAddressFamilies")); strings.Join(got, " ") != "AF_INET AF_INET6 AF_UNIX" {
		t.Errorf("RestrictAddressFamilies=%v, want AF_INET AF_INET6 AF_UNIX", got)
	}
	if !containsArg(svc["SystemCallFilter"], "@system-service") {
		t.Errorf("SystemCallFilter=%v: want @system-service", svc["SystemCallFilter"])
	}
	// No capabilities, which is right only while the ports are unprivileged.
	if caps, ok := u.last("Service", "CapabilityBoundingSet"); !ok || caps != "" {
		t.Errorf("CapabilityBoundingSet=%q (set: %v): want it empty", caps, ok)
	}
	for _, addr := range []string{cfg.Listen, cfg.MetricsListen} {
		if addr != "" && port(t, addr) < 1024 {
			t.Errorf("%s needs CAP_NET_BIND_SERVICE, which the unit does not grant", addr)
		}
	}
	if ks := get("KillSignal"); ks != "" && ks != "SIGTERM" && ks != "TERM" && ks != "15" {
		t.Errorf("KillSignal=%s: the node stops gracefully on SIGTERM", ks)
	}
	stop, err := time.ParseDuration(get("TimeoutStopSec"))
	if err != nil {
		t.Errorf("TimeoutStopSec=%q: want a duration such as 30s: %v", get("TimeoutStopSec"), err)
	} else if min := 3 * gateway.StopGrace; stop < min {
		t.Errorf("TimeoutStopSec=%s: the node takes up to gateway.StopGrace (%s) for calls in flight, then checkpoints and closes the store: want at least %s", stop, gateway.StopGrace, min)
	}
	if n, err := strconv.Atoi(get("LimitNOFILE")); (err != nil || n < 16384) && get("LimitNOFILE") != "infinity" {
		t.Errorf("LimitNOFILE=%q: want at least 16384 for many subscriber streams", get("LimitNOFILE"))
	}

	// systemd's own checks, when systemd-analyze is here.
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("systemd-analyze is not on PATH: verify and security not run")
		return
	}
	bin := builtBinary(t)
	data, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	copyPath := filepath.Join(t.TempDir(), "tearline-node.service")
	text := strings.Replace(string(data), "ExecStart="+exec0[0], "ExecStart="+bin, 1)
	if err := os.WriteFile(copyPath, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", copyPath).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	// Exposure (0 best, 10 worst) at most 2.0.
	out, err = exec.Command(sa, "security", "--offline=yes", "--threshold=20", "--no-pager", copyPath).CombinedOutput()
	if err != nil {
		t.Errorf("systemd-analyze security --offline=yes --threshold=20: %v\n%s", err, out)
	}
}
