package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	reportv1 "github.com/tearline/tearline/proto/tearline/report/v1"
	storev1 "github.com/tearline/tearline/proto/tearline/store/v1"
)

// quietCheckpoints stops the checkpoints that time and size start, for
// a test that takes its own: a crash image must be of a known checkpoint.
func quietCheckpoints(t *testing.T) {
	every, size := checkpointEvery, checkpointBytes
	checkpointEvery, checkpointBytes = time.Hour, 1<<40
	t.Cleanup(func() { checkpointEvery, checkpointBytes = every, size })
}

// storeFiles are the files of the store at path.
func storeFiles(path string) []string {
	return []string{path, path + checkpointSuffix, path + logSuffix + "0", path + logSuffix + "1"}
}

// crashImage copies the files of the open store at path into a new
// folder, as a killed process leaves them (everything written is in the
// kernel's cache), and returns the copy's path. The store must be idle.
func crashImage(t *testing.T, path string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), filepath.Base(path))
	for i, src := range storeFiles(path) {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(storeFiles(dst)[i], b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// dump is everything a store holds: every key and value of every bucket,
// nested ones included, and each bucket's sequence.
func dump(t *testing.T, s *Store) string {
	t.Helper()
	var b strings.Builder
	var walk func(prefix string, bk *bolt.Bucket) error
	walk = func(prefix string, bk *bolt.Bucket) error {
		fmt.Fprintf(&b, "%s seq=%d\n", prefix, bk.Sequence())
		return bk.ForEach(func(k, v []byte) error {
			if v == nil {
				return walk(prefix+"/"+string(k), bk.Bucket(k))
			}
			fmt.Fprintf(&b, "%s %x=%x\n", prefix, k, v)
			return nil
		})
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, bk *bolt.Bucket) error { return walk(string(name), bk) })
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// everyWrite makes each kind of change the store logs, with tag in its
// keys: reports new and rewritten, feed entries, receipts, provenance
// events (and shared deliveries), outbox items enqueued and acknowledged
// (a nested bucket created, keys deleted), quarantine, cursors, consent,
// crisis, security events, suspensions added and lifted, withdrawals,
// audit checkpoints and the audit log itself.
func everyWrite(t *testing.T, s *Store, tag string) {
	t.Helper()
	id := func(n int) string { return fmt.Sprintf("%s-r%d", tag, n) }
	for n := range 3 {
		if err := s.Update(t0, func(tx *Tx) error {
			if err := tx.PutReport(id(n), stored(id(n), "GBR")); err != nil {
				return err
			}
			if err := tx.MarkReceipt(id(n), []byte("hop-"+tag)); err != nil {
				return err
			}
			if err := tx.AddEvent(&storev1.Event{ReportId: id(n), Kind: "received", Subject: "GBR"}); err != nil {
				return err
			}
			return tx.Enqueue("party-"+tag, &storev1.OutboxItem{ReportId: id(n), Envelope: &reportv1.Envelope{}})
		}); err != nil {
			t.Fatal(err)
		}
	}
	group := []*groupCall{deliveryCall(t0, tag+"/a", []string{id(0), id(1)}, []uint32{1}), deliveryCall(t0, tag+"/b", []string{id(0), id(1)}, []uint32{1})}
	commitAll(t, s, group)
	if err := s.Ack(t0, "party-"+tag, Acked{Seq: 1, Event: &storev1.Event{ReportId: id(0), Kind: "acknowledged", Subject: "party-" + tag}}); err != nil {
		t.Fatal(err)
	}
	err := s.Update(t0, func(tx *Tx) error {
		r := stored(id(1), "GBR")
		r.Envelope.Portions[0].Body = []byte("rewritten " + tag)
		steps := []func() error{
			func() error { return tx.PutReport(id(1), r) },
			func() error { return tx.AppendFeed(id(1)) },
			func() error { _, err := tx.DropQueuedEnvelopes(id(2)); return err },
			func() error { return tx.Quarantine(&storev1.QuarantineItem{Message: "bad " + tag}) },
			func() error { return tx.PutCursor("sub-"+tag, 2) },
			func() error { return tx.PutConsent(&storev1.ConsentRecord{Id: "consent-" + tag}) },
			func() error { return tx.PutCrisis("crisis-"+tag, &storev1.CrisisRecord{}) },
			func() error { return tx.AddSecurityEvent(&storev1.SecurityEvent{Kind: "test", Message: tag}) },
			func() error { return tx.AddCrisisRelease(&storev1.CrisisRelease{CrisisId: "crisis-" + tag}) },
			func() error { return tx.PutSuspension(&storev1.Suspension{Kind: "partner", Name: "A" + tag}) },
			func() error { return tx.PutSuspension(&storev1.Suspension{Kind: "partner", Name: "B" + tag}) },
			func() error { _, err := tx.DeleteSuspension("partner", "A"+tag, "test"); return err },
			func() error { return tx.PutWithdrawal(&storev1.WithdrawalRecord{ReportId: id(2)}) },
			func() error { return tx.PutAuditCheckpoint(1, &reportv1.Signed{Payload: []byte(tag)}) },
			func() error {
				_, err := tx.PutPartnerCheckpoint("GBR", 1, &reportv1.Signed{Payload: []byte(tag)})
				return err
			},
		}
		for _, step := range steps {
			if err := step(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// loggedPastCheckpoint is a new store, with checkpoints only when a test
// takes one, holding every kind of write tagged before, a checkpoint,
// then every kind tagged after: those are only in the log and bbolt's
// unsynced pages.
func loggedPastCheckpoint(t *testing.T, before, after string) *testStore {
	t.Helper()
	quietCheckpoints(t)
	s := openTestStore(t)
	everyWrite(t, s.Store, before)
	if err := s.checkpoint(); err != nil {
		t.Fatal(err)
	}
	everyWrite(t, s.Store, after)
	return s
}

// A store killed after its writes, with a checkpoint between them, opens
// holding exactly what it held: the log's records after the checkpoint
// are replayed, every kind of change included.
func TestLogRecoversAfterCrash(t *testing.T) {
	s := loggedPastCheckpoint(t, "before", "after")
	if s.log.off == 0 {
		t.Fatal("nothing was logged after the checkpoint: the test tests nothing")
	}
	want := dump(t, s.Store)
	img := crashImage(t, s.path)

	got, err := Open(img)
	if err != nil {
		t.Fatalf("Open after a crash: %v", err)
	}
	if d := dump(t, got); d != want {
		t.Errorf("after the crash the store holds\n%s\nwant\n%s", d, want)
	}
	// Its checkpoint holds what was replayed, and the log files hold no
	// record: none of the run before can chain with this run's.
	for _, f := range got.log.files {
		if _, recs, err := readRecords(f); err != nil || len(recs) != 0 {
			t.Errorf("%s after recovery: %d records (%v), want none", f.Name(), len(recs), err)
		}
	}
	// It takes writes, and they survive another crash.
	everyWrite(t, got, "later")
	want = dump(t, got)
	img2 := crashImage(t, img)
	if err := got.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := Open(img2)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if d := dump(t, again); d != want {
		t.Errorf("after a second crash the store holds\n%s\nwant\n%s", d, want)
	}
}

// A machine that loses power may lose any of the page writes bbolt made
// after the last checkpoint (they were never synced), and its meta pages
// may be torn. The checkpoint's tree is intact (the guard kept bbolt from
// reusing its pages), so the store opens holding everything the log holds.
func TestLogRecoversLostPageWrites(t *testing.T) {
	for trial := range 4 {
		t.Run(fmt.Sprint(trial), func(t *testing.T) {
			quietCheckpoints(t)
			s := openTestStore(t)
			everyWrite(t, s.Store, "base")
			if err := s.checkpoint(); err != nil {
				t.Fatal(err)
			}
			atCheckpoint, err := os.ReadFile(s.path)
			if err != nil {
				t.Fatal(err)
			}
			// Many commits after it, rewriting and deleting, so that bbolt
			// frees and reuses pages.
			for i := range 30 {
				everyWrite(t, s.Store, fmt.Sprintf("t%d", i))
			}
			want := dump(t, s.Store)
			img := crashImage(t, s.path)
			now, err := os.ReadFile(img)
			if err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(uint64(trial), 7))
			ps := s.pageSize
			lost := 0
			for off := 0; off < len(now); off += ps {
				switch {
				case off < 2*ps: // the meta pages: torn
					for i := range 64 {
						now[off+16+i] = byte(rng.Uint32())
					}
				case trial == 0:
					// every write after the checkpoint kept
				case off+ps <= len(atCheckpoint) && rng.IntN(2) == 0:
					copy(now[off:off+ps], atCheckpoint[off:off+ps]) // this write lost
					lost++
				case off+ps > len(atCheckpoint) && rng.IntN(2) == 0:
					clear(now[off : off+ps]) // a page the file grew by, never written
					lost++
				}
			}
			if trial > 0 && lost == 0 {
				t.Fatal("no page write was lost: the test tests nothing")
			}
			if err := os.WriteFile(img, now, 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := Open(img)
			if err != nil {
				t.Fatalf("Open after a power loss: %v", err)
			}
			defer got.Close()
			if d := dump(t, got); d != want {
				t.Errorf("after the power loss the store holds\n%s\nwant\n%s", d, want)
			}
		})
	}
}

// The log's tail may be torn (a record being written when the machine
// stopped): replay stops before it, and the store opens with every record
// before it. Records of the other file's previous round are stale and not
// replayed.
func TestLogTornTail(t *testing.T) {
	s := loggedPastCheckpoint(t, "a", "b")
	want := dump(t, s.Store)
	cur, off := s.log.cur, s.log.off
	s.put("torn", stored("torn", "GBR"))
	img := crashImage(t, s.path)
	// Tear the last record: keep its first half.
	logPath := fmt.Sprint(img, logSuffix, cur)
	f, err := os.OpenFile(logPath, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	hdr := make([]byte, recordHeader)
	if _, err := f.ReadAt(hdr, off); err != nil {
		t.Fatal(err)
	}
	n := int64(binary.LittleEndian.Uint32(hdr))
	if _, err := f.WriteAt(make([]byte, n/2), off+recordHeader+n/2); err != nil {
		t.Fatal(err)
	}
	f.Close()
	// The bbolt file as it was before the torn commit: that commit's
	// pages were not synced either.
	got, err := Open(img)
	if err != nil {
		t.Fatalf("Open with a torn log tail: %v", err)
	}
	defer got.Close()
	d := dump(t, got)
	if strings.Contains(d, fmt.Sprintf("%x", "torn")) {
		t.Error("the torn record's report is held")
	}
	if d != want {
		t.Errorf("with a torn tail the store holds\n%s\nwant\n%s", d, want)
	}
}

// A store closed cleanly needs no replay, and opens as its file is, even
// if a tool wrote the file after (as makeOlder does).
func TestCleanCloseOpensTheFileAsItIs(t *testing.T) {
	s := openTestStore(t)
	everyWrite(t, s.Store, "a")
	s.Store.Close()
	c := readCheckpointOf(t, s.path)
	if !c.clean {
		t.Fatal("Close wrote no clean checkpoint")
	}
	db, err := bolt.Open(s.path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketCursors).Put([]byte("tool"), u64(9)) }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	var err2 error
	if s.Store, err2 = Open(s.path); err2 != nil {
		t.Fatal(err2)
	}
	if n, err := s.Cursor("tool"); err != nil || n != 9 {
		t.Errorf("the tool's write: cursor %d (%v), want 9", n, err)
	}
	if c := readCheckpointOf(t, s.path); c.clean {
		t.Error("an open store's checkpoint says clean")
	}
}

func readCheckpointOf(t *testing.T, path string) checkpoint {
	t.Helper()
	f, err := os.Open(path + checkpointSuffix)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, ok, err := readCheckpoint(f)
	if err != nil || !ok {
		t.Fatalf("no checkpoint in %s (%v)", path+checkpointSuffix, err)
	}
	return c
}

// A crashed store whose log file is gone is refused with what to do, not
// opened without the writes the log held.
func TestMissingLogRefused(t *testing.T) {
	s := openTestStore(t)
	everyWrite(t, s.Store, "a")
	img := crashImage(t, s.path)
	for i := range 2 {
		if err := os.Remove(fmt.Sprint(img, logSuffix, i)); err != nil {
			t.Fatal(err)
		}
	}
	for try := range 2 { // refused again: the first refusal made nothing
		_, err := Open(img)
		if err == nil || !strings.Contains(err.Error(), "is missing") || !strings.Contains(err.Error(), "restore the store's folder whole") {
			t.Fatalf("Open %d without its log: %v, want a refusal saying the log is missing", try+1, err)
		}
	}
}

// A crashed store whose checkpoint file is gone is refused, and its log
// is kept: with the checkpoint put back, it opens holding everything.
func TestMissingCheckpointRefused(t *testing.T) {
	s := openTestStore(t)
	everyWrite(t, s.Store, "a")
	want := dump(t, s.Store)
	img := crashImage(t, s.path)
	ckpt, err := os.ReadFile(img + checkpointSuffix)
	if err != nil {
		t.Fatal(err)
	}
	for _, damaged := range [][]byte{nil, make([]byte, 2*checkpointSlot)} {
		if damaged == nil {
			err = os.Remove(img + checkpointSuffix)
		} else {
			err = os.WriteFile(img+checkpointSuffix, damaged, 0o600)
		}
		if err != nil {
			t.Fatal(err)
		}
		for try := range 2 {
			if _, err := Open(img); err == nil || !strings.Contains(err.Error(), "restore the store's folder whole") {
				t.Fatalf("Open %d with the checkpoint file %s: %v, want a refusal", try+1, map[bool]string{true: "gone", false: "zeroed"}[damaged == nil], err)
			}
		}
	}
	if err := os.WriteFile(img+checkpointSuffix, ckpt, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	if d := dump(t, got); d != want {
		t.Error("with its checkpoint back the store does not hold what it held")
	}
}

// A record missing in the middle of the log with records after it (a
// checkpoint's switch to the other file, the first file's last record
// lost) is refused, not replayed up to the gap in silence.
func TestLogGapRefused(t *testing.T) {
	quietCheckpoints(t)
	s := openTestStore(t)
	s.put("base", stored("base", "GBR"))
	if err := s.checkpoint(); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(s.path + checkpointSuffix)
	if err != nil {
		t.Fatal(err)
	}
	cur, off := s.log.cur, s.log.off
	s.put("lost", stored("lost", "GBR"))
	if err := s.checkpoint(); err != nil {
		t.Fatal(err)
	}
	s.put("after", stored("after", "GBR"))
	img := crashImage(t, s.path)
	// The second checkpoint was not durable, nor the record before it.
	if err := os.WriteFile(img+checkpointSuffix, before, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(fmt.Sprint(img, logSuffix, cur), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(make([]byte, recordHeader+8), off); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := Open(img); err == nil || !strings.Contains(err.Error(), "cannot be replayed in order") {
		t.Fatalf("Open with a gap in the log: %v, want a refusal", err)
	}
}

// A store on a read-only file system opens only if it needs no recovery:
// closed cleanly, yes; killed after writes, no, with why.
func TestReadOnlyNeedsNoRecovery(t *testing.T) {
	quietCheckpoints(t)
	s := openTestStore(t)
	everyWrite(t, s.Store, "a")
	img := crashImage(t, s.path)
	if err := readOnlyRecovered(img); !errors.Is(err, ErrReadOnly) || !strings.Contains(err.Error(), "did not stop cleanly") {
		t.Errorf("a killed store: %v, want ErrReadOnly saying it did not stop cleanly", err)
	}
	s.Store.Close()
	if err := readOnlyRecovered(s.path); err != nil {
		t.Errorf("a store closed cleanly: %v", err)
	}
	var err error
	if s.Store, err = Open(s.path); err != nil {
		t.Fatal(err)
	}
}

// A checkpoint of a larger file than the one beside it (the file was
// replaced, or cut) is refused.
func TestForeignCheckpointRefused(t *testing.T) {
	s := openTestStore(t)
	for i := range 10 {
		everyWrite(t, s.Store, fmt.Sprint(i))
	}
	img := crashImage(t, s.path)
	if err := os.Truncate(img, int64(4*s.pageSize)); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(img); err == nil || !strings.Contains(err.Error(), "not of the same store") {
		t.Fatalf("Open of a cut file: %v, want a refusal", err)
	}
}

// A store whose file passes half its map leaves the log for bbolt's own
// syncs: its checkpoint and log files go, and what it holds survives.
func TestDirectModePastHalfTheMap(t *testing.T) {
	old := mapSize
	mapSize = 4 << 20
	t.Cleanup(func() { mapSize = old })
	s := openTestStore(t)
	big := bytes.Repeat([]byte("x"), 64<<10)
	for i := 0; s.log != nil; i++ {
		if i > 64 {
			t.Fatal("the store stayed logged past its map's half")
		}
		id := fmt.Sprint("big", i)
		r := stored(id, "GBR")
		r.Envelope.Portions[0].Body = big
		s.put(id, r)
		if err := s.checkpoint(); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range storeFiles(s.path)[1:] {
		if _, err := os.Stat(f); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s is still there in direct mode (%v)", f, err)
		}
	}
	s.put("direct", stored("direct", "GBR"))
	want := dump(t, s.Store)
	s.reopen()
	if d := dump(t, s.Store); d != want {
		t.Error("the store reopened in direct mode does not hold what it held")
	}
	if s.log != nil {
		t.Error("a store past half its map opened with a log")
	}
}

// A checkpoint extends bbolt's file ahead of its pages, so that a commit
// that needs more room finds it instead of growing the file itself with an
// fsync of everything (extendAhead); past that room, bbolt grows it.
func TestCheckpointExtendsTheFile(t *testing.T) {
	quietCheckpoints(t)
	ahead, at := growAhead, growAt
	growAhead, growAt = 4<<20, 2<<20
	t.Cleanup(func() { growAhead, growAt = ahead, at })
	s := openTestStore(t)
	fileSize := func() int64 {
		t.Helper()
		st, err := os.Stat(s.path)
		if err != nil {
			t.Fatal(err)
		}
		return st.Size()
	}
	dataSize := func() (n int64) {
		t.Helper()
		if err := s.db.View(func(tx *bolt.Tx) error { n = tx.Size(); return nil }); err != nil {
			t.Fatal(err)
		}
		return n
	}
	big := bytes.Repeat([]byte("x"), 32<<10)
	n := 0
	putUntil := func(stop func() bool) {
		t.Helper()
		for ; !stop(); n++ {
			if n > 5000 {
				t.Fatal("the store's data did not grow")
			}
			r := stored(fmt.Sprint("r", n), "GBR")
			r.Envelope.Portions[0].Body = big
			s.put(fmt.Sprint("r", n), r)
		}
	}

	// A new file is as bbolt grew it at Open (16 MiB past its first
	// pages). Filled to within growAt of its end, with no checkpoint, it
	// keeps its size.
	before := fileSize()
	putUntil(func() bool { return dataSize() > before-growAt })
	if got := fileSize(); got != before {
		t.Fatalf("the file went from %d to %d bytes with its pages at %d", before, got, dataSize())
	}
	// A checkpoint then extends it.
	if err := s.checkpoint(); err != nil {
		t.Fatal(err)
	}
	extended := fileSize()
	if want := dataSize() + growAhead; extended != want {
		t.Fatalf("after a checkpoint the file is %d bytes, want %d (its pages and growAhead)", extended, want)
	}
	// Commits that need pages past the file's old end find them in the
	// extension: the file keeps its size, where bbolt would have grown
	// it to 16 MiB past its last page.
	putUntil(func() bool { return dataSize() > before })
	if got := fileSize(); got != extended {
		t.Fatalf("the file went from %d to %d bytes with its pages at %d: bbolt grew it", extended, got, dataSize())
	}
	// Past the extension, with no checkpoint, bbolt grows the file itself.
	putUntil(func() bool { return dataSize() > extended })
	if got := fileSize(); got <= dataSize() {
		t.Fatalf("the file is %d bytes with its pages at %d", got, dataSize())
	}
	want := dump(t, s.Store)
	s.reopen()
	if dump(t, s.Store) != want {
		t.Error("the store reopened does not hold what it held")
	}
}

// A store that is open is refused to a second Open, after bbolt's
// timeout, before any of its files is read or written (lockFile): Open
// may otherwise restore a checkpoint's meta page under the running
// store.
func TestOpenRefusesAStoreInUse(t *testing.T) {
	// No checkpoint of the running store may change its files meanwhile.
	quietCheckpoints(t)
	s := openTestStore(t)
	s.put("a", stored("a", "GBR"))
	files := func() (out []string) {
		for _, f := range storeFiles(s.path) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, string(b))
		}
		return out
	}
	before := files()
	if other, err := Open(s.path); !errors.Is(err, bolterrors.ErrTimeout) {
		if err == nil {
			other.Close()
		}
		t.Fatalf("a second Open of a store in use: %v, want bbolt's ErrTimeout", err)
	}
	if !slices.Equal(files(), before) {
		t.Error("the refused Open changed the store's files")
	}
	s.put("b", stored("b", "GBR"))
	if got := s.feedIDs(0); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("after the refused Open the store holds %v, want [a b]", got)
	}
}

// readRecords stops at zeros, a bad CRC or a gap in the LSNs.
func TestReadRecordsStops(t *testing.T) {
	rec := func(lsn uint64, body string) []byte {
		b := binary.LittleEndian.AppendUint64(nil, lsn)
		b = append(b, body...)
		h := binary.LittleEndian.AppendUint32(nil, uint32(len(b)))
		h = binary.LittleEndian.AppendUint32(h, crc32.Checksum(b, crcTable))
		return append(h, b...)
	}
	bad := rec(3, "c")
	bad[len(bad)-1] ^= 1
	for name, tc := range map[string]struct {
		data []byte
		want int
	}{
		"zeros":   {append(append(rec(1, "a"), rec(2, "b")...), make([]byte, 64)...), 2},
		"bad crc": {append(append(rec(1, "a"), bad...), rec(4, "d")...), 1},
		"gap":     {append(append(rec(1, "a"), rec(3, "c")...), rec(4, "d")...), 1},
		"stale":   {append(append(rec(7, "a"), rec(8, "b")...), rec(2, "old")...), 2},
	} {
		t.Run(name, func(t *testing.T) {
			f, err := os.CreateTemp(t.TempDir(), "log")
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.Write(tc.data); err != nil {
				t.Fatal(err)
			}
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				t.Fatal(err)
			}
			_, recs, err := readRecords(f)
			if err != nil || len(recs) != tc.want {
				t.Errorf("readRecords = %d records (%v), want %d", len(recs), err, tc.want)
			}
		})
	}
}
