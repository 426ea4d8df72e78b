// Package cli is the tearline command: `tearline dev`, `tearline node` and
// the client verbs (publish, reports, show, provenance, share, subscribe)
// that reach a node over mutual TLS with the caller's certificate.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

// globals are the flags every client verb shares.
type globals struct {
	node    string
	profile string
	dev     string
	as      string
	json    bool
	timeout time.Duration
	// nodeSet and profileSet: --node and --profile were given on the
	// command line (not only by TEARLINE_NODE or TEARLINE_PROFILE).
	nodeSet, profileSet bool

	stdin          io.Reader
	stdout, stderr io.Writer
}

// Main runs the command line args and returns the exit code.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	g := &globals{stdin: stdin, stdout: stdout, stderr: stderr}
	root := newRoot(g)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var ee exitError
	if errors.As(err, &ee) {
		return ee.code // the outcome was printed
	}
	var ue usageError
	if errors.As(err, &ue) || isCobraUsage(err) {
		// Cobra refuses an unknown verb or flag before it parses --json.
		if g.json || jsonAsked(args) {
			writeJSONError(stdout, cliError{Code: "InvalidArgument", Reason: "usage", Message: err.Error()})
		} else {
			help := "tearline"
			if c, _, ferr := root.Find(args); ferr == nil && c != nil {
				help = c.CommandPath()
			}
			fmt.Fprintf(stderr, "tearline: %v (see %s --help)\n", err, help)
		}
		return 2
	}
	report(g, err)
	return 1
}

func newRoot(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "tearline",
		Short: "Tearline: share marked intelligence between allied services, safely",
		Long: `Tearline exchanges signed, marked reports between the nodes of partner
services over mutual-TLS gRPC, enforcing the originator's markings and the
third-party rule at every hop, and keeping provenance of every step.

Run a local three-party federation on the embedded development CA:
  tearline dev

Then act as a party's liaison officer:
  tearline --dev tearline-dev --as USA publish --marking 'SECRET//REL TO USA, GBR//ORCON' --topic CT --title T --body B
  tearline --dev tearline-dev --as GBR reports

A client verb reaches a node with --node ADDR --profile DIR (or the
TEARLINE_NODE and TEARLINE_PROFILE variables); against 'tearline dev',
--dev DIR --as PARTY is enough: it takes PARTY's node and profile from DIR
(not with --node; --profile may name another profile of PARTY, such as a
subscriber service's). A profile DIR holds cert.pem, key.pem and ca.pem (the
party's CA bundle).`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return g.checkGlobals(cmd)
		},
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.node, "node", os.Getenv("TEARLINE_NODE"), "address of the node (host:port); env TEARLINE_NODE")
	pf.StringVar(&g.profile, "profile", os.Getenv("TEARLINE_PROFILE"), "folder with cert.pem, key.pem and ca.pem; env TEARLINE_PROFILE")
	pf.StringVar(&g.dev, "dev", "", "a 'tearline dev' folder: take the node and profile of --as from it (not with --node; --profile may name another profile)")
	pf.StringVar(&g.as, "as", "", "with --dev: the party to act as, e.g. USA")
	pf.BoolVar(&g.json, "json", false, "print JSON (errors too, as {\"error\": {...}} on stdout)")
	pf.DurationVar(&g.timeout, "timeout", 30*time.Second, "how long a call may take")
	root.AddCommand(
		newDevCmd(g), newNodeCmd(g),
		newPublishCmd(g), newReportsCmd(g), newShowCmd(g), newProvenanceCmd(g), newShareCmd(g), newSubscribeCmd(g),
		newConsentCmd(g), newCrisisCmd(g), newAgreementsCmd(g), newEventsCmd(g),
		newPartnerCmd(g), newSubscriberCmd(g), newWithdrawCmd(g), newAuditCmd(g),
		newPKICmd(g), newBenchCmd(g),
	)
	return root
}

// checkGlobals refuses global flags that cannot be meant: a --timeout
// that allows no time, and --node with --dev/--as, which name the node
// twice (USA's profile at another party's node fails only at the TLS
// handshake, and says less).
func (g *globals) checkGlobals(cmd *cobra.Command) error {
	f := cmd.Flags()
	g.nodeSet, g.profileSet = f.Changed("node"), f.Changed("profile")
	if g.timeout <= 0 {
		return usagef("--timeout %s: give a positive duration, e.g. 30s", g.timeout)
	}
	if g.nodeSet && (g.dev != "" || g.as != "") {
		return usagef("--node and --dev/--as both say which node to call: give --node ADDR --profile DIR, or --dev DIR --as PARTY (which takes PARTY's node and profile from DIR)")
	}
	if g.as != "" && g.dev == "" {
		return usagef("--as needs --dev DIR, the 'tearline dev' folder to take the party's node and profile from")
	}
	return nil
}

// usageError is a mistake in the command line.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// jsonAsked reports whether args ask for --json before any "--".
func jsonAsked(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "--json", "--json=true":
			return true
		}
	}
	return false
}

func isCobraUsage(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "flag needs an argument", "invalid argument", "accepts ", "requires at least", "required flag"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	switch level {
	case "debug":
		l = slog.LevelDebug
	case "warn":
		l = slog.LevelWarn
	case "error":
		l = slog.LevelError
	default:
		l = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}
