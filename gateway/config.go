package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tearline/tearline/node/marking"
	"github.com/tearline/tearline/pki"
)

// ErrConfig wraps every configuration error.
var ErrConfig = errors.New("config")

// Config is one node's configuration, read once from a YAML file (see
// deploy/node.example.yaml) and validated before anything starts.
type Config struct {
	// Party is this node's party code, e.g. USA.
	Party string `yaml:"party"`
	// NodeName names the node's identity: spiffe://<domain>/party/<PARTY>/node/<NodeName>.
	NodeName string `yaml:"node_name"`
	// Domain is the party's trust domain; default <party lower-case>.tearline.test.
	Domain string `yaml:"domain"`
	// Listen is the address of the node's gRPC server (federation and clients).
	Listen string `yaml:"listen"`
	// DataDir holds the node's store: its bbolt file (tearline.db), and
	// the log and checkpoint files beside it.
	DataDir string `yaml:"data_dir"`
	// PKI chooses where certificates come from.
	PKI PKIConfig `yaml:"pki"`
	// Partners are the other parties this node links with.
	Partners []PartnerConfig `yaml:"partners"`
	// Subscribers are the local services that may subscribe, with their
	// clearance and need-to-know.
	Subscribers []SubscriberConfig `yaml:"subscribers"`
	// LogLevel is debug, info, warn or error (default info).
	LogLevel string `yaml:"log_level"`
	// MaxMessageBytes bounds one gRPC message (default 8 MiB).
	MaxMessageBytes int `yaml:"max_message_bytes"`
	// SubscriberStall is how long a subscription's queue of reports to send
	// may stay full, with one send waiting all that time for the subscriber
	// to read, before the node disconnects it as too slow, keeping its
	// cursor (default 30s). The node's own slow commits do not count.
	SubscriberStall time.Duration `yaml:"subscriber_stall,omitempty"`
	// MemoryLimitMiB, when set, is a soft limit on the node process's own
	// memory (Go heap, goroutine stacks, runtime), in MiB: as the process
	// nears it, the node collects garbage more often (spending more CPU)
	// instead of letting the heap grow as gc_percent allows (by default
	// to twice what is live). It does not count the store file's pages
	// the kernel maps in (page cache). Set it well above what is live (see
	// tearline_memory_bytes); 0: no limit (the GOMEMLIMIT environment
	// variable, if set, applies).
	MemoryLimitMiB int `yaml:"memory_limit_mib,omitempty"`
	// GCPercent, when set, is how far the node process's heap may grow
	// over what is live before the next collection, in percent (the Go
	// runtime's GOGC): higher spends less CPU collecting garbage and holds
	// more memory. With memory_limit_mib set the runtime still works to
	// keep the process under that (soft) limit, so a high gc_percent uses
	// the room under it instead of collecting early. 0: the runtime's
	// default (100, or the GOGC environment variable).
	GCPercent int `yaml:"gc_percent,omitempty"`
	// MetricsListen, when set, serves Prometheus metrics over plain HTTP at
	// http://<address>/metrics (counts only; a loopback address unless a
	// scraper elsewhere needs it).
	MetricsListen string `yaml:"metrics_listen,omitempty"`
	// Audit configures the audit log's checkpoints and anomaly alerts.
	Audit AuditConfig `yaml:"audit,omitempty"`

	dir  string // the config file's folder; relative paths are relative to it
	file string // the config file, as given
}

// MinMemoryLimitMiB is the smallest memory_limit_mib a node accepts: below
// it an idle node's own memory would keep it collecting garbage.
const MinMemoryLimitMiB = 64

// maxMemoryLimitMiB (1 TiB) catches a limit given in bytes by mistake.
const maxMemoryLimitMiB = 1 << 20

// MinGCPercent and MaxGCPercent bound gc_percent: below 10 the node would
// do little but collect garbage; above 10,000 (a heap of a hundred times
// what is live) the setting is more likely a slip than a choice.
const (
	MinGCPercent = 10
	MaxGCPercent = 10_000
)

// ValidGCPercent reports whether p is a gc_percent a node accepts: 0 (the
// runtime's default) or MinGCPercent to MaxGCPercent.
func ValidGCPercent(p int) bool {
	return p == 0 || (p >= MinGCPercent && p <= MaxGCPercent)
}

// PKIConfig selects the certificate source.
type PKIConfig struct {
	// Mode is "dev" (the embedded development CA) or "vault" (the party's
	// PKI mount in Vault); there is no silent fallback between them.
	Mode string `yaml:"mode"`
	// DevCADir holds the development CA of this party (ca.pem, ca-key.pem).
	DevCADir string `yaml:"dev_ca_dir,omitempty"`
	// Vault configures mode vault (see vault.go).
	Vault *VaultConfig `yaml:"vault,omitempty"`
	// CertTTL is the lifetime of the node's certificate (default 24h); it is
	// renewed at two thirds of it, without a restart.
	CertTTL time.Duration `yaml:"cert_ttl"`
}

// PartnerConfig is one partner.
type PartnerConfig struct {
	Party string `yaml:"party"`
	// Address of the partner's node.
	Address string `yaml:"address"`
	// CAFile is the partner's CA bundle (PEM). It is trusted only for that
	// partner's identities.
	CAFile string `yaml:"ca_file"`
	// CRLURL is where the partner publishes its CRL (http or https), for
	// example its Vault's /v1/<mount>/crl; with pki.mode vault it is fetched
	// every pki.vault.crl_interval and a certificate it revokes is refused.
	CRLURL string `yaml:"crl_url,omitempty"`
	// Agreement is the bilateral sharing agreement; without an active one
	// nothing is released to the partner.
	Agreement *AgreementConfig `yaml:"agreement"`
}

// AgreementConfig is a bilateral sharing agreement.
type AgreementConfig struct {
	MaxClassification string    `yaml:"max_classification"`
	Topics            []string  `yaml:"topics"`
	Purpose           string    `yaml:"purpose"`
	ValidFrom         time.Time `yaml:"valid_from"`
	ValidUntil        time.Time `yaml:"valid_until"`
	Review            time.Time `yaml:"review"`
}

// AuditConfig configures the audit log.
type AuditConfig struct {
	// A checkpoint (the log's head, signed by the node and sent to every
	// partner) is made when the log has grown and CheckpointInterval has
	// passed, or CheckpointEntries entries were appended, and on shutdown.
	// Defaults 30s and 1000.
	CheckpointInterval time.Duration `yaml:"checkpoint_interval,omitempty"`
	CheckpointEntries  uint64        `yaml:"checkpoint_entries,omitempty"`
	// Anomalies raise security events (tearline events) and count in the
	// metric tearline_audit_anomalies_total.
	Anomalies AnomalyConfig `yaml:"anomalies,omitempty"`
}

// AnomalyConfig are the anomaly thresholds.
type AnomalyConfig struct {
	// A subscriber's deliveries within DeliveryWindow that are at least
	// DeliveryMin and more than DeliveryFactor times its own baseline (a
	// moving average of its earlier windows). Defaults 1m, 10, 200.
	DeliveryWindow time.Duration `yaml:"delivery_window,omitempty"`
	DeliveryFactor float64       `yaml:"delivery_factor,omitempty"`
	DeliveryMin    int           `yaml:"delivery_min,omitempty"`
	// DenialsPerPartner denials concerning one partner (releases refused,
	// security events naming it) within DenialWindow. Defaults 20, 10m.
	DenialsPerPartner int           `yaml:"denials_per_partner,omitempty"`
	DenialWindow      time.Duration `yaml:"denial_window,omitempty"`
}

// SubscriberConfig is one local subscriber service.
type SubscriberConfig struct {
	Name       string   `yaml:"name"`
	Clearance  string   `yaml:"clearance"`
	NeedToKnow []string `yaml:"need_to_know"`
}

// LoadConfig reads and validates a config file. Unknown keys are errors.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return parseConfig(data, path)
}

// parseConfig is LoadConfig of a file at path that holds data.
func parseConfig(data []byte, path string) (*Config, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var c Config
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrConfig, path, err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	c.dir, c.file = filepath.Dir(abs), path
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &c, nil
}

// WriteConfig writes c as YAML to path (0600).
func WriteConfig(path string, c *Config) error {
	data, err := yaml.Marshal(c)
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o600)
}

// Path resolves p relative to the config file's folder.
func (c *Config) Path(p string) string {
	if p == "" || filepath.IsAbs(p) || c.dir == "" {
		return p
	}
	return filepath.Join(c.dir, p)
}

// Validate fills in defaults and checks everything; the error names the
// first bad field.
func (c *Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, args...))
	}
	if !marking.ValidParty(c.Party) {
		return bad("party %q: want a party code like USA ([A-Z0-9-]{2,16})", c.Party)
	}
	if c.NodeName == "" {
		c.NodeName = "node"
	}
	if c.Domain == "" {
		c.Domain = pki.DefaultDomain(c.Party)
	}
	if _, err := c.NodeIdentity(); err != nil {
		return bad("node_name/domain: %v", err)
	}
	if c.Listen == "" {
		return bad("listen: an address such as 127.0.0.1:7401 is required")
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return bad("listen %q: %v", c.Listen, err)
	}
	if c.DataDir == "" {
		return bad("data_dir is required")
	}
	switch c.PKI.Mode {
	case "dev":
		if c.PKI.DevCADir == "" {
			return bad("pki.dev_ca_dir is required with pki.mode dev")
		}
		if c.PKI.Vault != nil {
			return bad("pki.vault is set but pki.mode is dev: remove one of them")
		}
	case "vault":
		if err := c.PKI.validateVault(); err != nil {
			return bad("%v", err)
		}
	case "":
		return bad("pki.mode is required: dev (the embedded development CA) or vault")
	default:
		return bad("pki.mode %q is not supported (want dev or vault)", c.PKI.Mode)
	}
	if c.PKI.CertTTL == 0 {
		c.PKI.CertTTL = 24 * time.Hour
	}
	if c.PKI.CertTTL < time.Minute {
		return bad("pki.cert_ttl %s is too short (at least 1m)", c.PKI.CertTTL)
	}
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = 8 << 20
	}
	if c.SubscriberStall == 0 {
		c.SubscriberStall = 30 * time.Second
	}
	if c.SubscriberStall < 100*time.Millisecond || c.SubscriberStall > time.Hour {
		return bad("subscriber_stall %s: want 100ms to 1h", c.SubscriberStall)
	}
	if c.MaxMessageBytes < 1<<20 {
		return bad("max_message_bytes %d is below 1 MiB", c.MaxMessageBytes)
	}
	if c.MemoryLimitMiB != 0 && (c.MemoryLimitMiB < MinMemoryLimitMiB || c.MemoryLimitMiB > maxMemoryLimitMiB) {
		return bad("memory_limit_mib %d: want 0 (no limit) or %d to %d", c.MemoryLimitMiB, MinMemoryLimitMiB, maxMemoryLimitMiB)
	}
	if !ValidGCPercent(c.GCPercent) {
		return bad("gc_percent %d: want 0 (the runtime's default) or %d to %d", c.GCPercent, MinGCPercent, MaxGCPercent)
	}
	switch c.LogLevel {
	case "", "debug", "info", "warn", "error":
	default:
		return bad("log_level %q: want debug, info, warn or error", c.LogLevel)
	}
	if c.MetricsListen != "" {
		if _, _, err := net.SplitHostPort(c.MetricsListen); err != nil {
			return bad("metrics_listen %q: %v", c.MetricsListen, err)
		}
	}
	if err := c.Audit.validate(); err != nil {
		return bad("%v", err)
	}
	seen := map[string]bool{c.Party: true}
	for i, p := range c.Partners {
		if !marking.ValidParty(p.Party) {
			return bad("partners[%d].party %q is not a party code", i, p.Party)
		}
		if seen[p.Party] {
			return bad("partners[%d].party %s is this node's party or listed twice", i, p.Party)
		}
		seen[p.Party] = true
		if _, _, err := net.SplitHostPort(p.Address); err != nil {
			return bad("partners[%d] (%s) address %q: %v", i, p.Party, p.Address, err)
		}
		if p.CAFile == "" {
			return bad("partners[%d] (%s) ca_file is required", i, p.Party)
		}
		if err := validCRLURL(p.CRLURL, c.PKI.Mode); err != nil {
			return bad("partners[%d] (%s) crl_url: %v", i, p.Party, err)
		}
		if a := p.Agreement; a != nil {
			if _, ok := marking.Default.Rank(a.MaxClassification); !ok {
				return bad("partners[%d] (%s) agreement.max_classification %q is not one of %v", i, p.Party, a.MaxClassification, marking.Default.Levels())
			}
			if a.ValidUntil.IsZero() {
				return bad("partners[%d] (%s) agreement.valid_until is required", i, p.Party)
			}
			if !a.ValidFrom.IsZero() && !a.ValidFrom.Before(a.ValidUntil) {
				return bad("partners[%d] (%s) agreement.valid_from must be before valid_until", i, p.Party)
			}
			if _, err := marking.NormalizeTopics(a.Topics); err != nil {
				return bad("partners[%d] (%s) agreement.topics: %v", i, p.Party, err)
			}
		}
	}
	names := map[string]bool{}
	for i, s := range c.Subscribers {
		if _, err := pki.NewIdentity(c.Party, pki.KindService, s.Name); err != nil {
			return bad("subscribers[%d].name %q: %v", i, s.Name, err)
		}
		if names[s.Name] {
			return bad("subscribers[%d].name %q is listed twice", i, s.Name)
		}
		names[s.Name] = true
		if _, ok := marking.Default.Rank(s.Clearance); !ok {
			return bad("subscribers[%d] (%s) clearance %q is not one of %v", i, s.Name, s.Clearance, marking.Default.Levels())
		}
		if _, err := marking.NormalizeTopics(s.NeedToKnow); err != nil {
			return bad("subscribers[%d] (%s) need_to_know: %v", i, s.Name, err)
		}
	}
	return nil
}

// NodeIdentity is the node's certificate identity.
func (c *Config) NodeIdentity() (pki.Identity, error) {
	id := pki.Identity{Domain: c.Domain, Party: c.Party, Kind: pki.KindNode, Name: c.NodeName}
	return id, id.Validate()
}

// PartnerParties lists the partner codes in config order.
func (c *Config) PartnerParties() []string {
	var out []string
	for _, p := range c.Partners {
		out = append(out, p.Party)
	}
	return slices.Clip(out)
}

// validate fills in the audit defaults and checks the ranges.
func (a *AuditConfig) validate() error {
	if a.CheckpointInterval == 0 {
		a.CheckpointInterval = 30 * time.Second
	}
	if a.CheckpointInterval < time.Second || a.CheckpointInterval > 24*time.Hour {
		return fmt.Errorf("audit.checkpoint_interval %s: want 1s to 24h", a.CheckpointInterval)
	}
	if a.CheckpointEntries == 0 {
		a.CheckpointEntries = 1000
	}
	x := &a.Anomalies
	if x.DeliveryWindow == 0 {
		x.DeliveryWindow = time.Minute
	}
	if x.DeliveryWindow < time.Second {
		return fmt.Errorf("audit.anomalies.delivery_window %s: at least 1s", x.DeliveryWindow)
	}
	if x.DeliveryFactor == 0 {
		x.DeliveryFactor = 10
	}
	if x.DeliveryFactor < 1 {
		return fmt.Errorf("audit.anomalies.delivery_factor %g: at least 1", x.DeliveryFactor)
	}
	if x.DeliveryMin == 0 {
		x.DeliveryMin = 200
	}
	if x.DeliveryMin < 1 {
		return fmt.Errorf("audit.anomalies.delivery_min %d: at least 1", x.DeliveryMin)
	}
	if x.DenialsPerPartner == 0 {
		x.DenialsPerPartner = 20
	}
	if x.DenialsPerPartner < 1 {
		return fmt.Errorf("audit.anomalies.denials_per_partner %d: at least 1", x.DenialsPerPartner)
	}
	if x.DenialWindow == 0 {
		x.DenialWindow = 10 * time.Minute
	}
	if x.DenialWindow < time.Second {
		return fmt.Errorf("audit.anomalies.denial_window %s: at least 1s", x.DenialWindow)
	}
	return nil
}
