package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/tearline/tearline/internal/faultfs"
)

func TestClassify(t *testing.T) {
	other := errors.New("something else")
	cases := []struct {
		name string
		err  error
		want error
	}{
		{"nil", nil, nil},
		{"write ENOSPC", &fs.PathError{Op: "write", Path: "tearline.db", Err: syscall.ENOSPC}, ErrFull},
		{"quota", fmt.Errorf("commit: %w", &fs.PathError{Op: "write", Path: "x", Err: syscall.EDQUOT}), ErrFull},
		// bbolt formats errors of growing the file with %s, losing the errno.
		{"bbolt resize", fmt.Errorf("file resize error: %s", &fs.PathError{Op: "truncate", Path: "x", Err: syscall.ENOSPC}), ErrFull},
		{"bbolt sync", fmt.Errorf("file sync error: %s", syscall.EROFS), ErrReadOnly},
		{"EROFS", &fs.PathError{Op: "open", Path: "x", Err: syscall.EROFS}, ErrReadOnly},
		{"bbolt read-only", bolt.ErrDatabaseReadOnly, ErrReadOnly},
		{"already classified", fmt.Errorf("%w: x", ErrFull), ErrFull},
		{"other", other, other},
		// The errno's text alone, outside bbolt's two formats, is not enough.
		{"text only", errors.New("user says: no space left on device"), nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := classify(tc.err)
			switch {
			case tc.want == nil && tc.err == nil:
				if got != nil {
					t.Fatalf("classify(nil) = %v", got)
				}
			case tc.want == nil:
				if errors.Is(got, ErrFull) || errors.Is(got, ErrReadOnly) {
					t.Fatalf("classify(%v) = %v, want it unclassified", tc.err, got)
				}
			case !errors.Is(got, tc.want):
				t.Fatalf("classify(%v) = %v, want %v", tc.err, got, tc.want)
			case tc.err != nil && !errors.Is(got, tc.err):
				t.Fatalf("classify(%v) = %v lost the cause", tc.err, got)
			}
		})
	}
}

// A store on a small tmpfs, filled to the last byte: writes fail with
// ErrFull and commit nothing, everything committed before stays readable,
// the store opens again on the full disk (reads need no write), and writes
// succeed again once space returns. Needs root (skips otherwise).
func TestFullDisk(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "disk")
	var s *testStore
	faultfs.MountT(t, dir, 4<<20, func() {
		if s != nil && s.Store != nil {
			s.Store.Close()
			s.Store = nil
		}
	})
	path := filepath.Join(dir, "node.db")
	st, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	s = &testStore{Store: st, t: t, path: path}
	var held []string
	for i := range 20 {
		id := fmt.Sprintf("r%02d", i)
		s.put(id, stored(id, "GBR"))
		held = append(held, id)
	}
	if _, err := faultfs.Fill(dir); err != nil {
		t.Fatal(err)
	}
	// Write until the disk refuses: the freelist may serve a few commits.
	big := make([]byte, 64<<10)
	var werr error
	for i := 0; i < 200 && werr == nil; i++ {
		id := fmt.Sprintf("x%03d", i)
		r := stored(id, "GBR")
		r.Envelope.Portions[0].Body = big
		if werr = s.Update(t0, func(tx *Tx) error { return tx.PutReport(id, r) }); werr == nil {
			held = append(held, id)
		}
	}
	if !errors.Is(werr, ErrFull) || !errors.Is(werr, syscall.ENOSPC) {
		t.Fatalf("write on a full disk: %v, want ErrFull wrapping ENOSPC", werr)
	}
	if errors.Is(werr, ErrReadOnly) {
		t.Fatalf("a full disk is not read-only: %v", werr)
	}
	check := func(when string) {
		t.Helper()
		if got := s.feedIDs(0); len(got) != len(held) {
			t.Fatalf("%s: feed holds %d reports, want %d", when, len(got), len(held))
		}
		for _, id := range held {
			if _, err := s.Report(id); err != nil {
				t.Fatalf("%s: report %s: %v", when, id, err)
			}
		}
	}
	check("full")
	// Reopening on the full disk must not need a write.
	s.reopen()
	check("reopened full")
	if err := faultfs.Free(dir); err != nil {
		t.Fatal(err)
	}
	s.put("after", stored("after", "GBR"))
	held = append(held, "after")
	check("space returned")
	s.Store.Close()
	s.Store = nil
	checkFile(t, path)
}

// A store whose file system is read-only opens read-only: reads work and
// every write fails with ErrReadOnly; made writable again, it takes writes.
// Needs root (skips otherwise).
func TestReadOnlyFileSystem(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "disk")
	var st *Store
	faultfs.MountT(t, dir, 4<<20, func() {
		if st != nil {
			st.Close()
		}
	})
	path := filepath.Join(dir, "node.db")
	s0, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s0.Update(t0, func(tx *Tx) error { return tx.PutReport("r1", stored("r1", "GBR")) }); err != nil {
		t.Fatal(err)
	}
	s0.Close()
	// Written by an earlier schema (no deliveries bucket), which this
	// build reads as it is.
	makeOlder(t, path, "3")
	if err := faultfs.SetReadOnly(dir, true); err != nil {
		t.Fatal(err)
	}
	if st, err = Open(path); err != nil {
		t.Fatalf("open on a read-only file system: %v", err)
	}
	if !st.ReadOnly() {
		t.Fatal("ReadOnly() = false on a read-only file system")
	}
	if _, err := st.Report("r1"); err != nil {
		t.Fatalf("read: %v", err)
	}
	for name, err := range map[string]error{
		"Update":     st.Update(t0, func(tx *Tx) error { return tx.PutReport("r2", stored("r2", "GBR")) }),
		"Batch":      st.Batch(t0, func(tx *Tx) error { return tx.MarkReceipt("r2", []byte("hop")) }),
		"SaveCursor": st.SaveCursor(t0, "svc", 1),
	} {
		if !errors.Is(err, ErrReadOnly) {
			t.Errorf("%s on a read-only store: %v, want ErrReadOnly", name, err)
		}
	}
	// A new store cannot be created there: the error says why.
	if _, err := Open(filepath.Join(dir, "new.db")); !errors.Is(err, ErrReadOnly) {
		t.Errorf("creating a store on a read-only file system: %v, want ErrReadOnly", err)
	}
	st.Close()
	st = nil
	if err := faultfs.SetReadOnly(dir, false); err != nil {
		t.Fatal(err)
	}
	if st, err = Open(path); err != nil || st.ReadOnly() {
		t.Fatalf("reopen writable: %v (read-only %v)", err, st != nil && st.ReadOnly())
	}
	if err := st.Update(t0, func(tx *Tx) error { return tx.PutReport("r2", stored("r2", "GBR")) }); err != nil {
		t.Fatalf("write after the file system is writable again: %v", err)
	}
	if v := schemaOf(t, st); v != schemaVersion {
		t.Errorf("schema 2 file opened writable is marked %q, want %q", v, schemaVersion)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
}
