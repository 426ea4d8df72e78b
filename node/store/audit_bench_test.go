package store

import (
	"fmt"
	"path/filepath"
	"testing"

	reportv1 "github.com/tearline/tearline/proto/tearline/report/v1"
	storev1 "github.com/tearline/tearline/proto/tearline/store/v1"
)

// BenchmarkAuditAppendCPU isolates the audit log's CPU and write cost in the
// store: one transaction per op records what a publish to two partners and
// its delivery to four subscribers record (a published event, two release
// decisions, four deliveries), with the audit log on and off. fsync is off
// (bbolt NoSync) so that the figure is the work the log adds to a commit,
// not the disk; BenchmarkPublishDeliverAudit (gateway) is the end-to-end
// figure with fsync.
func BenchmarkAuditAppendCPU(b *testing.B) {
	for _, on := range []bool{true, false} {
		b.Run(fmt.Sprintf("audit=%v", on), func(b *testing.B) {
			s, err := Open(filepath.Join(b.TempDir(), "bench.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			s.db.NoSync = true
			if !on {
				s.DisableAuditForBenchmark()
			}
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				id := fmt.Sprintf("01a20850-bd63-7d6f-88e2-%012d", i)
				err := s.Update(t0, func(tx *Tx) error {
					if err := tx.AddEvent(&storev1.Event{ReportId: id, Kind: "published", Subject: "spiffe://usa.tearline.test/party/USA/officer/liaison", Party: "USA"}); err != nil {
						return err
					}
					for _, p := range []string{"GBR", "CAN"} {
						if err := tx.AddEvent(&storev1.Event{ReportId: id, Kind: "released", Party: p, Subject: "spiffe://usa.tearline.test/party/USA/officer/liaison",
							Decisions: []*reportv1.Decision{{Index: 1, Allowed: true, Rule: "origin", Banner: "SECRET//REL TO CAN, GBR, USA", Party: p, Message: "USA releases it to its partner inside REL TO"}}}); err != nil {
							return err
						}
					}
					for j := range 4 {
						if err := tx.AddEvent(&storev1.Event{ReportId: id, Kind: "delivered", Subject: fmt.Sprintf("spiffe://usa.tearline.test/party/USA/svc/sub%d", j), Portions: []uint32{1}}); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
