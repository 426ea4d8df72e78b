package store

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	"github.com/tearline/tearline/node/audit"
	reportv1 "github.com/tearline/tearline/proto/tearline/report/v1"
	storev1 "github.com/tearline/tearline/proto/tearline/store/v1"
)

// verifyFile opens the store at path and verifies its audit log.
func verifyFile(t *testing.T, path string) audit.Result {
	t.Helper()
	s, err := Open(path)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	defer s.Close()
	return verifyStore(t, s)
}

func verifyStore(t *testing.T, s *Store) audit.Result {
	t.Helper()
	var res audit.Result
	err := s.ViewAudit(func(v AuditView) error {
		var err error
		res, err = audit.Verify(v, "USA", nil)
		return err
	})
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return res
}

// fillAudit records n facts of several kinds, each in a transaction of
// its own, and returns the file's path (the store is closed).
func fillAudit(t *testing.T, n int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "node.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= n; i++ {
		var err error
		switch i % 4 {
		case 0:
			err = s.Update(t0, func(tx *Tx) error {
				return tx.AddEvent(&storev1.Event{ReportId: fmt.Sprintf("r%d", i), Kind: "released", Party: "GBR",
					Decisions: []*reportv1.Decision{{Index: 1, Allowed: true, Rule: "origin"}, {Index: 2, Rule: "noforn"}}})
			})
		case 1:
			err = s.Batch(t0, func(tx *Tx) error {
				return tx.AddEvent(&storev1.Event{ReportId: fmt.Sprintf("r%d", i), Kind: "delivered", Subject: "svc/analyst", Portions: []uint32{1}})
			})
		case 2:
			err = s.Update(t0, func(tx *Tx) error {
				return tx.AddSecurityEvent(&storev1.SecurityEvent{Kind: "rejected-envelope", Partner: "CAN", Rule: "bad-chain", Message: "no basis"})
			})
		case 3:
			err = s.Audit(t0, &storev1.AuditEntry{Kind: "certificate", Detail: fmt.Sprintf("serial %d", i)})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if res := verifyStore(t, s); !res.OK || res.Entries != uint64(n) {
		t.Fatalf("fresh log: %+v, want ok with %d entries", res, n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func storedValue(t *testing.T, path string, seq uint64) []byte {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v []byte
	db.View(func(tx *bolt.Tx) error {
		v = bytes.Clone(tx.Bucket(bucketAudit).Get(u64(seq)))
		return nil
	})
	if v == nil {
		t.Fatalf("no entry %d", seq)
	}
	return v
}

func copyFile(t *testing.T, from string) string {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	to := filepath.Join(t.TempDir(), "copy.db")
	if err := os.WriteFile(to, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return to
}

// Flipping any byte of an entry's stored value in the bbolt file is
// detected, and the first bad sequence number is that entry's.
func TestAuditFlipAnyByte(t *testing.T) {
	path := fillAudit(t, 12)
	for _, seq := range []uint64{1, 7, 12} {
		value := storedValue(t, path, seq)
		file, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		// Copy-on-write can leave stale copies of a page in free pages: flip
		// the byte in every copy, the live one among them.
		var at []int
		for off := 0; ; {
			i := bytes.Index(file[off:], value)
			if i < 0 {
				break
			}
			at = append(at, off+i)
			off += i + 1
		}
		if len(at) == 0 {
			t.Fatalf("entry %d's value not found in the file", seq)
		}
		for i := range value {
			flipped := bytes.Clone(file)
			for _, a := range at {
				flipped[a+i] ^= 0x01
			}
			p := filepath.Join(t.TempDir(), "flipped.db")
			if err := os.WriteFile(p, flipped, 0o600); err != nil {
				t.Fatal(err)
			}
			res := verifyFile(t, p)
			if res.OK || res.FirstBad != seq {
				t.Fatalf("entry %d, byte %d of %d flipped: %+v, want first bad %d", seq, i, len(value), res, seq)
			}
		}
	}
}

func editFile(t *testing.T, path string, fn func(b *bolt.Bucket) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return fn(tx.Bucket(bucketAudit)) }); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// Deleting an entry, or swapping two, is detected at the first one
// concerned; removing the last one breaks the head the store recorded.
func TestAuditDeleteAndReorder(t *testing.T) {
	path := fillAudit(t, 10)
	cases := []struct {
		name string
		edit func(b *bolt.Bucket) error
		want uint64
	}{
		{"delete 4", func(b *bolt.Bucket) error { return b.Delete(u64(4)) }, 4},
		{"delete 1", func(b *bolt.Bucket) error { return b.Delete(u64(1)) }, 1},
		{"delete 4 and 5", func(b *bolt.Bucket) error { b.Delete(u64(4)); return b.Delete(u64(5)) }, 4},
		{"delete the last", func(b *bolt.Bucket) error { return b.Delete(u64(10)) }, 10},
		{"swap 3 and 6", func(b *bolt.Bucket) error {
			v3, v6 := bytes.Clone(b.Get(u64(3))), bytes.Clone(b.Get(u64(6)))
			b.Put(u64(3), v6)
			return b.Put(u64(6), v3)
		}, 3},
		{"swap 8 and 9", func(b *bolt.Bucket) error {
			v8, v9 := bytes.Clone(b.Get(u64(8))), bytes.Clone(b.Get(u64(9)))
			b.Put(u64(8), v9)
			return b.Put(u64(9), v8)
		}, 8},
		{"an entry added outside the node", func(b *bolt.Bucket) error { return b.Put(u64(11), b.Get(u64(10))) }, 11},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := copyFile(t, path)
			editFile(t, p, c.edit)
			res := verifyFile(t, p)
			if res.OK || res.FirstBad != c.want || res.Reason == "" {
				t.Fatalf("%s: %+v, want first bad %d", c.name, res, c.want)
			}
		})
	}
}

// Concurrent writers grouped by Batch still make one unbroken chain, and
// each subscriber's deliveries of one transaction are one entry.
func TestAuditBatchesAndDeliveries(t *testing.T) {
	s := openTestStore(t)
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.Batch(t0, func(tx *Tx) error {
				for _, sub := range []string{"svc/a", "svc/b"} {
					for j := range 3 {
						if err := tx.AddEvent(&storev1.Event{ReportId: fmt.Sprintf("r%d-%d", i, j), Kind: "delivered", Subject: sub, Portions: []uint32{1, 2}}); err != nil {
							return err
						}
					}
				}
				return tx.AddEvent(&storev1.Event{ReportId: fmt.Sprintf("r%d", i), Kind: "received", Party: "GBR"})
			})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if res := verifyStore(t, s.Store); !res.OK || res.Entries != 40*3 {
		t.Fatalf("after concurrent batches: %+v, want ok with %d entries", res, 40*3)
	}
	kinds := map[string]int{}
	err := s.AuditEntries(1, func(e *storev1.AuditEntry, _ []byte) error {
		kinds[e.GetKind()]++
		if e.GetKind() == "deliveries" && len(e.GetDeliveries()) != 3 {
			t.Errorf("a deliveries entry lists %d reports, want 3", len(e.GetDeliveries()))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if kinds["deliveries"] != 80 || kinds["received"] != 40 {
		t.Fatalf("entry kinds: %v", kinds)
	}
	// The log survives a reopen and goes on from its head.
	s.reopen()
	if err := s.Audit(t0, &storev1.AuditEntry{Kind: "node-started"}); err != nil {
		t.Fatal(err)
	}
	if res := verifyStore(t, s.Store); !res.OK || res.Entries != 121 {
		t.Fatalf("after reopen: %+v", res)
	}
}

// A transaction that fails leaves no audit entry, and what a committed one
// records is audited in it.
func TestAuditRollsBackWithItsTransaction(t *testing.T) {
	s := openTestStore(t)
	err := s.Update(t0, func(tx *Tx) error {
		if err := tx.AddEvent(&storev1.Event{ReportId: "r", Kind: "published"}); err != nil {
			return err
		}
		return fmt.Errorf("fail")
	})
	if err == nil {
		t.Fatal("want the error")
	}
	if seq, _, _ := s.AuditHead(); seq != 0 {
		t.Fatalf("head after a rolled back transaction = %d", seq)
	}
	var seen []*storev1.AuditEntry
	s.OnAudit(func(es []*storev1.AuditEntry) { seen = append(seen, es...) })
	err = s.Update(t0, func(tx *Tx) error {
		if err := tx.PutSuspension(&storev1.Suspension{Kind: "partner", Name: "GBR", Reason: "incident", By: "officer/a"}); err != nil {
			return err
		}
		_, err := tx.DeleteSuspension("partner", "GBR", "officer/b")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 2 || seen[0].GetKind() != "suspended" || seen[0].GetParty() != "GBR" || seen[0].GetSubject() != "officer/a" ||
		seen[1].GetKind() != "reinstated" || seen[1].GetSubject() != "officer/b" {
		t.Fatalf("entries: %v", seen)
	}
}

// Opening a store written before the audit log (schema 1) works: the file
// is migrated, keeps its data, and its log starts with an entry saying so.
func TestAuditMigratesSchema1(t *testing.T) {
	path := filepath.Join(t.TempDir(), "node.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range allBuckets[:14] { // the buckets of schema 1
			if _, err := tx.CreateBucket(b); err != nil {
				return err
			}
		}
		if err := tx.Bucket(bucketReports).Put([]byte("old"), mustMarshal(t, stored("old", "GBR"))); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put([]byte("schema"), []byte("1"))
	})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	s, err := Open(path)
	if err != nil {
		t.Fatalf("Open of a schema 1 file: %v", err)
	}
	defer s.Close()
	if _, err := s.Report("old"); err != nil {
		t.Fatalf("data lost in the migration: %v", err)
	}
	var first *storev1.AuditEntry
	s.AuditEntries(1, func(e *storev1.AuditEntry, _ []byte) error {
		if first == nil {
			first = e
		}
		return nil
	})
	if first.GetKind() != "audit-started" {
		t.Fatalf("first entry after migration: %v", first)
	}
	if err := s.AddEvent(t0, &storev1.Event{ReportId: "old", Kind: "delivered", Subject: "svc/x"}); err != nil {
		t.Fatal(err)
	}
	if res := verifyStore(t, s); !res.OK || res.Entries != 2 {
		t.Fatalf("migrated log: %+v", res)
	}
}

func mustMarshal(t *testing.T, m *storev1.StoredReport) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
