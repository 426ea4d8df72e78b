package cli

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/tearline/tearline/gateway"
)

func newDevCmd(g *globals) *cobra.Command {
	var o gateway.DevOptions
	var parties string
	var initOnly bool
	c := &cobra.Command{
		Use:   "dev",
		Short: "Run a local federation: one node per party on 127.0.0.1, on the embedded development CA",
		Long: `Run a local federation in this process: one node per party on 127.0.0.1
(ports from --base-port on, in the order of --parties), a development CA per
party, every pair of parties linked under a one-year agreement, and for each
party an officer profile in DIR/<PARTY>/ and a subscriber profile in
DIR/<PARTY>/analyst/ for the CLI.

A second start with the same --dir keeps the CAs and the data. Stop it with
Ctrl-C (SIGINT), SIGTERM or SIGHUP (its terminal closing). While it runs,
another start on the same --dir is refused before it writes anything.
--init-only writes the folder and exits, so the nodes can be started one by
one with 'tearline node --config DIR/<PARTY>/node.yaml'.

The development CA keeps its private keys in plain files in DIR: it is for
trying Tearline out, never for real traffic.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Parties = nil
			for _, p := range strings.Split(parties, ",") {
				if p = strings.TrimSpace(p); p != "" {
					o.Parties = append(o.Parties, strings.ToUpper(p))
				}
			}
			if initOnly {
				paths, err := gateway.DevInit(o)
				if err != nil {
					return devError(g, err)
				}
				for _, p := range paths {
					cmd.Println(p)
				}
				return nil
			}
			// A terminal that closes (SIGHUP) stops the federation as
			// Ctrl-C does; the nodes alone would take SIGHUP and go on.
			// Not when it was started with SIGHUP ignored (nohup): asking
			// for it would undo that.
			ctx := cmd.Context()
			if !signal.Ignored(syscall.SIGHUP) {
				var stop context.CancelFunc
				ctx, stop = signal.NotifyContext(ctx, syscall.SIGHUP)
				defer stop()
			}
			return devError(g, gateway.RunDev(ctx, o, newLogger(g.stderr, "info"), g.stdout))
		},
	}
	c.Flags().StringVar(&o.Dir, "dir", "tearline-dev", "folder for the CAs, configs, profiles and data")
	c.Flags().StringVar(&parties, "parties", "USA,GBR,CAN", "comma-separated party codes")
	c.Flags().IntVar(&o.BasePort, "base-port", 7401, "port of the first party's node; the others follow")
	c.Flags().BoolVar(&initOnly, "init-only", false, "write the folder (CAs, configs, profiles) and exit")
	c.Flags().StringVar(&o.PKI, "pki", "dev", "dev (a development CA per party) or vault (a PKI mount pki-<party> per party in --vault-addr, set up if missing)")
	c.Flags().StringVar(&o.VaultAddr, "vault-addr", "", "with --pki vault: Vault's address, e.g. http://127.0.0.1:8200")
	c.Flags().StringVar(&o.VaultToken, "vault-token", "", "with --pki vault: a token that may mount and configure PKI engines (kept in DIR/vault-token, 0600)")
	return c
}

// devError prints a dev folder in use with a reason of its own (the text
// says what to do) and passes any other error on.
func devError(g *globals, err error) error {
	if !errors.Is(err, gateway.ErrDevInUse) {
		return err
	}
	printError(g, cliError{Code: "FailedPrecondition", Reason: "dev-dir-in-use", Message: err.Error()})
	return exitError{1}
}

func newNodeCmd(g *globals) *cobra.Command {
	var path, cpuProfile string
	c := &cobra.Command{
		Use:   "node --config FILE",
		Short: "Run one node from a config file",
		Long: `Run one Tearline node from a YAML config file (see deploy/node.example.yaml for
every key, documented). The config is validated before anything starts; a bad
or half-filled config is refused with the name of the field. The node stops
gracefully on SIGINT or SIGTERM.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if path == "" {
				return usagef("--config FILE is required")
			}
			// SIGHUP never ends the node, from its first moment: the node
			// takes it once it runs (pki.mode vault: fetch the CRLs), and
			// until then it is dropped here (starting can wait for Vault).
			defer ignoreHangups()()
			cfg, err := gateway.LoadConfig(path)
			if err != nil {
				return err
			}
			log := newLogger(g.stderr, cfg.LogLevel)
			if cfg.MemoryLimitMiB > 0 {
				// The process is this one node, so the node's limit and
				// GC target are the process's (tearline dev runs several
				// in one and leaves the runtime's defaults).
				debug.SetMemoryLimit(int64(cfg.MemoryLimitMiB) << 20)
				log.Info("memory limit set", "memory_limit_mib", cfg.MemoryLimitMiB)
			}
			if cfg.GCPercent > 0 {
				debug.SetGCPercent(cfg.GCPercent)
				log.Info("garbage collection target set", "gc_percent", cfg.GCPercent)
			}
			s, err := gateway.NewServer(cfg, log)
			if err != nil {
				return err
			}
			if cpuProfile != "" {
				f, err := os.Create(cpuProfile)
				if err != nil {
					return err
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return err
				}
				defer pprof.StopCPUProfile()
			}
			return s.Run(cmd.Context())
		},
	}
	c.Flags().StringVar(&path, "config", "", "the node's config file (YAML)")
	c.Flags().StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile (pprof) to this file until the node stops")
	return c
}

// ignoreHangups takes SIGHUP until the returned function is called, so
// that it does not end the process meanwhile (Go's default).
func ignoreHangups() (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-hup:
			case <-done:
				return
			}
		}
	}()
	return func() { signal.Stop(hup); close(done) }
}
