// Package store keeps a node's state in one bbolt file: reports, the feed
// that subscribers read, provenance events, the durable outbox per partner,
// subscriber cursors, quarantined evidence and the audit log (DESIGN §5).
// Beside it are the store's log and checkpoint files (wal.go), which make
// the commits durable.
//
// The audit log (node/audit) is written here, in the same transaction as
// what it records: every provenance event, security event, suspension,
// reinstatement and crisis record appends its entry as it is written, so
// nothing is recorded without being audited.
//
// Every write is a bbolt transaction that is on disk when the call returns
// (its record in the log is: wal.go), so a caller may acknowledge after
// it. Batch groups concurrent writers into one commit (group commit): a
// writer that finds the store idle
// commits at once; writers that arrive during a commit share the next one.
// BatchLater is for writes that nobody waits on to answer a peer (records
// of what was already sent or acknowledged): it starts no commit of its
// own but joins the next one, or commits after laterDelay if none comes,
// so that such records cost no fdatasync of their own under load.
// Values are copied out of transactions before they end (protobuf decoding
// copies).
package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tearline/tearline/internal/lru"
	"github.com/tearline/tearline/node/audit"
	storev1 "github.com/tearline/tearline/proto/tearline/store/v1"
)

// Errors.
var (
	ErrNotFound = errors.New("store: not found")
	ErrCorrupt  = errors.New("store: corrupt value")
	ErrSchema   = errors.New("store: unknown schema version")
	ErrClosed   = errors.New("store: closed")
	// ErrFull: a write failed because the disk that holds the store has no
	// space left (ENOSPC, or EDQUOT past a quota). Nothing of the write was
	// committed; what was committed before is intact, and writes succeed
	// again once space returns.
	ErrFull = errors.New("store: no space left on the disk")
	// ErrReadOnly: a write failed because the store's file system is
	// read-only (EROFS), or the store was opened read-only because it was.
	ErrReadOnly = errors.New("store: read-only")
)

// maxGroup bounds how many writers share one commit.
const maxGroup = 512

// pageSize is the page size of a newly created file.
const pageSize = 16 << 10

// Store is a node's bbolt file.
type Store struct {
	db       *bolt.DB
	readOnly bool

	mu     sync.Mutex
	notify chan struct{} // closed and replaced when the feed grows

	onAudit func([]*storev1.AuditEntry) // set once, before use
	noAudit atomic.Bool                 // benchmarks only (DisableAuditForBenchmark)

	// decoded holds reports as Feed decoded them, shared by every reader.
	decoded *reportCache

	// crises caches what Crises read (records.go), which every received
	// envelope and every publication asks for.
	crises crisisCache

	// The group commit (see batch). gmu guards the fields below it;
	// ended is signalled when a leader stops leading.
	gmu        sync.Mutex
	ended      sync.Cond
	closed     bool
	leading    bool         // a commit is running, or commitLoop has been handed the lead
	calls      []*groupCall // Batch writers waiting, in order
	later      []*groupCall // BatchLater writers waiting
	group      []*groupCall // the leader's group, reused from one commit to the next
	laterTimer *time.Timer  // commits the BatchLater writers after laterWait
	laterArmed bool
	laterWait  time.Duration // laterDelay; tests set it longer
	handed     chan struct{} // a leader hands the lead to commitLoop
	loopDone   chan struct{} // closed when commitLoop has ended

	commits    atomic.Uint64 // write transactions committed (see Stats)
	commitTime atomic.Int64  // their wall time, ns (see Stats)
	// commitsIn counts the commits by time, commitsIn[i] those within
	// CommitBounds[i] but not the bound before it (see Stats).
	commitsIn [len(CommitBounds)]atomic.Uint64

	stopUnmap chan struct{} // closed by Close
	unmapped  chan struct{} // closed when unmapLoop has ended

	// The log (wal.go). wmu orders the write transactions, their log
	// records and a checkpoint's start; the fields after it are guarded
	// by it, except those the checkpoints use (ckmu).
	dbFile   *os.File // bbolt's file, opened and locked by Open
	pageSize int
	wmu      sync.Mutex
	log      *wlog // nil: read-only, or direct mode (bbolt syncs each commit)
	redo     redo
	logFiles []*os.File     // the log's files, closed by Close (direct mode keeps them open)
	syncs    sync.WaitGroup // log fdatasyncs running outside wmu
	// logErr stops the writes: a commit is in bbolt but not in the log,
	// a checkpoint failed, or Close made its clean checkpoint (ErrClosed).
	logErr error

	ckmu      sync.Mutex
	ckptFile  *os.File
	ckpt      checkpoint // the last one on disk
	guard     *bolt.Tx   // a reader at ckpt.txid (see wal.go)
	ckptWake  chan struct{}
	ckptStop  chan struct{}
	ckptDone  chan struct{}
	ckptCount atomic.Uint64
	ckptTime  atomic.Int64 // ns

	logRecords, logBytes atomic.Uint64
	logTime              atomic.Int64 // ns

	// dur: which commits are durable, for the readers that hand out what
	// they read (durable.go).
	dur durability
}

// groupCall is one writer waiting for a group commit.
type groupCall struct {
	now     time.Time
	fn      func(*Tx) error
	done    chan error
	audited []*storev1.AuditEntry // set before done
}

// Open opens (creating if needed) the store at path, with its log and
// checkpoint files beside it (path-log.0, path-log.1, path-checkpoint),
// recovering what the log holds past the last checkpoint (see wal.go).
// When the file system that holds it is read-only, the store opens
// read-only (see ReadOnly): reads work, every write fails with ErrReadOnly.
func Open(path string) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("store: %w", classify(err))
	}
	opts := &bolt.Options{
		Timeout: 2 * time.Second,
		// The freelist is not written at each commit (bbolt rebuilds it
		// by scanning the file when it opens): in a file with many free
		// pages, writing it dominated every commit.
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
		// Map a large region from the start: a remap waits for every
		// reader, the checkpoint's guard among them (wal.go).
		InitialMmapSize: mapSize,
		// A new file gets 16 KiB pages (an existing one keeps its own):
		// each commit rewrites the pages it touched at scattered places
		// in the file, and on this kind of disk writing them back costs
		// per scattered write far more than per byte, so fewer, larger
		// pages cost less (BENCHMARKS.md, issue 7).
		PageSize: pageSize,
		// The log makes each commit durable (wal.go).
		NoSync: true,
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if errors.Is(err, syscall.EROFS) {
		if _, serr := os.Stat(path); errors.Is(serr, fs.ErrNotExist) {
			return nil, fmt.Errorf("store: open %s: %w", path, classify(err))
		}
		return openReadOnly(path, opts)
	}
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, classify(err))
	}
	s, err := openLogged(path, f, opts)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, classify(err))
	}
	return s, nil
}

// openLogged opens the store whose bbolt file is f, recovering from its
// checkpoint and log, and makes a checkpoint of what it opened.
func openLogged(path string, f *os.File, opts *bolt.Options) (s *Store, err error) {
	if err := lockFile(f, opts.Timeout); err != nil {
		return nil, err
	}
	var files []*os.File
	defer func() {
		if err != nil {
			for _, c := range files {
				c.Close()
			}
		}
	}()
	openAux := func(name string) (*os.File, error) {
		a, err := os.OpenFile(path+name, os.O_RDWR|os.O_CREATE, 0o600)
		if err == nil {
			files = append(files, a)
		}
		return a, err
	}
	ckptFile, err := openAux(checkpointSuffix)
	if err != nil {
		return nil, err
	}
	ckptInfo, err := ckptFile.Stat()
	if err != nil {
		return nil, err
	}
	ckpt, have, err := readCheckpoint(ckptFile)
	if err != nil {
		return nil, err
	}
	if !have && ckptInfo.Size() > 0 {
		return nil, restoreWhole(path, fmt.Sprintf("the checkpoint file %s holds no valid checkpoint, so the store cannot tell where to recover from", path+checkpointSuffix))
	}
	// The log files are made before the first checkpoint is written, so a
	// crashed store without them lost them: refuse before making new ones.
	log := &wlog{}
	for i := range log.files {
		name := fmt.Sprint(path, logSuffix, i)
		if _, err := os.Stat(name); errors.Is(err, fs.ErrNotExist) && have && !ckpt.clean {
			return nil, restoreWhole(path, fmt.Sprintf("the log file %s is missing, so what was written after the last checkpoint cannot be recovered", name))
		}
	}
	for i := range log.files {
		if log.files[i], err = openAux(fmt.Sprint(logSuffix, i)); err != nil {
			return nil, err
		}
		st, err := log.files[i].Stat()
		if err != nil {
			return nil, err
		}
		log.filled[i] = st.Size()
	}
	if err := syncDir(path); err != nil {
		return nil, err
	}
	var pending [][]byte
	if have && !ckpt.clean {
		st, err := f.Stat()
		if err != nil {
			return nil, err
		}
		if pages, psize := binary.LittleEndian.Uint64(ckpt.meta[boltMetaPgidAt:]), binary.LittleEndian.Uint32(ckpt.meta[boltMetaPageSzAt:]); st.Size() < int64(pages)*int64(psize) {
			return nil, fmt.Errorf("%s is %d bytes, and its checkpoint (%s) is of a file of at least %d: they are not of the same store", path, st.Size(), path+checkpointSuffix, int64(pages)*int64(psize))
		}
		if pending, err = logAfter(log.files, ckpt.lsn); err != nil {
			return nil, err
		}
		// Back to the checkpoint's tree, whatever was written after it.
		if err := restoreMeta(f, ckpt); err != nil {
			return nil, fmt.Errorf("restoring the checkpoint's meta page: %w", err)
		}
	}
	if !have {
		// Without a checkpoint the bbolt file is the whole store (a new
		// one, one from a build before the log, or one that left the log
		// for direct mode), and its log files are empty or missing: a log
		// with records in it lost its checkpoint.
		for i, lf := range log.files {
			_, recs, err := readRecords(lf)
			if err != nil {
				return nil, err
			}
			if len(recs) > 0 {
				return nil, restoreWhole(path, fmt.Sprintf("the checkpoint file %s is missing, but the log file %s holds records", path+checkpointSuffix, lf.Name()))
			}
			log.filled[i] = 0
		}
	}
	log.lsn = ckpt.lsn
	// Until Open's own checkpoint, bbolt syncs its commits (the replay,
	// a migration) itself, and a reader holds the tree it opened at, so
	// that a crash before that checkpoint finds the last one intact.
	o := *opts
	o.OpenFile = func(string, int, fs.FileMode) (*os.File, error) { return f, nil }
	o.NoSync = false
	db, err := bolt.Open(path, 0o600, &o)
	if err != nil {
		return nil, err
	}
	guard, err := db.Begin(false)
	if err != nil {
		db.Close()
		return nil, err
	}
	s = &Store{db: db, dbFile: f, pageSize: db.Info().PageSize, notify: make(chan struct{}), laterWait: laterDelay, decoded: newReportCache(), handed: make(chan struct{}, 1), loopDone: make(chan struct{}), ckptFile: ckptFile, ckpt: ckpt, guard: guard}
	s.ended.L = &s.gmu
	opened := s // the named result is nil once an error is returned
	defer func() {
		if err != nil {
			if opened.guard != nil {
				_ = opened.guard.Rollback()
			}
			db.Close()
		}
	}()
	if len(pending) > 0 {
		err := db.Update(func(tx *bolt.Tx) error {
			for i, rec := range pending {
				if err := apply(tx, rec); err != nil {
					return fmt.Errorf("log record %d: %w", ckpt.lsn+uint64(i)+1, err)
				}
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("replaying the log: %w", err)
		}
		log.lsn += uint64(len(pending))
	}
	if err := s.initSchema(); err != nil {
		return nil, fmt.Errorf("init: %w", err)
	}
	// What was opened, replayed and migrated becomes the checkpoint;
	// both log files are then zeroed, so that no record of this run's
	// predecessors (beyond a damaged one, say) can chain with this run's.
	// Zeroed, not truncated: their space stays theirs, so a node restarted
	// on a full disk neither frees space it will need again nor finds it.
	s.log = log
	s.logFiles = log.files[:]
	if err := s.checkpoint(); err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	if s.log != nil {
		for i, lf := range log.files {
			if err := zeroFill(lf, 0, log.filled[i]); err != nil {
				return nil, err
			}
		}
		db.NoSync = true
	}
	s.start()
	return s, nil
}

// restoreWhole is the refusal of a store whose files do not go together.
func restoreWhole(path, why string) error {
	return fmt.Errorf("%s: restore the store's folder whole (%s and the files beside it)", why, filepath.Base(path))
}

// logAfter returns the log records after lsn, in order, from the two log
// files: those that follow each other from lsn+1.
func logAfter(files [2]*os.File, lsn uint64) ([][]byte, error) {
	byLSN := map[uint64][]byte{}
	for _, f := range files {
		first, recs, err := readRecords(f)
		if err != nil {
			return nil, err
		}
		for i, r := range recs {
			if n := first + uint64(i); n > lsn {
				byLSN[n] = r
			}
		}
	}
	var out [][]byte
	n := lsn + 1
	for ; byLSN[n] != nil; n++ {
		out = append(out, byLSN[n])
	}
	for m := range byLSN {
		if m > n {
			return nil, fmt.Errorf("log record %d is missing or damaged, and record %d after it is held: the log cannot be replayed in order", n, m)
		}
	}
	return out, nil
}

// openReadOnly opens a store on a read-only file system. It has no log to
// write and cannot replay one: a store left with log records past its
// checkpoint (a node that did not stop cleanly) is refused.
func openReadOnly(path string, opts *bolt.Options) (*Store, error) {
	if err := readOnlyRecovered(path); err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	ro := *opts
	ro.ReadOnly, ro.NoSync = true, false
	db, err := bolt.Open(path, 0o600, &ro)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, classify(err))
	}
	s := &Store{db: db, readOnly: true, notify: make(chan struct{}), laterWait: laterDelay, decoded: newReportCache(), handed: make(chan struct{}, 1), loopDone: make(chan struct{})}
	s.ended.L = &s.gmu
	if err := s.initSchema(); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: init %s: %w", path, err)
	}
	s.start()
	return s, nil
}

// readOnlyRecovered checks that a store to be opened read-only needs no
// recovery: it stopped cleanly, or nothing was written after its last
// checkpoint (the file's newest transaction is the checkpoint's, and no
// log record follows it).
func readOnlyRecovered(path string) error {
	f, err := os.Open(path + checkpointSuffix)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	ckpt, have, err := readCheckpoint(f)
	f.Close()
	if err != nil || !have || ckpt.clean {
		return err
	}
	var files [2]*os.File
	for i := range files {
		if files[i], err = os.Open(fmt.Sprint(path, logSuffix, i)); err != nil {
			return err
		}
		defer files[i].Close()
	}
	pending, err := logAfter(files, ckpt.lsn)
	if err != nil {
		return err
	}
	db, err := os.Open(path)
	if err != nil {
		return err
	}
	defer db.Close()
	newest, err := newestMeta(db, int64(binary.LittleEndian.Uint32(ckpt.meta[boltMetaPageSzAt:])))
	if err != nil {
		return err
	}
	if len(pending) > 0 || newest != ckpt.txid {
		return fmt.Errorf("%w: the node did not stop cleanly (its last checkpoint is of transaction %d, the file's newest of %d, and the log holds %d commits past the checkpoint), and a read-only store cannot recover: open it once on a writable file system", ErrReadOnly, ckpt.txid, newest, len(pending))
	}
	return nil
}

// start starts the store's goroutines.
func (s *Store) start() {
	s.dur.init(s.lastTxID())
	go s.commitLoop()
	s.unmap() // opening read the whole file (the freelist's rebuild)
	s.stopUnmap, s.unmapped = make(chan struct{}), make(chan struct{})
	go s.unmapLoop(s.stopUnmap, s.unmapped)
	s.ckptWake, s.ckptStop, s.ckptDone = make(chan struct{}, 1), make(chan struct{}), make(chan struct{})
	go s.checkpointLoop()
}

// initSchema checks the schema version, creates missing buckets and
// migrates an older schema. A store that needs no change is not written,
// so that a node whose disk is full (or read-only) still opens its store
// and serves reads.
func (s *Store) initSchema() error {
	check := func(tx *bolt.Tx) (complete bool, err error) {
		complete = true
		for _, b := range allBuckets {
			complete = complete && (tx.Bucket(b) != nil || bytes.Equal(b, bucketDeliveries))
		}
		if meta := tx.Bucket(bucketMeta); meta != nil {
			switch v := meta.Get([]byte("schema")); {
			case v == nil, string(v) == "1":
				complete = false
			case string(v) == "2", string(v) == "3", string(v) == "4":
				// Marked 5 (a version 2 or 3 file gaining
				// bucketDeliveries) when the store can be written; read as
				// it is when it cannot (version 5 reads every record of
				// versions 2 to 4).
				complete = complete && s.readOnly
			case string(v) == schemaVersion:
				complete = complete && tx.Bucket(bucketDeliveries) != nil
			case string(v) != schemaVersion:
				return false, fmt.Errorf("%w %q (this build reads %q)", ErrSchema, v, schemaVersion)
			}
		}
		return complete, nil
	}
	var complete bool
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		complete, err = check(tx)
		return err
	})
	if err != nil || complete {
		return err
	}
	if s.readOnly {
		return fmt.Errorf("%w: the store lacks buckets of schema %s and cannot be written to add them", ErrReadOnly, schemaVersion)
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		switch v := meta.Get([]byte("schema")); {
		case v == nil:
			return meta.Put([]byte("schema"), []byte(schemaVersion))
		case string(v) == "1":
			// Migration 1 → 2: the audit buckets were created above; the
			// log starts with an entry saying that what came before it is
			// not in it.
			if err := meta.Put([]byte("schema"), []byte(schemaVersion)); err != nil {
				return err
			}
			t := &Tx{tx: tx, now: time.Now(), st: s}
			if err := t.Audit(&storev1.AuditEntry{Kind: "audit-started", Detail: "the store was written by a build without the audit log (schema 1); what it recorded before this entry is not in the log"}); err != nil {
				return err
			}
			return t.finish()
		case string(v) == "2", string(v) == "3", string(v) == "4":
			return meta.Put([]byte("schema"), []byte(schemaVersion))
		case string(v) != schemaVersion:
			return fmt.Errorf("%w %q (this build reads %q)", ErrSchema, v, schemaVersion)
		}
		return nil
	})
	return classify(err)
}

// ReadOnly reports whether the store was opened read-only (its file system
// was read-only at Open). Every write then fails with ErrReadOnly.
func (s *Store) ReadOnly() bool { return s.readOnly }

// classify marks a failed write that the disk caused: ErrFull for ENOSPC
// and EDQUOT, ErrReadOnly for EROFS and bbolt's read-only mode. Other
// errors are returned as they are.
func classify(err error) error {
	switch {
	case err == nil, errors.Is(err, ErrFull), errors.Is(err, ErrReadOnly):
		return err
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT), lostErrno(err, syscall.ENOSPC), lostErrno(err, syscall.EDQUOT):
		return fmt.Errorf("%w: %w", ErrFull, err)
	case errors.Is(err, syscall.EROFS), errors.Is(err, bolt.ErrDatabaseReadOnly), lostErrno(err, syscall.EROFS):
		return fmt.Errorf("%w: %w", ErrReadOnly, err)
	}
	return err
}

// lostErrno recognises the errors bbolt formats with %s instead of
// wrapping ("file resize error: ...", "file sync error: ..." when it grows
// the file), where errors.Is cannot see the errno.
func lostErrno(err error, errno syscall.Errno) bool {
	msg := err.Error()
	return (strings.HasPrefix(msg, "file resize error: ") || strings.HasPrefix(msg, "file sync error: ")) &&
		strings.HasSuffix(msg, errno.Error())
}

// Close commits the writes already handed to Batch, then closes the file.
// Later writes fail with ErrClosed.
func (s *Store) Close() error {
	s.gmu.Lock()
	first := !s.closed
	s.closed = true
	for {
		for s.leading {
			s.ended.Wait()
		}
		if len(s.calls) == 0 && len(s.later) == 0 {
			break
		}
		s.lead(false) // unlocks
		s.gmu.Lock()
	}
	if s.laterTimer != nil {
		s.laterTimer.Stop()
	}
	s.gmu.Unlock()
	if first {
		close(s.handed)
		close(s.stopUnmap)
		close(s.ckptStop)
	}
	<-s.loopDone
	<-s.unmapped
	<-s.ckptDone
	if !first {
		return nil
	}
	// The last checkpoint leaves the log empty, unless the log failed:
	// then what it lacks must not become durable (the next Open recovers
	// to what was acknowledged), and Close says so.
	s.wmu.Lock()
	err := s.logErr
	s.wmu.Unlock()
	if err == nil {
		err = s.checkpointAs(true)
	}
	s.syncs.Wait() // a writer's fdatasync of a log file
	s.ckmu.Lock()
	if s.guard != nil {
		_ = s.guard.Rollback()
		s.guard = nil
	}
	s.ckmu.Unlock()
	for _, f := range s.logFiles {
		_ = f.Close()
	}
	if s.ckptFile != nil {
		_ = s.ckptFile.Close()
	}
	return errors.Join(err, s.db.Close())
}

// Stats counts what the store's commits have done since it opened.
type Stats struct {
	// Commits is the write transactions committed after Open's own, each
	// made durable by its log record (wal.go): one write and one
	// fdatasync of the log.
	Commits uint64
	// Writes is the writes they made to the store file: one for each
	// B+tree page a commit rewrote (with its overflow pages) and one for
	// the meta page, each where the page lies in the file. They are not
	// synced: a checkpoint makes them durable (Checkpoints).
	Writes uint64
	// CommitTime is their wall time, from the start of each transaction
	// to its log record's fdatasync: the writers' functions, bbolt's
	// rebalance and spill, WriteTime and LogTime.
	CommitTime time.Duration
	// WriteTime is the part of it spent writing the pages and the meta
	// page to the file (bbolt's count).
	WriteTime time.Duration
	// LogRecords and LogBytes are the records the commits appended to the
	// log, and their bytes; LogTime is the time spent writing them and
	// making each durable (the fdatasync a commit waits for).
	LogRecords, LogBytes uint64
	LogTime              time.Duration
	// Checkpoints made since Open (its own included), and their time:
	// each one fdatasync of the store file (every page written since the
	// last) and one of the checkpoint file. Commits go on meanwhile.
	Checkpoints    uint64
	CheckpointTime time.Duration
	// DurableWaits counts the reads that found what they read not yet
	// durable and waited for it (durable.go): the feed, the outbox, and
	// writes that changed nothing. DurableWaitTime is their time.
	DurableWaits    uint64
	DurableWaitTime time.Duration
	// CommitsWithin[i] is how many of the commits took at most
	// CommitBounds[i] (a histogram's cumulative counts; the commits over
	// the last bound are Commits less the last count). A few slow commits
	// are what a mean hides: a disk that stalls for a moment holds up
	// every writer waiting behind it.
	CommitsWithin [len(CommitBounds)]uint64
}

// CommitBounds are the bounds of Stats.CommitsWithin: from a commit on a
// fast disk to a stalled one.
var CommitBounds = [...]time.Duration{
	500 * time.Microsecond, time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond,
	10 * time.Millisecond, 20 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond,
	200 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second, 5 * time.Second,
}

// Stats returns the store's counts since it opened.
func (s *Store) Stats() Stats {
	// The histogram is read before the count that a commit adds to
	// first, so that no count within a bound exceeds Commits.
	var out Stats
	var sum uint64
	for i := range s.commitsIn {
		sum += s.commitsIn[i].Load()
		out.CommitsWithin[i] = sum
	}
	st := s.db.Stats()
	out.Commits = s.commits.Load()
	out.Writes = uint64(st.TxStats.GetWrite())
	out.CommitTime = time.Duration(s.commitTime.Load())
	out.WriteTime = st.TxStats.GetWriteTime()
	out.LogRecords, out.LogBytes = s.logRecords.Load(), s.logBytes.Load()
	out.LogTime = time.Duration(s.logTime.Load())
	out.Checkpoints, out.CheckpointTime = s.ckptCount.Load(), time.Duration(s.ckptTime.Load())
	out.DurableWaits, out.DurableWaitTime = s.dur.waits.Load(), time.Duration(s.dur.waitTime.Load())
	return out
}

// Path is the file's path.
func (s *Store) Path() string { return s.db.Path() }

// FeedChanged returns a channel that is closed the next time the feed grows.
func (s *Store) FeedChanged() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.notify
}

func (s *Store) wake() {
	s.mu.Lock()
	close(s.notify)
	s.notify = make(chan struct{})
	s.mu.Unlock()
}

func u64(n uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], n)
	return b[:]
}

func provKey(reportID string, seq uint64) []byte {
	k := make([]byte, 0, len(reportID)+9)
	k = append(k, reportID...)
	k = append(k, 0)
	return append(k, u64(seq)...)
}

func put(b wbucket, k []byte, m proto.Message) error {
	v, err := proto.Marshal(m)
	if err != nil {
		return err
	}
	return b.Put(k, v)
}

func get[T proto.Message](b *bolt.Bucket, k []byte, m T) (T, error) {
	v := b.Get(k)
	if v == nil {
		return m, ErrNotFound
	}
	if err := proto.Unmarshal(v, m); err != nil {
		return m, fmt.Errorf("%w: %x: %v", ErrCorrupt, k, err)
	}
	return m, nil
}

// Tx is the write view handed to Apply. It exists so that a node can
// store a report, its provenance and the outbox items it causes in one
// atomic commit.
type Tx struct {
	tx       *bolt.Tx
	redo     *redo // the transaction's log record (see wbucket)
	now      time.Time
	fedGrown bool
	changed  []string        // existing reports this transaction rewrote
	fresh    []decodedReport // reports new to the store, as written
	st       *Store
	audit    txAudit
	// group holds the deliveries that share events, for the whole write
	// transaction (which may run several writers); nil outside one.
	group *deliveryGroup
}

// Report reads a held report.
func (t *Tx) Report(id string) (*storev1.StoredReport, error) {
	return get(t.tx.Bucket(bucketReports), []byte(id), &storev1.StoredReport{})
}

// PutReport stores r. A report new to this node gets the next feed
// position; an existing one keeps its position. Which it is comes from the
// store, not from r's fields (r may come from a transaction that was rolled
// back); PutReport sets r.FeedSeq and r.Stored accordingly.
//
// A new report's r is what Feed hands out once the commit is on disk (it is
// not decoded again), so the caller must not modify r after the
// transaction's function returns.
func (t *Tx) PutReport(id string, r *storev1.StoredReport) error {
	b := t.w(bucketReports)
	if v := b.Get([]byte(id)); v != nil {
		old := &storev1.StoredReport{}
		if err := proto.Unmarshal(v, old); err != nil {
			return fmt.Errorf("%w: report %s: %v", ErrCorrupt, id, err)
		}
		r.FeedSeq, r.Stored = old.GetFeedSeq(), old.GetStored()
		t.changed = append(t.changed, id)
	} else {
		feed := t.w(bucketFeed)
		seq, err := feed.NextSequence()
		if err != nil {
			return err
		}
		if err := feed.Put(u64(seq), []byte(id)); err != nil {
			return err
		}
		r.FeedSeq = seq
		r.Stored = timestamppb.New(t.now)
		t.fedGrown = true
		t.fresh = append(t.fresh, decodedReport{id, r})
	}
	return put(b, []byte(id), r)
}

// SeenReceipt reports whether key (report id + hop digest) was received.
func (t *Tx) SeenReceipt(reportID string, hopDigest []byte) bool {
	return t.tx.Bucket(bucketReceipts).Get(receiptKey(reportID, hopDigest)) != nil
}

// MarkReceipt records key as received.
func (t *Tx) MarkReceipt(reportID string, hopDigest []byte) error {
	return t.w(bucketReceipts).Put(receiptKey(reportID, hopDigest), []byte{})
}

func receiptKey(reportID string, hopDigest []byte) []byte {
	k := make([]byte, 0, len(reportID)+1+len(hopDigest))
	k = append(k, reportID...)
	k = append(k, 0)
	return append(k, hopDigest...)
}

// AddEvent appends a provenance event; its seq and time are set here. The
// deliveries of one report to several subscribers in one transaction share
// one event (see deliveryGroup), and so its seq.
func (t *Tx) AddEvent(e *storev1.Event) error {
	if t.group != nil && sharable(e) {
		return t.addDelivery(e)
	}
	b := t.w(bucketProvenance)
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	e.Seq = seq
	if e.Time == nil {
		e.Time = timestamppb.New(t.now)
	}
	if !deliveryKinds[e.GetKind()] && t.auditing() {
		// The event's audit entry holds all of it: the provenance record
		// only refers to the entry (schema 5).
		entry := audit.EntryFromEvent(e)
		if err := t.Audit(entry); err != nil {
			return err
		}
		return b.Put(provKey(e.GetReportId(), seq), eventRef(entry.GetSeq()))
	}
	if err := put(b, provKey(e.GetReportId(), seq), e); err != nil {
		return err
	}
	return t.auditEvent(e)
}

// Enqueue appends an item to party's outbox.
func (t *Tx) Enqueue(party string, it *storev1.OutboxItem) error {
	ob, err := t.w(bucketOutbox).CreateBucketIfNotExists([]byte(party))
	if err != nil {
		return err
	}
	seq, err := ob.NextSequence()
	if err != nil {
		return err
	}
	if it.Queued == nil {
		it.Queued = timestamppb.New(t.now)
	}
	return put(ob, u64(seq), it)
}

// Quarantine keeps refused evidence.
func (t *Tx) Quarantine(q *storev1.QuarantineItem) error {
	b := t.w(bucketQuarantine)
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	q.Seq = seq
	if q.Time == nil {
		q.Time = timestamppb.New(t.now)
	}
	return put(b, u64(seq), q)
}

// Update runs fn in one read-write transaction committed to disk before it
// returns. Use it for operator actions (publish, share).
func (s *Store) Update(now time.Time, fn func(*Tx) error) error {
	audited, err := s.update(now, fn)
	if err == nil {
		s.audited(audited)
	}
	return classify(err)
}

// update is Update without the audit hook (which the caller runs).
func (s *Store) update(now time.Time, fn func(*Tx) error) ([]*storev1.AuditEntry, error) {
	var t *Tx
	start := time.Now()
	err := s.write(func(tx *bolt.Tx, r *redo) error {
		t = &Tx{tx: tx, redo: r, now: now, st: s, group: &deliveryGroup{}}
		if err := fn(t); err != nil {
			return err
		}
		if err := t.finish(); err != nil {
			return err
		}
		return t.group.flush(t)
	})
	if err != nil {
		return nil, err
	}
	s.committed1(start, t.fedGrown, t.fresh, t.changed)
	return t.audit.appended, nil
}

// committed1 runs after a commit that started at start: it counts the
// commit and its time (Stats), adds the new reports to the decoded cache
// as they were written, drops the rewritten ones (a report new in one
// writer of a group may be rewritten by a later one) and wakes the feed's
// readers if the feed grew.
func (s *Store) committed1(start time.Time, grown bool, fresh []decodedReport, changed []string) {
	d := time.Since(start)
	s.commits.Add(1) // before commitsIn: see Stats
	s.commitTime.Add(int64(d))
	if i, _ := slices.BinarySearch(CommitBounds[:], d); i < len(CommitBounds) {
		s.commitsIn[i].Add(1)
	}
	// Dropped first, then not seeded: seeding a report that a later writer
	// rewrote, even just before dropping it, would let a reader between
	// the two take the first version.
	s.decoded.invalidate(changed)
	s.decoded.seed(fresh, changed)
	if grown {
		s.wake()
	}
}

// audited runs the audit hook with a commit's entries, in the writer's own
// goroutine once it has given up the lead (the hook may write).
func (s *Store) audited(entries []*storev1.AuditEntry) {
	if len(entries) > 0 && s.onAudit != nil {
		s.onAudit(entries)
	}
}

// Batch is Update grouped with concurrent callers into one commit. It
// returns once the commit that holds fn's writes is on disk. fn may run
// more than once (alone, if another writer of its group failed) and must
// only touch the store.
func (s *Store) Batch(now time.Time, fn func(*Tx) error) error {
	return s.batch(false, now, fn)
}

// BatchLater is Batch for a write that may wait: it joins the next commit
// that another writer starts, or is committed after laterDelay if none
// starts by then. It returns, like Batch, once its write is on disk.
func (s *Store) BatchLater(now time.Time, fn func(*Tx) error) error {
	return s.batch(true, now, fn)
}

// laterDelay is the longest a BatchLater write waits for another commit
// to join.
const laterDelay = 10 * time.Millisecond

// batch queues a write for the group commit. A Batch writer that finds no
// commit running commits at once in its own goroutine, with every writer
// waiting by then (up to maxGroup, and the BatchLater writers): a lone
// writer thus needs no hand-over to another goroutine and back, which on
// this kind of machine costs a thread's wake-up each way (BENCHMARKS.md,
// issue 7). Writers that arrive during a commit wait; once it is on disk
// its leader hands the lead to the store's committer goroutine, which
// commits them together and goes on while writers keep coming (so under
// load the commits follow each other without a hand-over, and the first
// writer returns as soon as its own write is on disk). BatchLater writers
// lead only when maxGroup of them wait, or when laterWait has passed since
// the first of them came (laterFired).
func (s *Store) batch(later bool, now time.Time, fn func(*Tx) error) error {
	c := &groupCall{now: now, fn: fn, done: make(chan error, 1)}
	s.gmu.Lock()
	if s.closed {
		s.gmu.Unlock()
		return ErrClosed
	}
	switch {
	case !later:
		s.calls = append(s.calls, c)
		if s.leading {
			s.gmu.Unlock()
			break
		}
		s.lead(true)
	case len(s.later)+1 >= maxGroup && !s.leading:
		s.later = append(s.later, c)
		s.lead(true)
	default:
		s.later = append(s.later, c)
		if !s.laterArmed {
			s.armLater()
		}
		s.gmu.Unlock()
	}
	err := <-c.done
	if err == nil {
		s.audited(c.audited)
	}
	return classify(err)
}

// lead commits the writers waiting, holding the lead, and goes on while
// more wait. It is called with gmu held and returns with it released. A
// writer leading in its own goroutine (handOver) commits once, then hands
// the lead to commitLoop if more writers wait.
func (s *Store) lead(handOver bool) {
	s.leading = true
	for {
		n := min(len(s.calls), maxGroup)
		group := append(s.group[:0], s.calls[:n]...)
		group = append(group, s.later...)
		clear(s.calls[:n])
		s.calls = s.calls[n:]
		clear(s.later)
		s.later = s.later[:0]
		if s.laterArmed {
			s.laterTimer.Stop()
			s.laterArmed = false
		}
		s.gmu.Unlock()

		s.commitGroup(group)
		clear(group)

		s.gmu.Lock()
		s.group = group
		if len(s.calls) == 0 && len(s.later) < maxGroup {
			break
		}
		if handOver {
			s.handed <- struct{}{} // commitLoop leads on
			s.gmu.Unlock()
			return
		}
	}
	if len(s.later) > 0 && !s.laterArmed {
		// Their wait ended during the commit (laterFired left them to
		// the leader): start it again.
		s.armLater()
	}
	s.leading = false
	s.ended.Broadcast()
	s.gmu.Unlock()
}

// commitLoop leads the commits a writer's commit hands over, until Close.
func (s *Store) commitLoop() {
	defer close(s.loopDone)
	for range s.handed {
		s.gmu.Lock()
		s.lead(false)
	}
}

// armLater starts the BatchLater writers' wait; gmu is held.
func (s *Store) armLater() {
	s.laterArmed = true
	if s.laterTimer == nil {
		s.laterTimer = time.AfterFunc(s.laterWait, s.laterFired)
		return
	}
	s.laterTimer.Reset(s.laterWait)
}

// laterFired commits the BatchLater writers whose wait is over, unless a
// commit is running: its leader (or the next) takes them.
func (s *Store) laterFired() {
	s.gmu.Lock()
	s.laterArmed = false
	if s.leading || len(s.later) == 0 {
		s.gmu.Unlock()
		return
	}
	s.lead(false)
}

// commitGroup commits group in one transaction. If one writer fails, it
// gets its error and the others are committed one by one, so that no
// writer's failure undoes another's write.
func (s *Store) commitGroup(group []*groupCall) {
	var failed *groupCall
	var grown bool
	var changed []string
	var fresh []decodedReport
	start := time.Now()
	err := s.write(func(tx *bolt.Tx, r *redo) error {
		shared := &deliveryGroup{}
		for _, c := range group {
			t := &Tx{tx: tx, redo: r, now: c.now, st: s, group: shared}
			if err := c.fn(t); err != nil {
				failed = c
				return err
			}
			if err := t.finish(); err != nil {
				failed = c
				return err
			}
			grown = grown || t.fedGrown
			changed = append(changed, t.changed...)
			fresh = append(fresh, t.fresh...)
			c.audited = t.audit.appended
		}
		return shared.flush(&Tx{tx: tx, redo: r})
	})
	if err == nil {
		s.committed1(start, grown, fresh, changed)
		for _, c := range group {
			c.done <- nil
		}
		return
	}
	if failed == nil || len(group) == 1 {
		// The commit itself failed (or the only writer did).
		for _, c := range group {
			c.done <- err
		}
		return
	}
	failed.done <- err
	for _, c := range group {
		if c != failed {
			var err error
			c.audited, err = s.update(c.now, c.fn)
			c.done <- err
		}
	}
}

// reportCache holds decoded reports by id, so that the many subscriptions
// reading the same feed entries decode each report once, and reports new
// to the store as they were written. A report is dropped when a commit
// rewrites it; epoch guards against a reader that decoded the old version
// adding it back after that. The reports are held in an lru.Map: the
// maxDecoded added or used last are always held (emptying the cache when
// full dropped, every ~4,000 reports, those a lagging reader was about to
// read).
type reportCache struct {
	mu    sync.Mutex // orders epoch checks against invalidations
	epoch uint64
	m     *lru.Map[string, *storev1.StoredReport]
}

// maxDecoded is the size of a generation of the cache: it holds at most
// twice that. Like the views and prepared messages built from them, these
// are ~3.5 KB each for a 2 KiB report; at 4,096 the three caches held
// ~60 MiB of one benchmark phase's reports into the next (issue 7).
const maxDecoded = 2048

func newReportCache() *reportCache {
	return &reportCache{m: lru.New[string, *storev1.StoredReport](maxDecoded)}
}

func (c *reportCache) epochNow() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.epoch
}

func (c *reportCache) get(id string) *storev1.StoredReport {
	r, _ := c.m.Get(id)
	return r
}

// add caches reports decoded by a reader that started at epoch, unless a
// rewrite was committed since.
func (c *reportCache) add(epoch uint64, rs map[string]*storev1.StoredReport) {
	if len(rs) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if epoch != c.epoch {
		return
	}
	for id, r := range rs {
		c.m.Put(id, r)
	}
}

// decodedReport is a report and its id, for the cache.
type decodedReport struct {
	id string
	r  *storev1.StoredReport
}

// seed adds reports a commit wrote as new, so that readers of the feed
// need not decode them, except those a later writer of the same commit
// rewrote (in changed): what the first writer wrote is not what the
// commit holds. The commit's leader calls it after the commit, after
// invalidate(changed), and before waking the readers.
func (c *reportCache) seed(rs []decodedReport, changed []string) {
	if len(rs) == 0 {
		return
	}
	rewritten := func(id string) bool { return slices.Contains(changed, id) }
	if len(changed) > 16 {
		set := make(map[string]bool, len(changed))
		for _, id := range changed {
			set[id] = true
		}
		rewritten = func(id string) bool { return set[id] }
	}
	for _, d := range rs {
		if !rewritten(d.id) {
			c.m.Put(d.id, d.r)
		}
	}
}

func (c *reportCache) invalidate(ids []string) {
	if len(ids) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	for _, id := range ids {
		c.m.Delete(id)
	}
}

// Report returns a held report.
func (s *Store) Report(id string) (*storev1.StoredReport, error) {
	var r *storev1.StoredReport
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		r, err = get(tx.Bucket(bucketReports), []byte(id), &storev1.StoredReport{})
		return err
	})
	return r, err
}

// FeedEntry is one report in feed order.
type FeedEntry struct {
	Seq    uint64
	ID     string // the report's id
	Report *storev1.StoredReport
}

// Feed returns up to limit reports after feed seq `after`, in feed order.
// The reports are shared with other readers: do not modify them.
func (s *Store) Feed(after uint64, limit int) ([]FeedEntry, error) {
	var out []FeedEntry
	if after == math.MaxUint64 {
		return nil, nil // after+1 would wrap to the start
	}
	epoch := s.decoded.epochNow()
	fresh := map[string]*storev1.StoredReport{}
	var at uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		at = uint64(tx.ID())
		c := tx.Bucket(bucketFeed).Cursor()
		reports := tx.Bucket(bucketReports)
		for k, v := c.Seek(u64(after + 1)); k != nil && len(out) < limit; k, v = c.Next() {
			id := string(v)
			r := s.decoded.get(id)
			if r == nil {
				var err error
				if r, err = get(reports, v, &storev1.StoredReport{}); err != nil {
					return err
				}
				fresh[id] = r
			}
			out = append(out, FeedEntry{Seq: binary.BigEndian.Uint64(k), ID: id, Report: r})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.decoded.add(epoch, fresh)
	if len(out) == 0 {
		return nil, nil
	}
	// A subscriber is sent what is durable (durable.go).
	if err := s.waitDurable(at); err != nil {
		return nil, err
	}
	return out, nil
}

// FeedEnd is the feed's last seq: no cursor a subscriber was sent is past
// it.
func (s *Store) FeedEnd() (uint64, error) {
	var end uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		end = tx.Bucket(bucketFeed).Sequence()
		return nil
	})
	return end, err
}

// Latest returns up to limit reports, newest first, each once: a report
// added to the feed again (AppendFeed, as a withdrawal does) is listed at
// its newest position.
func (s *Store) Latest(limit int) ([]FeedEntry, error) {
	var out []FeedEntry
	listed := map[string]bool{}
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketFeed).Cursor()
		reports := tx.Bucket(bucketReports)
		for k, v := c.Last(); k != nil && len(out) < limit; k, v = c.Prev() {
			if listed[string(v)] {
				continue
			}
			listed[string(v)] = true
			r, err := get(reports, v, &storev1.StoredReport{})
			if err != nil {
				return err
			}
			out = append(out, FeedEntry{Seq: binary.BigEndian.Uint64(k), ID: string(v), Report: r})
		}
		return nil
	})
	return out, err
}

// Count returns the number of reports held.
func (s *Store) Count() (int, error) {
	var n int
	err := s.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketReports).Stats().KeyN
		return nil
	})
	return n, err
}

// Events returns a report's provenance events in order.
func (s *Store) Events(reportID string) ([]*storev1.Event, error) {
	var out []*storev1.Event
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		out, err = (&Tx{tx: tx}).Events(reportID)
		return err
	})
	return out, err
}

// AddEvent appends one provenance event in a transaction of its own,
// grouped with concurrent writers.
func (s *Store) AddEvent(now time.Time, e *storev1.Event) error {
	return s.Batch(now, func(t *Tx) error { return t.AddEvent(e) })
}

// OutboxEntry is one queued item.
type OutboxEntry struct {
	Seq  uint64
	Item *storev1.OutboxItem
}

// Outbox returns up to limit items of party's outbox after seq `after`.
func (s *Store) Outbox(party string, after uint64, limit int) ([]OutboxEntry, error) {
	var out []OutboxEntry
	err := s.outbox(party, after, limit, func(seq uint64, v []byte) error {
		it := &storev1.OutboxItem{}
		if err := proto.Unmarshal(v, it); err != nil {
			return fmt.Errorf("%w: outbox %s %d: %v", ErrCorrupt, party, seq, err)
		}
		out = append(out, OutboxEntry{Seq: seq, Item: it})
		return nil
	})
	return out, err
}

// OutboxWireEntry is one queued item as a link sends it. An envelope
// keeps its stored encoding (Envelope, a copy) so that it is sent without
// being decoded and encoded again; any other item is decoded (Item).
type OutboxWireEntry struct {
	Seq      uint64
	ReportID string
	Envelope []byte              // the encoded envelope; nil when Item is set
	Item     *storev1.OutboxItem // the item decoded, when it is not an envelope
}

// OutboxWire is Outbox for a link: envelopes stay encoded.
func (s *Store) OutboxWire(party string, after uint64, limit int) ([]OutboxWireEntry, error) {
	var out []OutboxWireEntry
	err := s.outbox(party, after, limit, func(seq uint64, v []byte) error {
		e, err := outboxWireEntry(seq, v)
		if err != nil {
			return fmt.Errorf("%w: outbox %s %d: %v", ErrCorrupt, party, seq, err)
		}
		out = append(out, e)
		return nil
	})
	return out, err
}

// Field numbers of storev1.OutboxItem.
const (
	outboxReportID = 1
	outboxEnvelope = 2
	outboxRequest  = 4
)

// outboxWireEntry reads the report id and the envelope of a stored item
// without decoding the envelope. An item that is not a lone envelope
// (a request, or none) is decoded whole.
func outboxWireEntry(seq uint64, v []byte) (OutboxWireEntry, error) {
	e := OutboxWireEntry{Seq: seq}
	var envelope []byte
	envelopes, request := 0, false
	for b := v; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return e, protowire.ParseError(n)
		}
		b = b[n:]
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return e, protowire.ParseError(m)
		}
		if typ == protowire.BytesType {
			val, _ := protowire.ConsumeBytes(b)
			switch num {
			case outboxReportID:
				e.ReportID = string(val)
			case outboxEnvelope:
				envelope = val
				envelopes++
			case outboxRequest:
				request = true
			}
		}
		b = b[m:]
	}
	if envelopes == 1 && !request {
		e.Envelope = bytes.Clone(envelope)
		return e, nil
	}
	e.Item = &storev1.OutboxItem{}
	if err := proto.Unmarshal(v, e.Item); err != nil {
		return e, err
	}
	e.ReportID = e.Item.GetReportId()
	return e, nil
}

// outbox calls each with up to limit of party's outbox items after seq
// `after`, in order; v is valid only during the call.
func (s *Store) outbox(party string, after uint64, limit int, each func(seq uint64, v []byte) error) error {
	if after == math.MaxUint64 {
		return nil // after+1 would wrap to the start
	}
	var at uint64
	n := 0
	err := s.db.View(func(tx *bolt.Tx) error {
		at = uint64(tx.ID())
		ob := tx.Bucket(bucketOutbox).Bucket([]byte(party))
		if ob == nil {
			return nil
		}
		c := ob.Cursor()
		for k, v := c.Seek(u64(after + 1)); k != nil && n < limit; k, v = c.Next() {
			if err := each(binary.BigEndian.Uint64(k), v); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil || n == 0 {
		return err
	}
	// A partner is sent what is durable (durable.go).
	return s.waitDurable(at)
}

// OutboxLen returns how many items wait for party.
func (s *Store) OutboxLen(party string) (int, error) {
	var n int
	err := s.db.View(func(tx *bolt.Tx) error {
		if ob := tx.Bucket(bucketOutbox).Bucket([]byte(party)); ob != nil {
			n = ob.Stats().KeyN
		}
		return nil
	})
	return n, err
}

// Acked is an outbox item the partner acknowledged, and the provenance
// event recording it (nil: none).
type Acked struct {
	Seq   uint64
	Event *storev1.Event
}

// Ack removes acknowledged items from party's outbox and records their
// events, all in one commit. Nothing waits on it to answer a peer, so it
// joins the next commit (BatchLater); an item whose ack is lost in a crash
// is sent again, and the partner's receipt of it is a duplicate.
func (s *Store) Ack(now time.Time, party string, acks ...Acked) error {
	return s.BatchLater(now, func(t *Tx) error {
		ob := t.w(bucketOutbox).Sub([]byte(party))
		for _, a := range acks {
			if ob.Bucket != nil {
				if err := ob.Delete(u64(a.Seq)); err != nil {
					return err
				}
			}
			if a.Event != nil {
				if err := t.AddEvent(proto.CloneOf(a.Event)); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// Cursor returns the saved feed cursor of a subscriber (0 if none).
func (s *Store) Cursor(subscriber string) (uint64, error) {
	var n uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketCursors).Get([]byte(subscriber)); len(v) == 8 {
			n = binary.BigEndian.Uint64(v)
		}
		return nil
	})
	return n, err
}

// SaveCursor saves a subscriber's cursor.
func (s *Store) SaveCursor(now time.Time, subscriber string, seq uint64) error {
	return s.Batch(now, func(t *Tx) error { return t.PutCursor(subscriber, seq) })
}

// PutCursor saves a subscriber's cursor inside t.
func (t *Tx) PutCursor(subscriber string, seq uint64) error {
	return t.w(bucketCursors).Put([]byte(subscriber), u64(seq))
}

// Quarantined returns the quarantined items, oldest first.
func (s *Store) Quarantined() ([]*storev1.QuarantineItem, error) {
	var out []*storev1.QuarantineItem
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketQuarantine).ForEach(func(k, v []byte) error {
			q := &storev1.QuarantineItem{}
			if err := proto.Unmarshal(v, q); err != nil {
				return fmt.Errorf("%w: quarantine %x: %v", ErrCorrupt, k, err)
			}
			out = append(out, q)
			return nil
		})
	})
	return out, err
}
