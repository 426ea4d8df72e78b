package store

import (
	"path/filepath"
	"testing"

	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"

	reportv1 "github.com/tearline/tearline/proto/tearline/report/v1"
	storev1 "github.com/tearline/tearline/proto/tearline/store/v1"
)

// publishLike stores n reports the way a publish does (report, two events,
// an outbox item), in groups of 20 per commit, with UUIDv7 ids.
func publishLike(t *testing.T, s *Store, n int) {
	t.Helper()
	body := make([]byte, 2048)
	for i := 0; i < n; i += 20 {
		err := s.Update(t0, func(tx *Tx) error {
			for j := i; j < min(i+20, n); j++ {
				id := uuid.Must(uuid.NewV7()).String()
				env := &reportv1.Envelope{
					Header:   &reportv1.Signed{Payload: make([]byte, 300), Signature: make([]byte, 64)},
					Portions: []*reportv1.Portion{{Index: 1, Title: id, Body: body}},
				}
				if err := tx.PutReport(id, &storev1.StoredReport{Envelope: env}); err != nil {
					return err
				}
				for _, kind := range []string{"published", "released"} {
					if err := tx.AddEvent(&storev1.Event{ReportId: id, Kind: kind, Party: "GBR"}); err != nil {
						return err
					}
				}
				if err := tx.Enqueue("GBR", &storev1.OutboxItem{ReportId: id, Envelope: env}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestOrderedBucketsArePacked: buckets whose keys arrive in order fill
// their pages instead of leaving each half empty (bbolt's default split),
// so a commit writes fewer pages. Before their fill was set, reports, provenance
// and audit measured 47-50 % full here.
func TestOrderedBucketsArePacked(t *testing.T) {
	s := openTestStore(t)
	publishLike(t, s.Store, 2000)
	err := s.db.View(func(tx *bolt.Tx) error {
		for name, want := range map[string]float64{"reports": 0.7, "provenance": 0.8, "feed": 0.9, "audit": 0.9} {
			st := tx.Bucket([]byte(name)).Stats()
			fill := float64(st.LeafInuse) / float64(st.LeafAlloc)
			t.Logf("%s: %d leaf pages, %.0f %% full", name, st.LeafPageN, 100*fill)
			if fill < want {
				t.Errorf("%s leaf pages are %.0f %% full, want at least %.0f %%", name, 100*fill, 100*want)
			}
		}
		ob := tx.Bucket(bucketOutbox).Bucket([]byte("GBR")).Stats()
		if fill := float64(ob.LeafInuse) / float64(ob.LeafAlloc); fill < 0.8 {
			t.Errorf("outbox leaf pages are %.0f %% full, want at least 80 %%", 100*fill)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestPageSize: a new store has 16 KiB pages; a store created with
// bbolt's 4 KiB pages (every store before this change) keeps them, opens
// and takes writes.
func TestPageSize(t *testing.T) {
	s := openTestStore(t)
	if got := s.db.Info().PageSize; got != pageSize {
		t.Errorf("new store: page size %d, want %d", got, pageSize)
	}

	path := filepath.Join(t.TempDir(), "old.db")
	old, err := bolt.Open(path, 0o600, &bolt.Options{PageSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(path)
	if err != nil {
		t.Fatalf("open a 4 KiB-page store: %v", err)
	}
	defer func() {
		if err := s2.Close(); err != nil {
			t.Error(err)
		}
		checkFile(t, path)
	}()
	if got := s2.db.Info().PageSize; got != 4096 {
		t.Errorf("existing store: page size %d, want its own 4096", got)
	}
	publishLike(t, s2, 100)
	if n, err := s2.Count(); err != nil || n != 100 {
		t.Errorf("Count = %d, %v; want 100", n, err)
	}
}
