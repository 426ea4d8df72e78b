package main

// End-to-end tests of incident response with real node processes:
// suspending a partner and a subscriber.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/tearline/tearline/pki"
	federationv1 "github.com/tearline/tearline/proto/tearline/federation/v1"
)

// nodeConn connects to party `to`'s node with a node certificate of party
// `as`, issued by as's development CA: what as's node itself would present.
func (f *federation) nodeConn(as, to string) *grpc.ClientConn {
	f.t.Helper()
	ca, err := pki.OpenDevCA(filepath.Join(f.dir, as, "ca"), as)
	if err != nil {
		f.t.Fatal(err)
	}
	id, _ := pki.NewIdentity(as, pki.KindNode, strings.ToLower(as))
	src, err := pki.NewCertSource(ca, id, time.Hour)
	if err != nil {
		f.t.Fatal(err)
	}
	trust := pki.NewTrust()
	b, err := pki.ReadCertificatesFile(filepath.Join(f.dir, to, "ca", "bundle.pem"))
	if err != nil {
		f.t.Fatal(err)
	}
	trust.Set(to, b)
	addr, err := readListen(filepath.Join(f.dir, to, "node.yaml"))
	if err != nil {
		f.t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(pki.ClientTLS(src, trust, pki.WantNode(to), nil))))
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { conn.Close() })
	return conn
}

type partnerJSON struct {
	Party     string `json:"party"`
	Suspended bool   `json:"suspended"`
	Queued    int    `json:"queued"`
}

func (f *federation) partner(at, party string) partnerJSON {
	f.t.Helper()
	var ps []partnerJSON
	f.jsonCLI(&ps, at, "partner", "list")
	for _, p := range ps {
		if p.Party == party {
			return p
		}
	}
	f.t.Fatalf("%s has no partner %s", at, party)
	return partnerJSON{}
}

// Suspend GBR while it streams: its streams end, its calls are refused,
// reports published meanwhile are held and arrive after reinstatement, none
// lost, none twice; a restart of USA keeps GBR suspended.
func TestE2ESuspendPartner(t *testing.T) {
	t.Parallel()
	f := newFederation(t, "USA", "GBR")
	f.startAll("USA", "GBR")
	before := publishID(f, "USA", "--marking", "SECRET//REL TO USA, GBR", "--body", "before")
	f.waitHolds("GBR", before)

	// A live stream of GBR's (with GBR's real node identity) to USA.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	stream, err := federationv1.NewFederationServiceClient(f.nodeConn("GBR", "USA")).Deliver(ctx)
	if err != nil {
		t.Fatal(err)
	}
	recvErr := make(chan error, 1)
	go func() { _, err := stream.Recv(); recvErr <- err }()
	time.Sleep(200 * time.Millisecond) // the stream is established
	select {
	case err := <-recvErr:
		t.Fatalf("GBR's stream ended before the suspension: %v", err)
	default:
	}

	f.mustCLI("USA", "partner", "suspend", "GBR", "--reason", "incident 42: suspected compromise")
	select {
	case err := <-recvErr:
		if err == nil {
			t.Fatal("stream ended without an error")
		}
	case <-time.After(2 * time.Second):
		t.Fatal("GBR's live stream did not end within 2s of the suspension")
	}
	// New calls from GBR are refused (at the handshake or by the interceptor).
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	s2, err := federationv1.NewFederationServiceClient(f.nodeConn("GBR", "USA")).Deliver(ctx2)
	if err == nil {
		_, err = s2.Recv()
	}
	if c := status.Code(err); c != codes.Unavailable && c != codes.PermissionDenied {
		t.Fatalf("GBR's new call while suspended: %v", err)
	}
	// USA has it on record: a security event naming GBR's node.
	var events []struct{ Kind, Partner, Message string }
	f.jsonCLI(&events, "USA", "events")
	attempted := false
	for _, e := range events {
		attempted = attempted || (e.Kind == "suspended-attempt" && e.Partner == "GBR" && strings.Contains(e.Message, "/party/GBR/node/"))
	}
	if !attempted {
		t.Fatalf("USA's security events do not record GBR's attempt while suspended: %+v", events)
	}

	var held []string
	for i := 0; i < 18; i++ {
		held = append(held, publishID(f, "USA", "--marking", "SECRET//REL TO USA, GBR", "--body", fmt.Sprintf("held %d", i)))
	}
	// The officer is told the report is held for GBR, not that it was sent,
	// in text and in JSON.
	out, errOut, err := f.cli("USA", "publish", "--marking", "SECRET//REL TO USA, GBR", "--body", "held 18")
	if err != nil {
		t.Fatalf("publish while GBR is suspended: %v: %s", err, errOut)
	}
	held = append(held, strings.TrimSpace(out))
	if want := "GBR: held, not sent: GBR is suspended: queued, delivered after reinstatement (allowed portion 1 (origin))\n"; errOut != want {
		t.Fatalf("publish while GBR is suspended said %q, want %q", errOut, want)
	}
	var pub struct {
		ID       string
		Releases []struct{ Party, Held string }
	}
	f.jsonCLI(&pub, "USA", "publish", "--marking", "SECRET//REL TO USA, GBR", "--body", "held 19")
	if len(pub.Releases) != 1 || pub.Releases[0].Party != "GBR" || !strings.Contains(pub.Releases[0].Held, "GBR is suspended") {
		t.Fatalf("publish --json while GBR is suspended: %+v", pub)
	}
	held = append(held, pub.ID)
	if e := f.denied("USA", nil, "share", before, "--to", "GBR"); e.Reason != "suspended" {
		t.Fatalf("share to a suspended partner: %+v", e)
	}
	time.Sleep(time.Second)
	if n := len(f.reports("GBR")); n != 1 {
		t.Fatalf("GBR got %d reports while suspended, want only the 1 from before", n)
	}
	if p := f.partner("USA", "GBR"); !p.Suspended || p.Queued != 20 {
		t.Fatalf("USA's view of GBR: %+v, want suspended with 20 held", p)
	}

	// The suspension survives a restart of USA.
	f.stop("USA")
	f.start("USA")
	if p := f.partner("USA", "GBR"); !p.Suspended || p.Queued != 20 {
		t.Fatalf("after USA's restart: %+v, want still suspended with 20 held", p)
	}
	time.Sleep(time.Second)
	if n := len(f.reports("GBR")); n != 1 {
		t.Fatalf("GBR got %d reports after USA's restart while suspended", n)
	}

	f.mustCLI("USA", "partner", "reinstate", "GBR")
	var rows []reportRow
	eventually(t, 30*time.Second, "GBR to receive the held reports", func() bool {
		rows = f.reports("GBR")
		return len(rows) >= 21
	})
	time.Sleep(500 * time.Millisecond)
	rows = f.reports("GBR")
	var got []string
	for i := len(rows) - 1; i >= 0; i-- {
		got = append(got, rows[i].ID)
	}
	if want := append([]string{before}, held...); !slices.Equal(got, want) {
		t.Fatalf("GBR after reinstatement holds\n %v\nwant (in order, once each)\n %v", got, want)
	}
	if p := f.partner("USA", "GBR"); p.Suspended || p.Queued != 0 {
		t.Fatalf("after reinstatement: %+v", p)
	}
}

// Suspend a subscriber: its stream ends with a clear status, its cursor is
// kept, and after reinstatement it resumes exactly where it stopped.
func TestE2ESuspendSubscriber(t *testing.T) {
	t.Parallel()
	f := newFederation(t, "USA", "GBR")
	f.startAll("USA", "GBR")
	analyst := filepath.Join(f.dir, "GBR", "analyst")
	var ids []string
	for i := 0; i < 3; i++ {
		ids = append(ids, publishID(f, "USA", "--marking", "SECRET//REL TO USA, GBR", "--topic", "CT", "--body", fmt.Sprintf("r%d", i)))
	}
	f.waitHolds("GBR", ids[2])

	cmd := exec.Command(f.bin, "--dev", f.dir, "--as", "GBR", "--profile", analyst, "subscribe", "--json")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var seen []string
	for len(seen) < 3 {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("subscription ended early: %s", stderr.String())
			}
			var d struct {
				ID string `json:"id"`
			}
			if err := json.Unmarshal([]byte(l), &d); err != nil {
				t.Fatal(err)
			}
			seen = append(seen, d.ID)
		case <-time.After(20 * time.Second):
			t.Fatal("the subscriber did not get the first 3 reports")
		}
	}
	f.mustCLI("GBR", "subscriber", "suspend", "analyst", "--reason", "exfiltration alert")
	done := make(chan error, 1)
	// With --json the error comes on stdout, on one line like the
	// reports before it: a reader of JSON lines parses it as they come.
	var rest []string
	go func() {
		for l := range lines {
			rest = append(rest, l)
		}
		done <- cmd.Wait()
	}()
	select {
	case err := <-done:
		var e struct {
			Error cliErr `json:"error"`
		}
		if err == nil || len(rest) != 1 || json.Unmarshal([]byte(rest[0]), &e) != nil || e.Error.Code != "PermissionDenied" ||
			!strings.Contains(e.Error.Message, "suspended") || !strings.Contains(e.Error.Message, "cursor 3") {
			t.Fatalf("the subscription ended with %v, output lines %q: want a clear suspension status on one line", err, rest)
		}
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
		t.Fatal("the subscription did not end within 5s of the suspension")
	}
	// New subscriptions are refused while suspended, with reason
	// "suspended" and without the security team's reason.
	if _, errOut, err := f.cli("GBR", "--profile", analyst, "subscribe", "--count", "1"); err == nil || !strings.Contains(errOut, "suspended") || strings.Contains(errOut, "exfiltration") {
		t.Fatalf("subscribe while suspended: err=%v stderr=%q", err, errOut)
	}
	if e := f.denied("GBR", []string{"exfiltration"}, "--profile", analyst, "subscribe", "--count", "1"); e.Reason != "suspended" || e.Code != "PermissionDenied" {
		t.Fatalf("subscribe while suspended: %+v, want PermissionDenied with reason suspended", e)
	}
	// Its attempts are on record: one security event for the two (at most
	// one a minute), naming it.
	var events []struct{ Kind, Partner, Message string }
	f.jsonCLI(&events, "GBR", "events")
	attempts := 0
	for _, e := range events {
		if e.Kind == "suspended-attempt" {
			attempts++
			if !strings.Contains(e.Message, "svc/analyst is suspended here and tried to subscribe") || e.Partner != "" {
				t.Fatalf("the attempt's security event: %+v", e)
			}
		}
	}
	if attempts != 1 {
		t.Fatalf("GBR's security events record %d suspended attempts, want 1 (two attempts within a minute): %+v", attempts, events)
	}
	for i := 3; i < 5; i++ {
		ids = append(ids, publishID(f, "USA", "--marking", "SECRET//REL TO USA, GBR", "--topic", "CT", "--body", fmt.Sprintf("r%d", i)))
	}
	f.waitHolds("GBR", ids[4])
	f.mustCLI("GBR", "subscriber", "reinstate", "analyst")
	out := f.mustCLI("GBR", "--profile", analyst, "subscribe", "--resume", "--json", "--count", "2")
	var resumed []string
	dec := json.NewDecoder(strings.NewReader(out))
	for {
		var d struct {
			ID string `json:"id"`
		}
		if err := dec.Decode(&d); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		resumed = append(resumed, d.ID)
	}
	if !slices.Equal(seen, ids[:3]) || !slices.Equal(resumed, ids[3:]) {
		t.Fatalf("before suspension %v, after reinstatement %v; want %v then %v", seen, resumed, ids[:3], ids[3:])
	}
}

type withdrawStatus struct {
	WithdrawalID string `json:"withdrawal_id"`
	Complete     bool   `json:"complete"`
	Parties      []struct {
		Party        string `json:"party"`
		Acknowledged bool   `json:"acknowledged"`
	} `json:"parties"`
}

func (s withdrawStatus) acked(party string) bool {
	for _, p := range s.Parties {
		if p.Party == party {
			return p.Acknowledged
		}
	}
	return false
}

func (s withdrawStatus) lists(party string) bool {
	for _, p := range s.Parties {
		if p.Party == party {
			return true
		}
	}
	return false
}

type withdrawnShow struct {
	Withdrawn *struct {
		Action string `json:"action"`
	} `json:"withdrawn"`
	Portions []portionJSON `json:"portions"`
}

func (f *federation) assertPurged(party, id, secret string) {
	f.t.Helper()
	var s withdrawnShow
	f.jsonCLI(&s, party, "show", id)
	if s.Withdrawn == nil || s.Withdrawn.Action != "purge" {
		f.t.Fatalf("%s's view of %s is not withdrawn: %+v", party, id, s)
	}
	for _, p := range s.Portions {
		if !p.Withheld || p.Body != "" {
			f.t.Fatalf("%s still shows portion %d of %s", party, p.Index, id)
		}
	}
	if out := f.mustCLI(party, "show", "--json", id); strings.Contains(out, secret) {
		f.t.Fatalf("%s's view still contains the content", party)
	}
	// And it is never passed on.
	if e := f.denied(party, []string{secret}, "share", id, "--to", "USA"); e.Reason != "withdrawn" && e.Reason != "invalid-argument" {
		f.t.Fatalf("%s sharing a withdrawn report: %+v", party, e)
	}
}

// Withdraw a report that went USA -> GBR -> CAN (with consent): both purge,
// both acknowledge, status shows complete; GBR's subscriber is told.
func TestE2EWithdrawEverywhere(t *testing.T) {
	t.Parallel()
	f := newFederation(t, "USA", "GBR", "CAN")
	f.startAll("USA", "GBR", "CAN")
	id := publishID(f, "USA", "--marking", "SECRET//REL TO USA, GBR//ORCON", "--topic", "CT", "--body", "WITHDRAW-ME")
	f.waitHolds("GBR", id)
	var req struct {
		ID string `json:"id"`
	}
	f.jsonCLI(&req, "GBR", "consent", "request", id, "--to", "CAN", "--purpose", "joint operation")
	eventually(t, 10*time.Second, "USA to see the request", func() bool {
		_, _, err := f.cli("USA", "consent", "approve", req.ID)
		return err == nil
	})
	eventually(t, 10*time.Second, "GBR's share to go through", func() bool {
		_, _, err := f.cli("GBR", "share", id, "--to", "CAN")
		return err == nil
	})
	f.waitHolds("CAN", id)

	var st withdrawStatus
	f.jsonCLI(&st, "USA", "withdraw", id, "--reason", "source compromised")
	if st.Complete || !st.lists("GBR") || !st.lists("CAN") {
		t.Fatalf("status right after withdraw: %+v (want GBR and CAN pending)", st)
	}
	eventually(t, 20*time.Second, "both to acknowledge", func() bool {
		f.jsonCLI(&st, "USA", "withdraw", "status", id)
		return st.Complete
	})
	if !st.acked("GBR") || !st.acked("CAN") || len(st.Parties) != 2 {
		t.Fatalf("final status: %+v", st)
	}
	f.assertPurged("GBR", id, "WITHDRAW-ME")
	f.assertPurged("CAN", id, "WITHDRAW-ME")
	// Each node lists the report once (the withdrawal adds it to the feed
	// again), marked withdrawn.
	for _, party := range []string{"USA", "GBR", "CAN"} {
		var rows []reportRow
		for _, r := range f.reports(party) {
			if r.ID == id {
				rows = append(rows, r)
			}
		}
		if len(rows) != 1 || !rows[0].Withdrawn {
			t.Fatalf("%s lists the withdrawn report as %+v, want once, withdrawn", party, rows)
		}
		if party != "USA" && rows[0].PortionsHeld != 0 {
			t.Fatalf("%s lists the purged report with %d portions held, want 0: its content is gone", party, rows[0].PortionsHeld)
		}
	}
	if out := f.mustCLI("USA", "reports"); strings.Count(out, id) != 1 || !strings.Contains(out, "WITHDRAWN") {
		t.Fatalf("USA's reports: %s", out)
	}
	// GBR's analyst sees the report, then its withdrawal, on its stream.
	out := f.mustCLI("GBR", "--profile", filepath.Join(f.dir, "GBR", "analyst"), "subscribe", "--json", "--count", "1")
	var d withdrawnShow
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatal(err)
	}
	if d.Withdrawn == nil || strings.Contains(out, "WITHDRAW-ME") {
		t.Fatalf("the subscriber's stream did not carry the withdrawal: %s", out)
	}
}

// Withdraw while CAN's node is down: the status shows CAN pending; after
// CAN returns it completes.
func TestE2EWithdrawWhileOffline(t *testing.T) {
	t.Parallel()
	f := newFederation(t, "USA", "GBR", "CAN")
	f.startAll("USA", "GBR", "CAN")
	id := publishID(f, "USA", "--marking", "SECRET//REL TO USA, GBR, CAN", "--body", "OFFLINE-BODY")
	f.waitHolds("GBR", id)
	f.waitHolds("CAN", id)
	f.stop("CAN")
	var st withdrawStatus
	f.jsonCLI(&st, "USA", "withdraw", id, "--reason", "wrong recipient list")
	eventually(t, 20*time.Second, "GBR to acknowledge", func() bool {
		f.jsonCLI(&st, "USA", "withdraw", "status", id)
		return st.acked("GBR")
	})
	time.Sleep(time.Second)
	f.jsonCLI(&st, "USA", "withdraw", "status", id)
	if st.Complete || st.acked("CAN") || !st.lists("CAN") {
		t.Fatalf("with CAN down: %+v, want CAN pending", st)
	}
	f.start("CAN")
	eventually(t, 30*time.Second, "CAN to acknowledge after it returns", func() bool {
		f.jsonCLI(&st, "USA", "withdraw", "status", id)
		return st.Complete
	})
	f.assertPurged("CAN", id, "OFFLINE-BODY")
}
