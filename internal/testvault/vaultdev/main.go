// Command vaultdev is a development Vault server for Tearline's tests: Vault's
// own core, HTTP handler and the PKI, KV and AppRole engines, with in-memory
// storage, initialised and unsealed at start. It serves the real Vault HTTP API
// on a loopback port and prints one JSON line on stdout:
//
//	{"addr":"http://127.0.0.1:PORT","token":"ROOT-TOKEN"}
//
// It is a separate Go module so that Vault's dependencies stay out of
// Tearline's go.mod. It is never used in production: everything it holds is
// lost when it exits, and it listens without TLS.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	kv "github.com/hashicorp/vault-plugin-secrets-kv"
	"github.com/hashicorp/vault/builtin/credential/approle"
	"github.com/hashicorp/vault/builtin/logical/pki"
	"github.com/hashicorp/vault/helper/namespace"
	vaulthttp "github.com/hashicorp/vault/http"
	"github.com/hashicorp/vault/internalshared/configutil"
	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/hashicorp/vault/sdk/physical/inmem"
	"github.com/hashicorp/vault/vault"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "vaultdev:", err)
		os.Exit(1)
	}
}

func run() error {
	addr := flag.String("addr", "127.0.0.1:0", "listen address (loopback only)")
	rootID := flag.String("root-token", "", "also create a root token with this id (like vault server -dev-root-token-id)")
	logLevel := flag.String("log-level", "warn", "Vault log level on stderr")
	flag.Parse()

	host, _, err := net.SplitHostPort(*addr)
	if err != nil {
		return fmt.Errorf("-addr: %w", err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-addr %q: vaultdev listens on loopback only", *addr)
	}

	logger := hclog.New(&hclog.LoggerOptions{Name: "vaultdev", Level: hclog.LevelFromString(*logLevel), Output: os.Stderr})
	phys, err := inmem.NewInmem(nil, logger)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	apiAddr := "http://" + ln.Addr().String()

	core, err := vault.NewCore(&vault.CoreConfig{
		Physical:           phys,
		Logger:             logger,
		DisableMlock:       true,
		RedirectAddr:       apiAddr,
		StorageType:        "inmem",
		LogicalBackends:    logicalBackends,
		CredentialBackends: credentialBackends,
		BuiltinRegistry:    registry{},
	})
	if err != nil {
		return fmt.Errorf("new core: %w", err)
	}
	root, err := initAndUnseal(core)
	if err != nil {
		return err
	}
	if *rootID != "" {
		if err := createRootToken(core, root, *rootID); err != nil {
			return err
		}
		root = *rootID
	}

	lcfg, err := listenerConfig(ln.Addr().String())
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           vaulthttp.Handler.Handler(&vault.HandlerProperties{Core: core, ListenerConfig: lcfg}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()

	line, _ := json.Marshal(map[string]string{"addr": apiAddr, "token": root})
	fmt.Println(string(line))

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case <-sig:
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
	return core.ShutdownWait()
}

// listenerConfig parses a listener "tcp" stanza the way vault server does;
// Vault's HTTP handler dereferences it.
func listenerConfig(addr string) (*configutil.Listener, error) {
	cfg, err := configutil.ParseConfig(fmt.Sprintf("listener \"tcp\" {\n  address = %q\n  tls_disable = true\n}\n", addr))
	if err != nil {
		return nil, fmt.Errorf("listener config: %w", err)
	}
	if len(cfg.Listeners) != 1 {
		return nil, fmt.Errorf("listener config: %d listeners", len(cfg.Listeners))
	}
	return cfg.Listeners[0], nil
}

func initAndUnseal(core *vault.Core) (string, error) {
	ctx := namespace.ContextWithNamespace(context.Background(), namespace.RootNamespace)
	res, err := core.Initialize(ctx, &vault.InitParams{
		BarrierConfig: &vault.SealConfig{SecretShares: 1, SecretThreshold: 1, Name: "shamir"},
	})
	if err != nil {
		return "", fmt.Errorf("initialise: %w", err)
	}
	key := append([]byte(nil), res.SecretShares[0]...)
	ok, err := core.Unseal(key)
	if err != nil {
		return "", fmt.Errorf("unseal: %w", err)
	}
	if !ok {
		return "", errors.New("unseal: still sealed")
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		leader, _, _, err := core.Leader()
		if errors.Is(err, vault.ErrHANotEnabled) || (err == nil && leader) {
			break
		}
		if err != nil {
			return "", fmt.Errorf("active status: %w", err)
		}
		if time.Now().After(deadline) {
			return "", errors.New("core did not become active within 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return res.RootToken, nil
}

func createRootToken(core *vault.Core, root, id string) error {
	ctx := namespace.ContextWithNamespace(context.Background(), namespace.RootNamespace)
	resp, err := core.HandleRequest(ctx, &logical.Request{
		ID:          "vaultdev-root",
		Operation:   logical.UpdateOperation,
		ClientToken: root,
		Path:        "auth/token/create",
		Data:        map[string]interface{}{"id": id, "policies": []string{"root"}, "no_parent": true, "no_default_policy": true},
	})
	if err != nil {
		return fmt.Errorf("create root token: %w", err)
	}
	if resp != nil && resp.IsError() {
		return fmt.Errorf("create root token: %v", resp.Error())
	}
	return nil
}

var logicalBackends = map[string]logical.Factory{
	"pki": pki.Factory,
	"kv":  kv.Factory,
}

var credentialBackends = map[string]logical.Factory{
	"approle": approle.Factory,
}

// registry is the builtin-plugin registry for the engines compiled in.
type registry struct{}

func (registry) table(t consts.PluginType) map[string]logical.Factory {
	switch t {
	case consts.PluginTypeSecrets:
		return logicalBackends
	case consts.PluginTypeCredential:
		return credentialBackends
	}
	return nil
}

func (r registry) Contains(name string, t consts.PluginType) bool {
	_, ok := r.table(t)[name]
	return ok
}

func (r registry) Get(name string, t consts.PluginType) (func() (interface{}, error), bool) {
	f, ok := r.table(t)[name]
	if !ok {
		return nil, false
	}
	return func() (interface{}, error) { return f, nil }, true
}

func (r registry) Keys(t consts.PluginType) []string {
	var keys []string
	for k := range r.table(t) {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func (r registry) DeprecationStatus(name string, t consts.PluginType) (consts.DeprecationStatus, bool) {
	if r.Contains(name, t) {
		return consts.Supported, true
	}
	return consts.Unknown, false
}

func (registry) IsBuiltinEntPlugin(string, consts.PluginType) bool { return false }
