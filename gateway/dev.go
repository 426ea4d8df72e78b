package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/tearline/tearline/node/marking"
	"github.com/tearline/tearline/pki"
)

// Dev federation layout, one folder per party under the dev dir:
//
//	<DIR>/<PARTY>/node.yaml            the node's config (tearline node --config)
//	<DIR>/<PARTY>/ca/                  the party's development CA (key 0600)
//	<DIR>/<PARTY>/data/tearline.db     the node's store
//	<DIR>/<PARTY>/{cert,key,ca}.pem    an officer profile for the CLI
//	<DIR>/<PARTY>/analyst/             a subscriber service profile
//	<DIR>/dev.lock                     held while a `tearline dev` uses DIR
//	<DIR>/dev.pid                      the process id of that `tearline dev`
const (
	DevOfficer    = "liaison"
	DevSubscriber = "analyst"
	devConfigFile = "node.yaml"
	devLockFile   = "dev.lock"
	devPIDFile    = "dev.pid"
)

// ErrDevInUse: the dev folder is used by another process, and was left as
// it was. Its text reads inside the message: "DIR is in use by ...".
var ErrDevInUse = errors.New("in use")

// DevOptions configures `tearline dev`.
type DevOptions struct {
	Dir      string
	Parties  []string
	BasePort int
	Host     string
	Clock    func() time.Time
	// PKI is "dev" (default: a development CA per party) or "vault": a PKI
	// mount per party in the Vault at VaultAddr, set up with VaultToken.
	PKI        string
	VaultAddr  string
	VaultToken string
}

func (o *DevOptions) validate() error {
	if o.Dir == "" {
		o.Dir = "tearline-dev"
	}
	if len(o.Parties) == 0 {
		o.Parties = []string{"USA", "GBR", "CAN"}
	}
	if o.BasePort == 0 {
		o.BasePort = 7401
	}
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if err := o.validatePKI(); err != nil {
		return err
	}
	if len(o.Parties) < 2 {
		return fmt.Errorf("%w: a dev federation needs at least two parties", ErrConfig)
	}
	seen := map[string]bool{}
	for _, p := range o.Parties {
		if !marking.ValidParty(p) {
			return fmt.Errorf("%w: %q is not a party code ([A-Z0-9-]{2,16})", ErrConfig, p)
		}
		if seen[p] {
			return fmt.Errorf("%w: party %s is listed twice", ErrConfig, p)
		}
		seen[p] = true
	}
	if o.BasePort < 1024 || o.BasePort+len(o.Parties) > 65535 {
		return fmt.Errorf("%w: base port %d is out of range (1024-65535)", ErrConfig, o.BasePort)
	}
	return nil
}

// DevConfigPath is where `tearline dev` writes a party's node config.
func DevConfigPath(dir, party string) string { return filepath.Join(dir, party, devConfigFile) }

// DevInit lays out (or refreshes) a dev federation in o.Dir: a development
// CA per party (kept if present), each node's config with every other party
// as partner under a one-year agreement, and an officer and a subscriber
// profile per party. Existing data is kept. It returns the config paths.
//
// A folder that another `tearline dev` holds, or whose nodes run, is refused
// with ErrDevInUse before anything in it is written.
func DevInit(o DevOptions) ([]string, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	l, err := lockDev(o.Dir)
	if err != nil {
		return nil, err
	}
	defer l.release()
	return o.layOut()
}

// layOut writes the folder (DevInit's work); the caller holds its lock.
func (o *DevOptions) layOut() ([]string, error) {
	now := o.Clock()
	cas := map[string]pki.Issuer{}
	for _, p := range o.Parties {
		ca, err := o.devIssuer(p)
		if err != nil {
			return nil, err
		}
		cas[p] = ca
		bundle, err := ca.Bundle(context.Background())
		if err != nil {
			return nil, err
		}
		if err := pki.WriteCertificatesFile(filepath.Join(o.Dir, p, "ca", "bundle.pem"), bundle); err != nil {
			return nil, err
		}
	}
	var paths []string
	for i, p := range o.Parties {
		c := &Config{
			Party: p, NodeName: strings.ToLower(p), Listen: o.Host + ":" + strconv.Itoa(o.BasePort+i),
			DataDir: "data", PKI: o.devPKIConfig(p),
			Subscribers: []SubscriberConfig{{Name: DevSubscriber, Clearance: "SECRET", NeedToKnow: []string{"CBRN", "CT", "CYBER"}}},
		}
		for j, q := range o.Parties {
			if q == p {
				continue
			}
			c.Partners = append(c.Partners, PartnerConfig{
				Party: q, Address: o.Host + ":" + strconv.Itoa(o.BasePort+j),
				CAFile: filepath.Join("..", q, "ca", "bundle.pem"),
				CRLURL: o.devCRLURL(q),
				Agreement: &AgreementConfig{
					MaxClassification: "TOP SECRET", Purpose: "development federation",
					ValidFrom: now.Add(-time.Hour).UTC().Truncate(time.Second), ValidUntil: now.AddDate(1, 0, 0).UTC().Truncate(time.Second),
					Review: now.AddDate(0, 6, 0).UTC().Truncate(time.Second),
				},
			})
		}
		path := DevConfigPath(o.Dir, p)
		if err := WriteConfig(path, c); err != nil {
			return nil, err
		}
		if _, err := LoadConfig(path); err != nil {
			return nil, err
		}
		bundle, _ := cas[p].Bundle(context.Background())
		for _, prof := range []struct {
			kind pki.Kind
			name string
			dir  string
		}{{pki.KindOfficer, DevOfficer, filepath.Join(o.Dir, p)}, {pki.KindService, DevSubscriber, filepath.Join(o.Dir, p, DevSubscriber)}} {
			id, err := pki.Identity{Domain: pki.DefaultDomain(p), Party: p, Kind: prof.kind, Name: prof.name}, error(nil)
			if err = id.Validate(); err != nil {
				return nil, err
			}
			is, err := cas[p].Issue(context.Background(), pki.IssueRequest{Identity: id, TTL: 30 * 24 * time.Hour})
			if err != nil {
				return nil, err
			}
			if err := pki.WriteProfile(prof.dir, is, bundle); err != nil {
				return nil, err
			}
		}
		paths = append(paths, path)
	}
	return paths, nil
}

// RunDev starts a dev federation in this process and serves until ctx ends.
func RunDev(ctx context.Context, o DevOptions, log *slog.Logger, out io.Writer) error {
	if err := o.validate(); err != nil {
		return err
	}
	l, err := lockDev(o.Dir)
	if err != nil {
		return err
	}
	defer l.release() // after the servers have closed their stores
	paths, err := o.layOut()
	if err != nil {
		return err
	}
	var servers []*Server
	defer func() {
		for _, s := range servers {
			s.close()
		}
	}()
	for _, path := range paths {
		cfg, err := LoadConfig(path)
		if err != nil {
			return err
		}
		s, err := NewServer(cfg, log, WithClock(o.Clock))
		if err != nil {
			return fmt.Errorf("%s node: %w", cfg.Party, err)
		}
		servers = append(servers, s)
	}
	abs, _ := filepath.Abs(o.Dir)
	fmt.Fprintf(out, "Tearline development federation (%s) in %s\n\n", o.pkiName(), abs)
	for _, s := range servers {
		fmt.Fprintf(out, "  %-5s node listening on %s   config %s\n", s.cfg.Party, s.Addr(), DevConfigPath(o.Dir, s.cfg.Party))
	}
	fmt.Fprintf(out, "\nUse the CLI as a party's liaison officer, for example:\n")
	fmt.Fprintf(out, "  tearline --dev %s --as %s publish --marking 'SECRET//REL TO %s//ORCON' --topic CT --title 'Test' --body 'hello'\n", o.Dir, o.Parties[0], strings.Join(o.Parties[:2], ", "))
	fmt.Fprintf(out, "  tearline --dev %s --as %s reports\n", o.Dir, o.Parties[1])
	fmt.Fprintf(out, "or with a profile: --node ADDR --profile %s\n", filepath.Join(o.Dir, o.Parties[0]))
	fmt.Fprintf(out, "Press Ctrl-C to stop; the data stays in %s for the next start.\n", o.Dir)
	tasks := make([]func(context.Context) error, len(servers))
	for i, s := range servers {
		tasks[i] = s.Run
	}
	err = runAll(ctx, tasks...)
	servers = nil // Run closed them
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// devLock is this process's hold on a dev folder: an exclusive advisory
// lock on DIR/dev.lock, taken through bbolt (flock, or LockFileEx on
// Windows). The system drops it when the process ends, so a crashed
// `tearline dev` leaves no stale lock; DIR/dev.pid only names the holder in
// a refusal and decides nothing.
type devLock struct {
	db      *bolt.DB
	pidPath string
}

// lockDev takes dir for this process before anything in it is written. A
// folder that another `tearline dev` holds, or whose node stores another
// process has open (nodes started one by one from a folder that
// --init-only wrote), is refused with ErrDevInUse and left exactly as it
// was: not a file created, written or touched.
func lockDev(dir string) (*devLock, error) {
	lockPath := filepath.Join(dir, devLockFile)
	_, statErr := os.Stat(lockPath)
	lockExists := statErr == nil
	if !lockExists {
		// A folder from before dev.lock, or a new one: check its stores
		// before the lock file is created in it.
		if err := devStoresFree(dir); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("dev: %w", err)
		}
	}
	// Opening an existing lock file writes nothing; a timeout of a
	// nanosecond refuses at once (0 would wait for ever).
	db, err := bolt.Open(lockPath, 0o600, &bolt.Options{Timeout: time.Nanosecond})
	if errors.Is(err, bolterrors.ErrTimeout) {
		by := "another `tearline dev`"
		if pid := readDevPID(dir); pid > 0 {
			by += fmt.Sprintf(" (pid %d)", pid)
		}
		return nil, fmt.Errorf("%s is %w by %s: stop it first, or pass --dir with another folder", dir, ErrDevInUse, by)
	}
	if err != nil {
		return nil, fmt.Errorf("dev: lock %s: %w (if no `tearline dev` runs on %s, remove the file)", lockPath, err, dir)
	}
	if lockExists {
		if err := devStoresFree(dir); err != nil {
			_ = db.Close()
			return nil, err
		}
	}
	l := &devLock{db: db, pidPath: filepath.Join(dir, devPIDFile)}
	if err := os.WriteFile(l.pidPath, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("dev: %w", err)
	}
	return l, nil
}

// release gives the folder up.
func (l *devLock) release() {
	_ = os.Remove(l.pidPath)
	_ = l.db.Close()
}

// devStoresFree checks that no node store in dir is open in another
// process. bbolt holds an exclusive lock on a store while a node has it
// open, so a shared one is refused then; a read-only open writes nothing.
func devStoresFree(dir string) error {
	stores, _ := filepath.Glob(filepath.Join(dir, "*", "data", "tearline.db"))
	for _, path := range stores {
		db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Nanosecond})
		if errors.Is(err, bolterrors.ErrTimeout) {
			return fmt.Errorf("%s is %w: %s is open in another process (a `tearline node`, or a `tearline dev` of an older version): stop it first, or pass --dir with another folder", dir, ErrDevInUse, path)
		}
		if err == nil {
			_ = db.Close()
		}
		// Any other error is the node's to report when it opens the store.
	}
	return nil
}

// readDevPID returns the process id in dir's pid file, or 0.
func readDevPID(dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, devPIDFile))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0
	}
	return pid
}

// DevAddress returns the listen address from a dev party's config.
func DevAddress(dir, party string) (string, error) {
	path := DevConfigPath(dir, party)
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("no dev node for %s in %s (start it with: tearline dev --dir %s)", party, dir, dir)
	}
	c, err := LoadConfig(path)
	if err != nil {
		return "", err
	}
	return c.Listen, nil
}
