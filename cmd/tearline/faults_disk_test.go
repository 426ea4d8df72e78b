//go:build faults

package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tearline/tearline/internal/faultfs"
)

// diskFault is one cycle of the disk scenario.
type diskFault struct {
	name     string
	readOnly bool // remount read-only (with a restart) instead of filling
	kill     bool // SIGKILL and restart the node while the disk is full
	code     codes.Code
	reason   string
	says     string // in the refusal's message
	partner  string // in the sender's log when its envelopes are refused
}

var diskFaults = []diskFault{
	{name: "full", code: codes.ResourceExhausted, reason: "store-full", says: "store is full", partner: "receiving node's store is full"},
	{name: "full, killed and restarted while full", kill: true, code: codes.ResourceExhausted, reason: "store-full", says: "store is full", partner: "receiving node's store is full"},
	{name: "read-only", readOnly: true, code: codes.Unavailable, reason: "store-read-only", says: "store is read-only", partner: "receiving node's store is read-only"},
	{name: "full again", code: codes.ResourceExhausted, reason: "store-full", says: "store is full", partner: "receiving node's store is full"},
}

// faultDisk: GBR's data dir is a 16 MiB tmpfs of its own. In each cycle
// USA and GBR publish, then GBR's disk is filled to the last byte (or
// remounted read-only, which needs a restart: Linux does not remount a file
// system read-only under a file open for writing). GBR must then refuse new
// work (its own publishes, USA's envelopes) with a clear status (code,
// ErrorInfo reason, a sentence that names the cause and the next step, in
// the CLI too), keep serving reads (reports, show, provenance), and keep
// every report it acknowledged, across a SIGKILL too. Once space returns
// (or the file system is writable again) GBR takes work again, USA's outbox
// drains, and GBR holds every report exactly once.
func faultDisk(t *testing.T, r *faultResult) {
	if ok, why := faultfs.Available(); !ok {
		t.Fatalf("the disk scenario mounts a tmpfs: %s (run make faults as root)", why)
	}
	f := newFederation(t, "USA", "GBR")
	data := filepath.Join(f.dir, "GBR", "data")
	faultfs.MountT(t, data, 16<<20, func() { f.stop("GBR") })
	f.startAll("USA", "GBR")
	usa, gbr := f.officer("USA"), f.officer("GBR")
	big := filepath.Join(t.TempDir(), "big.txt")
	if err := os.WriteFile(big, []byte(strings.Repeat("x", 1<<20)), 0o600); err != nil {
		t.Fatal(err)
	}
	var (
		fromUSA []string // published at USA for GBR
		ownGBR  []string // published at GBR (acknowledged to its officer)
		refused int      // publishes GBR refused
	)
	publish := func(o *officer, banner string, n, size int, into *[]string) {
		t.Helper()
		for i := 0; i < n; i++ {
			id, err := o.publish(banner, fmt.Sprintf("disk report %d", len(*into)), make([]byte, size))
			if err != nil {
				t.Fatalf("publish at %s: %v", o.party, err)
			}
			*into = append(*into, id)
		}
	}
	// holdsAll checks that GBR holds every report it acknowledged: its own
	// publishes, and USA's reports that USA saw acknowledged.
	holdsAll := func(when string) {
		t.Helper()
		acks, err := usa.acknowledged("GBR", fromUSA)
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		for _, id := range fromUSA {
			if _, ok := acks[id]; ok {
				want = append(want, id)
			}
		}
		want = append(want, ownGBR...)
		missing := gbr.missing(want)
		r.checks += len(want)
		if len(missing) > 0 {
			r.lost = max(r.lost, len(missing))
			t.Fatalf("%s: GBR does not hold %d of the %d reports it acknowledged: %v", when, len(missing), len(want), missing)
		}
	}
	for _, df := range diskFaults {
		publish(usa, "SECRET//REL TO USA, GBR", 20, 512, &fromUSA)
		publish(gbr, "SECRET//REL TO GBR", 5, 512, &ownGBR)
		drain(t, usa, "GBR", 30*time.Second)
		holdsAll(df.name + ", before")
		if df.readOnly {
			f.stop("GBR")
			if err := faultfs.SetReadOnly(data, true); err != nil {
				t.Fatal(err)
			}
			f.start("GBR")
		} else if _, err := faultfs.Fill(data); err != nil {
			t.Fatal(err)
		}
		// New work is refused. On a full disk free pages of the store's
		// file may take a few more writes; large reports need new space.
		var refusal error
		for i := 0; i < 200 && refusal == nil; i++ {
			id, err := gbr.publish("SECRET//REL TO GBR", "large", make([]byte, 256<<10))
			if err != nil {
				refusal = err
			} else {
				ownGBR = append(ownGBR, id)
			}
		}
		checkRefusal(t, df, refusal)
		refused++
		// The CLI says it in one sentence with the next step, or in JSON.
		_, stderr, err := f.cli("GBR", "publish", "--marking", "SECRET//REL TO GBR", "--body", "@"+big)
		if err == nil || strings.Count(strings.TrimSpace(stderr), "\n") != 0 || !strings.Contains(stderr, df.says) || !strings.Contains(stderr, "Next: ") {
			t.Fatalf("%s: CLI publish: err=%v stderr=%q: want one sentence saying %q with a next step", df.name, err, stderr, df.says)
		}
		out, _, _ := f.cli("GBR", "--json", "publish", "--marking", "SECRET//REL TO GBR", "--body", "@"+big)
		var je struct {
			Error struct{ Code, Reason, Message, Next string } `json:"error"`
		}
		if json.Unmarshal([]byte(out), &je) != nil || je.Error.Code != df.code.String() || je.Error.Reason != df.reason || je.Error.Next == "" {
			t.Fatalf("%s: CLI publish --json: %s", df.name, out)
		}
		refused += 2
		// USA's envelopes are refused too and wait in USA's outbox; USA's
		// log says why.
		var during []string
		publish(usa, "SECRET//REL TO USA, GBR", 10, 16<<10, &during)
		fromUSA = append(fromUSA, during...)
		eventually(t, 20*time.Second, "USA's log to show GBR refusing its envelopes: "+df.partner, func() bool {
			return strings.Contains(f.log("USA"), df.partner)
		})
		if df.readOnly {
			if n, err := usa.queued("GBR"); err != nil || n != len(during) {
				t.Fatalf("%s: USA's outbox for GBR holds %d (%v), want %d", df.name, n, err, len(during))
			}
		}
		if df.kill {
			f.kill("GBR")
			f.start("GBR") // on the full disk: opening the store needs no new space
			// The store's files keep space they hold ahead of their
			// records (the log's other file, free pages): as before the
			// kill, a few large reports may fit before it refuses.
			var err error
			for i := 0; i < 200 && err == nil; i++ {
				var id string
				if id, err = gbr.publish("SECRET//REL TO GBR", "large", make([]byte, 256<<10)); err == nil {
					ownGBR = append(ownGBR, id)
				}
			}
			if status.Code(err) != df.code {
				t.Fatalf("%s: publish after the restart: %v, want %v", df.name, err, df.code)
			}
			refused++
		}
		// Reads still work.
		var rows []reportRow
		f.jsonCLI(&rows, "GBR", "reports", "--limit", "1000")
		if len(rows) == 0 {
			t.Fatalf("%s: GBR lists no report", df.name)
		}
		for _, id := range []string{fromUSA[0], ownGBR[len(ownGBR)-1]} {
			f.mustCLI("GBR", "show", id)
			f.mustCLI("GBR", "provenance", id)
		}
		holdsAll(df.name + ", during")
		// Space returns (or the file system is writable again).
		if df.readOnly {
			f.stop("GBR")
			if err := faultfs.SetReadOnly(data, false); err != nil {
				t.Fatal(err)
			}
			f.start("GBR")
		} else if err := faultfs.Free(data); err != nil {
			t.Fatal(err)
		}
		publish(gbr, "SECRET//REL TO GBR", 1, 256<<10, &ownGBR)
		drain(t, usa, "GBR", 30*time.Second)
		holdsAll(df.name + ", after")
		r.cycles++
		t.Logf("disk fault %q: refused with %v (%s), reads served, nothing lost", df.name, df.code, df.reason)
	}
	feed := newFeedReader(gbr)
	if err := feed.catchUp(); err != nil {
		t.Fatal(err)
	}
	all := append(slices.Clone(fromUSA), ownGBR...)
	lost, doubled := tally(feed.count, all)
	r.reports = len(all)
	r.checks += len(all)
	r.lost = max(r.lost, len(lost))
	r.doubled = len(doubled)
	if len(lost)+len(doubled) > 0 || len(feed.entries) != len(all)-len(lost)+sumExtra(feed.count) {
		t.Errorf("GBR's feed: %d of %d reports lost %v, %d doubled %v, %d entries", len(lost), len(all), lost, len(doubled), doubled, len(feed.entries))
	}
	r.note("%d reports from USA and %d of GBR's own; %d publishes refused with the store's status (gRPC and CLI)", len(fromUSA), len(ownGBR), refused)
}

// checkRefusal checks a refusal of new work: the fault's code and ErrorInfo
// reason, and a message that names the cause and the next step.
func checkRefusal(t *testing.T, df diskFault, err error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: GBR took 200 large reports on a full disk", df.name)
	}
	st := status.Convert(err)
	var reason string
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			reason = info.GetReason()
		}
	}
	if st.Code() != df.code || reason != df.reason || !strings.Contains(st.Message(), df.says) || !strings.Contains(st.Message(), "reads still work") || !strings.Contains(st.Message(), "Next: ") {
		t.Fatalf("%s: publish refused with %v %q: %s; want %v %q naming the cause and the next step", df.name, st.Code(), reason, st.Message(), df.code, df.reason)
	}
}
