package gateway

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tearline/tearline/internal/scrape"
	"github.com/tearline/tearline/node/audit"
	"github.com/tearline/tearline/node/store"
	"github.com/tearline/tearline/pki"
	adminv1 "github.com/tearline/tearline/proto/tearline/admin/v1"
	clientv1 "github.com/tearline/tearline/proto/tearline/client/v1"
)

func scrapeMetrics(t *testing.T, addr string) string {
	t.Helper()
	text, err := scrape.Get(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	return text
}

// Repeated denials for one partner and a subscriber's delivery burst far
// above its baseline each raise a security event (ListSecurityEvents, what
// 'tearline events' shows) and count in the metric; the node's start and
// its certificate are in the audit log.
func TestAnomaliesRaiseEventsAndMetrics(t *testing.T) {
	f := startFedWith(t, func(c *Config) {
		c.MetricsListen = "127.0.0.1:0"
		c.Audit.Anomalies = AnomalyConfig{DenialsPerPartner: 3, DenialWindow: time.Minute, DeliveryWindow: time.Second, DeliveryFactor: 3, DeliveryMin: 10}
	}, "USA", "CAN")
	usa := f.officer("USA")
	prof, err := pki.LoadProfile(filepath.Join(f.dir, "USA"))
	if err != nil {
		t.Fatal(err)
	}
	is, _ := prof.Issued()
	admin := adminv1.NewAdminServiceClient(f.conn("USA", is, prof.Bundle))
	ctx := ctxT(t)

	// The subscriber streams; its baseline is one report a second.
	analyst := f.client("USA", filepath.Join(f.dir, "USA", "analyst"))
	stream, err := analyst.Subscribe(ctx, &clientv1.SubscribeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		for {
			if _, err := stream.Recv(); err != nil {
				got <- err
				return
			}
		}
	}()
	publish := func(banner string) string {
		resp, err := usa.Publish(ctx, &clientv1.PublishRequest{Topics: []string{"CT"}, Portions: []*clientv1.NewPortion{{Banner: banner, Body: []byte("b")}}})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetId()
	}
	var id string
	for range 5 {
		id = publish("SECRET//REL TO USA")
		time.Sleep(time.Second)
	}
	for range 3 {
		if _, err := usa.Share(ctx, &clientv1.ShareRequest{Id: id, To: "CAN"}); err == nil {
			t.Fatal("a share outside REL TO was allowed")
		}
	}
	for range 40 {
		publish("SECRET//REL TO USA")
	}
	kinds := func() map[string]string {
		resp, err := admin.ListSecurityEvents(ctx, &adminv1.ListSecurityEventsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, e := range resp.GetEvents() {
			out[e.GetKind()] = e.GetPartner() + ": " + e.GetMessage()
		}
		return out
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		k := kinds()
		if strings.HasPrefix(k[audit.AnomalyDenials], "CAN: ") && strings.Contains(k[audit.AnomalyDeliveryRate], "svc/analyst") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("security events: %v", k)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Every publish is a denial for CAN too (outside REL TO), and a burst
	// may straddle two windows: at least one of each.
	m := scrapeMetrics(t, f.servers["USA"].MetricsAddr())
	for _, want := range []string{
		`(?m)^tearline_audit_anomalies_total\{kind="anomaly-repeated-denials"\} [1-9][0-9]*$`,
		`(?m)^tearline_audit_anomalies_total\{kind="anomaly-delivery-rate"\} [1-9][0-9]*$`,
		`(?m)^tearline_audit_anomalies_total\{kind="audit-chain-broken"\} 0$`,
		`(?m)^# TYPE tearline_audit_anomalies_total counter$`,
		`(?m)^tearline_store_commit_seconds_count [1-9][0-9]*$`,
		`(?m)^# TYPE tearline_store_commit_seconds histogram$`,
		`(?m)^tearline_store_writes_total [1-9][0-9]*$`,
	} {
		if !regexp.MustCompile(want).MatchString(m) {
			t.Errorf("metrics do not match %s:\n%s", want, m)
		}
	}
	// Every commit is in the histogram's last bucket, and those of this
	// test's few reports within its highest bound.
	commits, err := scrape.Uint(m, "tearline_store_commit_seconds_count")
	if err != nil {
		t.Fatal(err)
	}
	buckets, err := scrape.Histogram(m, "tearline_store_commit_seconds")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(buckets); n != len(store.CommitBounds)+1 || buckets[n-1].Count != commits || buckets[n-2].Count == 0 {
		t.Errorf("commit histogram %v for %d commits", buckets, commits)
	}
	for _, name := range []string{"tearline_store_commit_seconds_sum", "tearline_store_write_seconds_total", "tearline_store_log_seconds_total", "tearline_store_checkpoint_seconds_total"} {
		if secs, err := scrape.Float(m, name); err != nil || secs <= 0 {
			t.Errorf("%s = %v, %v; want a positive number of seconds", name, secs, err)
		}
	}
	// Each commit that changed something appended a log record, and the
	// node's start made a checkpoint at least.
	for name, atLeast := range map[string]uint64{"tearline_store_log_records_total": 1, "tearline_store_log_bytes_total": 1, "tearline_store_checkpoints_total": 1} {
		if n, err := scrape.Uint(m, name); err != nil || n < atLeast || (name == "tearline_store_log_records_total" && n > commits) {
			t.Errorf("%s = %d, %v; want at least %d (and no more records than the %d commits)", name, n, err, atLeast, commits)
		}
	}
	// The reads that waited for a commit to be durable are counted (how
	// many depends on timing: store/durable_test.go counts them).
	for _, name := range []string{"tearline_store_durable_waits_total", "tearline_store_durable_wait_seconds_total"} {
		if v, err := scrape.Float(m, name); err != nil || v < 0 {
			t.Errorf("%s = %v, %v; want a count", name, v, err)
		}
	}
	// The node's start, with its certificate, is the log's first entry.
	ex, err := admin.ExportAudit(ctx, &adminv1.ExportAuditRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var first *adminv1.AuditRecord
	for {
		msg, err := ex.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if e := msg.GetEntry(); e != nil && first == nil {
			first = e
		}
	}
	e, err := audit.Decode(first.GetCanonical())
	if err != nil || e.GetKind() != "node-started" || !strings.Contains(e.GetDetail(), "certificate serial") {
		t.Fatalf("first entry: %v %v", e, err)
	}
	if v, err := admin.VerifyAudit(ctx, &adminv1.VerifyAuditRequest{}); err != nil || !v.GetOk() || v.GetCheckpoints() == 0 {
		t.Fatalf("verify: %v %v", v, err)
	}
}
