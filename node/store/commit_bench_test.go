package store

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"

	reportv1 "github.com/tearline/tearline/proto/tearline/report/v1"
	storev1 "github.com/tearline/tearline/proto/tearline/store/v1"
)

// BenchmarkPublishCommits measures the store side of publishing: 64
// writers at once, each storing a report with a 2 KiB portion, its
// provenance, an outbox item for one partner and, as acknowledgements
// arrive, the outbox item's removal; all through Batch (group commit,
// fsync'd). It reports reports/s.
//
//	go test -run '^$' -bench BenchmarkPublishCommits ./node/store/
func BenchmarkPublishCommits(b *testing.B) {
	s := openTestStore(b)
	body := make([]byte, 2048)
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for range 64 {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				if err := s.Batch(t0, publishTx(i, body)); err != nil {
					b.Error(err)
					return
				}
				if i%64 == 0 {
					items, err := s.Outbox("GBR", 0, 64)
					if err != nil {
						b.Error(err)
						return
					}
					acks := make([]Acked, len(items))
					for j, it := range items {
						acks[j] = Acked{Seq: it.Seq, Event: &storev1.Event{ReportId: it.Item.GetReportId(), Kind: "acknowledged", Party: "GBR"}}
					}
					if err := s.Ack(t0, "GBR", acks...); err != nil {
						b.Error(err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reports/s")
}

// publishTx is the store's part of publishing report i (its body given):
// the report, its provenance and an outbox item for one partner.
func publishTx(i int64, body []byte) func(*Tx) error {
	id := fmt.Sprintf("r%09d", i)
	env := &reportv1.Envelope{
		Header:   &reportv1.Signed{Payload: make([]byte, 300), Signature: make([]byte, 64), CertChain: [][]byte{make([]byte, 500)}},
		Portions: []*reportv1.Portion{{Index: 1, Title: id, Body: body}},
	}
	return func(tx *Tx) error {
		if err := tx.PutReport(id, &storev1.StoredReport{Envelope: env}); err != nil {
			return err
		}
		if err := tx.AddEvent(&storev1.Event{ReportId: id, Kind: "published", Subject: "spiffe://usa/officer/o"}); err != nil {
			return err
		}
		if err := tx.AddEvent(&storev1.Event{ReportId: id, Kind: "released", Party: "GBR", Decisions: []*reportv1.Decision{{Index: 1, Allowed: true, Rule: "origin", Message: "released by its originator"}}}); err != nil {
			return err
		}
		return tx.Enqueue("GBR", &storev1.OutboxItem{ReportId: id, Envelope: env})
	}
}

// BenchmarkPublishCommitAlone is BenchmarkPublishCommits' write with one
// writer: each report a commit of its own, as at a low rate (the bench's
// latency phase). The log's records are written but not synced: the
// fdatasync's wall time (0.3-1 ms here) would hide what this measures, a
// commit's CPU and allocations.
//
//	go test -run '^$' -bench BenchmarkPublishCommitAlone -benchmem ./node/store/
func BenchmarkPublishCommitAlone(b *testing.B) {
	orig := syncLog
	syncLog = func(*os.File) error { return nil }
	b.Cleanup(func() { syncLog = orig })
	s := openTestStore(b)
	body := make([]byte, 2048)
	b.ReportAllocs()
	var i int64
	for b.Loop() {
		i++
		if err := s.Batch(t0, publishTx(i, body)); err != nil {
			b.Fatal(err)
		}
	}
}
