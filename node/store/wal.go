package store

// The store's log (issue 7).
//
// A bbolt commit makes its writes durable with two fdatasyncs: one for the
// B+tree pages it rewrote, at scattered places in the file, and one for the
// meta page. On this kind of disk a scattered page costs several times what
// a sequential one does, so a commit of one report took 1.3-2 ms, and a
// report crosses two of them (BENCHMARKS.md). The store therefore opens
// bbolt without its syncs and keeps a log beside the file instead: each
// commit appends one record, the changes it made (puts, deletes, bucket
// sequences, new buckets), to a log file that is already allocated and
// zero-filled, and makes that one sequential write durable with one
// fdatasync before any writer is answered.
//
// A checkpoint, every checkpointEvery while commits come, makes bbolt's
// file durable (one fdatasync of everything written since the last one)
// and records, in the checkpoint file, the transaction it reached: its
// id, its meta page and the last log record it holds. Opening a store
// after a crash (a killed process or a lost machine) puts that meta page
// back, so bbolt opens at the checkpoint's tree, and replays the log
// records after it. Close writes a clean checkpoint after the last
// commit: the next Open then takes bbolt's file as it is.
//
// Readers see a commit before its record is durable; those that hand
// what they read to someone else (the feed, the outbox) wait until it is
// (durable.go).
//
// The checkpoint's tree must still be on disk when that happens, whatever
// the commits after it wrote: bbolt reuses the pages a commit frees once
// no reader can see them, so the store holds a read transaction at the
// checkpoint (the guard) until the next checkpoint is durable. Pages that
// later commits allocate and free again are reused as before.
//
// Two log files take turns: a checkpoint switches the appends to the other
// file, whose records the previous checkpoint already holds. Each record
// carries its log sequence number (LSN) and a CRC; replay follows the LSNs
// from the checkpoint's and stops at the first record missing, torn or
// stale.
//
// bbolt remaps a file that outgrows its map, and a remap waits for every
// reader to end: with the guard held, a commit that remapped would wait
// for the next checkpoint, which waits for it. So the file is mapped large
// from the start (mapSize), and a store whose file passes half of that
// goes back to bbolt's own syncs (direct mode) and drops its checkpoint
// and log files.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"hash/fnv"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Names of the files beside the store's (path + suffix).
const (
	logSuffix        = "-log."
	checkpointSuffix = "-checkpoint"
)

var (
	// mapSize is the size of bbolt's map of the file (see the comment at
	// the top): address space, not memory. Tests set it smaller.
	mapSize = min(64<<30, math.MaxInt/2)
	// logChunk is the most a log file grows by at once, zero-filled and
	// made durable, when a record would not fit (a write into allocated
	// space needs no change to the file's size, so its fdatasync writes
	// no metadata).
	logChunk int64 = 8 << 20
	// checkpointBytes and checkpointEvery: a checkpoint starts once the
	// current log file holds this many bytes, or this long after the last
	// one if anything was logged since. Often enough that each one's
	// fdatasync of the store file has little to write: with one a second,
	// each held the disk for tens of ms, and the commits waiting on it
	// doubled the latency's p99 (BENCHMARKS.md, issue 7).
	checkpointBytes int64 = 48 << 20
	checkpointEvery       = 100 * time.Millisecond
	// growAhead and growAt: a checkpoint extends bbolt's file to
	// growAhead bytes past its last page when fewer than growAt are left
	// (see extendAhead). Tests set them smaller.
	growAhead int64 = 32 << 20
	growAt    int64 = 16 << 20
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// Operations in a log record.
const (
	opPut      byte = 1 // path, key, value
	opDelete   byte = 2 // path, key
	opSequence byte = 3 // path, sequence
	opBucket   byte = 4 // path (created if missing)
)

// redo is one transaction's log record, as the transaction builds it.
// Its methods do nothing on a nil redo (the writes of Open, which its own
// checkpoint makes durable).
type redo struct {
	b []byte
	// crises: the transaction wrote to bucketCrises (see crisisCache).
	crises bool
}

func (r *redo) reset() { r.b, r.crises = r.b[:0], false }

func (r *redo) path(op byte, path [][]byte) {
	r.b = append(r.b, op, byte(len(path)))
	for _, p := range path {
		r.b = binary.AppendUvarint(r.b, uint64(len(p)))
		r.b = append(r.b, p...)
	}
}

func (r *redo) bytes(v []byte) {
	r.b = binary.AppendUvarint(r.b, uint64(len(v)))
	r.b = append(r.b, v...)
}

// wbucket is a bucket written through its transaction's log record: each
// change is made in bbolt and appended to the record. Reads are bbolt's.
type wbucket struct {
	*bolt.Bucket
	path [][]byte
	r    *redo
}

// w is the top-level bucket name, for writing.
func (t *Tx) w(name []byte) wbucket {
	if t.redo != nil && bytes.Equal(name, bucketCrises) {
		t.redo.crises = true
	}
	b := t.tx.Bucket(name)
	if b != nil {
		b.FillPercent = fillOf(name)
	}
	return wbucket{Bucket: b, path: [][]byte{name}, r: t.redo}
}

// Put is bbolt's Put, logged.
func (b wbucket) Put(k, v []byte) error {
	if err := b.Bucket.Put(k, v); err != nil {
		return err
	}
	if b.r != nil {
		b.r.path(opPut, b.path)
		b.r.bytes(k)
		b.r.bytes(v)
	}
	return nil
}

// Delete is bbolt's Delete, logged.
func (b wbucket) Delete(k []byte) error {
	if err := b.Bucket.Delete(k); err != nil {
		return err
	}
	if b.r != nil {
		b.r.path(opDelete, b.path)
		b.r.bytes(k)
	}
	return nil
}

// NextSequence is bbolt's NextSequence, logged as the sequence it set.
func (b wbucket) NextSequence() (uint64, error) {
	seq, err := b.Bucket.NextSequence()
	if err == nil && b.r != nil {
		b.r.path(opSequence, b.path)
		b.r.b = binary.AppendUvarint(b.r.b, seq)
	}
	return seq, err
}

// Sub is a nested bucket, for writing; its Bucket is nil if it is missing.
func (b wbucket) Sub(name []byte) wbucket {
	return b.sub(b.Bucket.Bucket(name), name)
}

// sub is nb, b's nested bucket name, for writing; a partner's outbox packs
// its pages (see fillOf).
func (b wbucket) sub(nb *bolt.Bucket, name []byte) wbucket {
	if nb != nil && len(b.path) == 1 && bytes.Equal(b.path[0], bucketOutbox) {
		nb.FillPercent = 1
	}
	return wbucket{Bucket: nb, path: append(b.path[:len(b.path):len(b.path)], name), r: b.r}
}

// CreateBucketIfNotExists is bbolt's, logged when it creates the bucket.
func (b wbucket) CreateBucketIfNotExists(name []byte) (wbucket, error) {
	if sub := b.Sub(name); sub.Bucket != nil {
		return sub, nil
	}
	nb, err := b.Bucket.CreateBucket(name)
	if err != nil {
		return wbucket{}, err
	}
	sub := b.sub(nb, name)
	if b.r != nil {
		b.r.path(opBucket, sub.path)
	}
	return sub, nil
}

// errLogRecord: a log record that does not decode (replay stops at it).
var errLogRecord = errors.New("store: a log record does not decode")

// apply makes a log record's changes in tx.
func apply(tx *bolt.Tx, rec []byte) error {
	uv := func() (uint64, bool) {
		v, n := binary.Uvarint(rec)
		if n <= 0 {
			return 0, false
		}
		rec = rec[n:]
		return v, true
	}
	bs := func() ([]byte, bool) {
		n, ok := uv()
		if !ok || n > uint64(len(rec)) {
			return nil, false
		}
		v := rec[:n:n]
		rec = rec[n:]
		return v, true
	}
	for len(rec) > 0 {
		if len(rec) < 2 {
			return errLogRecord
		}
		op, depth := rec[0], int(rec[1])
		rec = rec[2:]
		var path [][]byte
		for range depth {
			p, ok := bs()
			if !ok {
				return errLogRecord
			}
			path = append(path, p)
		}
		if depth == 0 {
			return errLogRecord
		}
		if op == opBucket {
			b := tx.Bucket(path[0])
			var err error
			if depth == 1 {
				_, err = tx.CreateBucketIfNotExists(path[0])
			} else {
				for _, p := range path[1 : depth-1] {
					if b == nil {
						break
					}
					b = b.Bucket(p)
				}
				if b == nil {
					return fmt.Errorf("%w: bucket %q of a new bucket is missing", errLogRecord, path)
				}
				_, err = b.CreateBucketIfNotExists(path[depth-1])
			}
			if err != nil {
				return err
			}
			continue
		}
		b := tx.Bucket(path[0])
		for _, p := range path[1:] {
			if b == nil {
				break
			}
			b = b.Bucket(p)
		}
		if b == nil {
			return fmt.Errorf("%w: bucket %q is missing", errLogRecord, path)
		}
		var err error
		switch op {
		case opPut:
			k, ok1 := bs()
			v, ok2 := bs()
			if !ok1 || !ok2 {
				return errLogRecord
			}
			err = b.Put(k, v)
		case opDelete:
			k, ok := bs()
			if !ok {
				return errLogRecord
			}
			err = b.Delete(k)
		case opSequence:
			seq, ok := uv()
			if !ok {
				return errLogRecord
			}
			err = b.SetSequence(seq)
		default:
			return fmt.Errorf("%w: operation %d", errLogRecord, op)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// A log record on disk: length of the body (4 bytes), CRC-32C of the body
// (4), then the body: LSN (8) and the redo operations.
const recordHeader = 8

// wlog is the store's two log files and where the next record goes.
// Its fields are guarded by the store's wmu.
type wlog struct {
	files  [2]*os.File
	filled [2]int64 // bytes of each file allocated and written (zeros or records)
	cur    int      // the file appended to
	off    int64    // where the next record goes in it
	lsn    uint64   // the last record's LSN
	buf    []byte
}

// prepare encodes r as the next record and makes room for it, growing the
// current file if needed (which may fail: ENOSPC, EFBIG). Nothing is
// written to the record's place yet.
func (l *wlog) prepare(r *redo) error {
	n := recordHeader + 8 + len(r.b)
	l.buf = append(l.buf[:0], make([]byte, recordHeader)...)
	l.buf = binary.LittleEndian.AppendUint64(l.buf, l.lsn+1)
	l.buf = append(l.buf, r.b...)
	body := l.buf[recordHeader:]
	binary.LittleEndian.PutUint32(l.buf[0:], uint32(len(body)))
	binary.LittleEndian.PutUint32(l.buf[4:], crc32.Checksum(body, crcTable))
	return l.reserve(l.off + int64(n))
}

// reserve makes the current file hold at least end bytes of allocated,
// zero-filled space, made durable.
func (l *wlog) reserve(end int64) error {
	f := l.files[l.cur]
	if end <= l.filled[l.cur] {
		return nil
	}
	// Doubling from 64 KiB to logChunk: a small store keeps small files.
	grow := max(end-l.filled[l.cur], min(logChunk, max(64<<10, l.filled[l.cur])))
	if err := zeroFill(f, l.filled[l.cur], l.filled[l.cur]+grow); err != nil {
		return err
	}
	l.filled[l.cur] += grow
	return nil
}

// zeroFill writes zeros over f's bytes from..to and makes them durable.
func zeroFill(f *os.File, from, to int64) error {
	zeros := make([]byte, min(to-from, 1<<20))
	for at := from; at < to; {
		n := min(int64(len(zeros)), to-at)
		if _, err := f.WriteAt(zeros[:n], at); err != nil {
			return err
		}
		at += n
	}
	return fdatasync(f)
}

// write puts the prepared record in its place (not yet durable) and
// returns the file that holds it.
func (l *wlog) write() (*os.File, error) {
	f := l.files[l.cur]
	if _, err := f.WriteAt(l.buf, l.off); err != nil {
		return nil, err
	}
	l.off += int64(len(l.buf))
	l.lsn++
	return f, nil
}

// switchFile makes the other file current, from its start: a checkpoint
// that holds every record of that file is on disk by then.
func (l *wlog) switchFile() {
	l.cur = 1 - l.cur
	l.off = 0
}

// readRecords returns the records at the start of a log file that follow
// each other by LSN, with the LSN of the first.
func readRecords(f *os.File) (first uint64, recs [][]byte, err error) {
	data, err := io.ReadAll(io.NewSectionReader(f, 0, 1<<62))
	if err != nil {
		return 0, nil, err
	}
	for len(data) >= recordHeader+8 {
		n := int(binary.LittleEndian.Uint32(data[0:]))
		if n < 8 || n > len(data)-recordHeader {
			break
		}
		body := data[recordHeader : recordHeader+n]
		if crc32.Checksum(body, crcTable) != binary.LittleEndian.Uint32(data[4:]) {
			break
		}
		lsn := binary.LittleEndian.Uint64(body)
		if len(recs) == 0 {
			first = lsn
		} else if lsn != first+uint64(len(recs)) {
			break
		}
		recs = append(recs, body[8:])
		data = data[recordHeader+n:]
	}
	return first, recs, nil
}

// A checkpoint: the transaction bbolt's file holds durably, its meta page
// (bbolt's page header and meta, which Open writes back), and the LSN of
// the last log record that transaction holds. The checkpoint file has two
// slots, written in turn, each with a CRC, so that a torn write leaves the
// previous checkpoint.
type checkpoint struct {
	seq  uint64 // counts checkpoints; the slot is seq%2
	lsn  uint64
	txid uint64
	meta [metaBytes]byte
	// clean: Close wrote it, after the last commit. bbolt's file is then
	// whole as it is, and Open neither restores the meta page nor replays
	// (a tool may have written the file since).
	clean bool
}

const (
	checkpointMagic = 0x544c434b // "TLCK"
	checkpointSlot  = 512
	// metaBytes: bbolt's page header (16 bytes) and meta (64).
	metaBytes = 16 + 64
	// bbolt's meta page flag, magic and version.
	boltMetaFlag     = 0x04
	boltMagic        = 0xED0CDAED
	boltVersion      = 2
	boltMetaTxidAt   = 16 + 48
	boltMetaPgidAt   = 16 + 40
	boltMetaSumAt    = 16 + 56
	boltMetaPageSzAt = 16 + 8
)

func (c *checkpoint) encode() []byte {
	b := make([]byte, 0, checkpointSlot)
	b = binary.LittleEndian.AppendUint32(b, checkpointMagic)
	b = binary.LittleEndian.AppendUint64(b, c.seq)
	b = binary.LittleEndian.AppendUint64(b, c.lsn)
	b = binary.LittleEndian.AppendUint64(b, c.txid)
	b = append(b, c.meta[:]...)
	if c.clean {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, crcTable))
	return append(b, make([]byte, checkpointSlot-len(b))...)
}

func decodeCheckpoint(b []byte) (checkpoint, bool) {
	var c checkpoint
	const n = 4 + 8 + 8 + 8 + metaBytes + 1
	if len(b) < n+4 || binary.LittleEndian.Uint32(b) != checkpointMagic ||
		crc32.Checksum(b[:n], crcTable) != binary.LittleEndian.Uint32(b[n:]) {
		return c, false
	}
	c.seq = binary.LittleEndian.Uint64(b[4:])
	c.lsn = binary.LittleEndian.Uint64(b[12:])
	c.txid = binary.LittleEndian.Uint64(b[20:])
	copy(c.meta[:], b[28:n-1])
	c.clean = b[n-1] == 1
	return c, metaValid(c.meta[:], c.txid)
}

// readCheckpoint returns the newest valid checkpoint in f; ok is false if
// there is none.
func readCheckpoint(f *os.File) (c checkpoint, ok bool, err error) {
	b := make([]byte, 2*checkpointSlot)
	n, err := f.ReadAt(b, 0)
	if err != nil && err != io.EOF {
		return c, false, err
	}
	b = b[:n]
	for i := range 2 {
		if len(b) < (i+1)*checkpointSlot {
			break
		}
		if got, valid := decodeCheckpoint(b[i*checkpointSlot : (i+1)*checkpointSlot]); valid && (!ok || got.seq > c.seq) {
			c, ok = got, true
		}
	}
	return c, ok, nil
}

// writeCheckpoint writes c in its slot and makes it durable.
func writeCheckpoint(f *os.File, c checkpoint) error {
	if _, err := f.WriteAt(c.encode(), int64(c.seq%2)*checkpointSlot); err != nil {
		return err
	}
	return fdatasync(f)
}

// metaValid checks a meta page as bbolt does (magic, version, checksum)
// and that it is transaction txid's.
func metaValid(p []byte, txid uint64) bool {
	if len(p) < metaBytes || binary.LittleEndian.Uint16(p[8:]) != boltMetaFlag {
		return false
	}
	m := p[16:]
	if binary.LittleEndian.Uint32(m[0:]) != boltMagic || binary.LittleEndian.Uint32(m[4:]) != boltVersion {
		return false
	}
	h := fnv.New64a()
	h.Write(m[:56])
	return h.Sum64() == binary.LittleEndian.Uint64(p[boltMetaSumAt:]) && binary.LittleEndian.Uint64(p[boltMetaTxidAt:]) == txid
}

// readMeta reads transaction txid's meta page from bbolt's file: it is
// the page txid%2 until transaction txid+2 commits.
func readMeta(f *os.File, pageSize int, txid uint64) ([metaBytes]byte, error) {
	var p [metaBytes]byte
	if _, err := f.ReadAt(p[:], int64(txid%2)*int64(pageSize)); err != nil {
		return p, err
	}
	if !metaValid(p[:], txid) {
		return p, fmt.Errorf("store: the meta page of transaction %d does not read back", txid)
	}
	return p, nil
}

// newestMeta is the transaction of the newest valid meta page in bbolt's
// file f, as bbolt would open it.
func newestMeta(f *os.File, pageSize int64) (uint64, error) {
	var newest uint64
	found := false
	for id := range int64(2) {
		var p [metaBytes]byte
		if _, err := f.ReadAt(p[:], id*pageSize); err != nil {
			return 0, err
		}
		txid := binary.LittleEndian.Uint64(p[boltMetaTxidAt:])
		if metaValid(p[:], txid) && (!found || txid > newest) {
			newest, found = txid, true
		}
	}
	if !found {
		return 0, fmt.Errorf("store: neither of the file's meta pages is valid")
	}
	return newest, nil
}

// restoreMeta writes a checkpoint's meta page over both of bbolt's meta
// pages, so that bbolt opens the file at the checkpoint's transaction
// whatever was written after it, and makes them durable.
func restoreMeta(f *os.File, c checkpoint) error {
	pageSize := int64(binary.LittleEndian.Uint32(c.meta[boltMetaPageSzAt:]))
	for id := range int64(2) {
		p := c.meta
		binary.LittleEndian.PutUint64(p[0:], uint64(id))
		if _, err := f.WriteAt(p[:], id*pageSize); err != nil {
			return err
		}
	}
	return fdatasync(f)
}

// syncDir makes the entries of path's folder durable (new files).
func syncDir(path string) error {
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return err
	}
	return nil
}

// write runs fn in a write transaction and commits it. When the store
// logs, fn's changes are then in the log and on disk: the record was
// written and made durable with one fdatasync after bbolt's commit (which
// writes the pages without syncing them). A record that cannot be
// written after its commit leaves bbolt ahead of the log: the store then
// takes no more writes (logErr) and the next Open recovers to what was
// acknowledged.
// committedBuckets runs under wmu once the commit of r's transaction is
// in bbolt: what caches the store keeps of the buckets it wrote are read
// again.
func (s *Store) committedBuckets(r *redo) {
	if r.crises {
		s.crises.gen.Add(1)
	}
}

func (s *Store) write(fn func(*bolt.Tx, *redo) error) error {
	s.wmu.Lock()
	if s.logErr != nil {
		s.wmu.Unlock()
		return s.logErr
	}
	tx, err := s.db.Begin(true)
	if err != nil {
		s.wmu.Unlock()
		return err
	}
	txid := uint64(tx.ID())
	r := &s.redo
	r.reset()
	if err := fn(tx, r); err != nil {
		_ = tx.Rollback()
		s.wmu.Unlock()
		return err
	}
	l := s.log
	if l == nil || len(r.b) == 0 {
		// Nothing to log: it changed nothing, or bbolt synced it (direct
		// mode). What it read may still be on its way to the disk, and its
		// writer answered on the strength of it (a duplicate recognised):
		// it returns once that is durable (durable.go).
		err := tx.Commit()
		if err == nil {
			s.dur.commit(txid, false)
			s.committedBuckets(r)
		}
		s.wmu.Unlock()
		if err != nil {
			return err
		}
		return s.dur.wait(txid)
	}
	if err := l.prepare(r); err != nil {
		_ = tx.Rollback()
		s.wmu.Unlock()
		return err
	}
	if err := tx.Commit(); err != nil {
		s.wmu.Unlock()
		return err
	}
	s.committedBuckets(r)
	t0 := time.Now()
	f, err := l.write()
	if err != nil {
		err = s.stopWrites(err)
		s.wmu.Unlock()
		return err
	}
	s.dur.commit(txid, true)
	full := l.off >= checkpointBytes
	s.logRecords.Add(1)
	s.logBytes.Add(uint64(len(l.buf)))
	s.syncs.Add(1) // Close waits for it before closing f
	s.wmu.Unlock()
	if full {
		select {
		case s.ckptWake <- struct{}{}:
		default:
		}
	}
	err = syncLog(f)
	s.syncs.Done()
	s.logTime.Add(int64(time.Since(t0)))
	if err != nil {
		s.wmu.Lock()
		err = s.stopWrites(err)
		s.wmu.Unlock()
		return err
	}
	s.dur.synced(txid)
	return nil
}

// syncLog makes a commit's log record durable; tests hold it.
var syncLog = fdatasync

// logFailed is the error that stops the writes. It names its cause but
// does not wrap it: a full disk here is not ErrFull, whose writes resume
// once space returns.
func logFailed(err error) error {
	return fmt.Errorf("store: the log could not be written (%v); the store takes no more writes: restart the node, which recovers it to the last write acknowledged", err)
}

// stopWrites stops the store's writes for err, unless they stopped
// already, and ends the waits for what will now never be durable
// (durable.go). wmu is held. It returns the error the writes now get.
func (s *Store) stopWrites(err error) error {
	if s.logErr == nil {
		s.logErr = logFailed(err)
	}
	s.dur.fail(s.logErr)
	return s.logErr
}

// checkpoint makes bbolt's file durable up to the last commit, records
// that in the checkpoint file and moves the guard to it (see the comment
// at the top). The log's appends move to the other file, which the
// previous checkpoint made free. A checkpoint that fails stops the
// store's writes: its log file would otherwise be reused too soon.
func (s *Store) checkpoint() error { return s.checkpointAs(false) }

// checkpointAs makes a checkpoint; a clean one (Close) is written even if
// nothing was logged since the last.
func (s *Store) checkpointAs(clean bool) error {
	s.ckmu.Lock()
	defer s.ckmu.Unlock()
	s.wmu.Lock()
	if s.log == nil || s.logErr != nil {
		s.wmu.Unlock()
		return nil
	}
	if s.log.off == 0 && s.ckptCount.Load() > 0 && !clean {
		s.wmu.Unlock()
		return nil // nothing logged since the last one
	}
	start := time.Now()
	guard, err := s.db.Begin(false)
	if err != nil {
		s.wmu.Unlock()
		return err
	}
	c, err := s.checkpointAt(guard, clean)
	if clean {
		s.logErr = ErrClosed // nothing may commit after the clean checkpoint
	}
	size := guard.Size()
	if err == nil {
		// The file's last records must be durable before later ones go
		// to the other file: a writer whose own fdatasync of this file is
		// still running would otherwise leave a gap that later records,
		// already acknowledged, cannot be replayed past.
		err = fdatasync(s.log.files[s.log.cur])
	}
	grew := false
	if err == nil {
		s.log.switchFile()
		grew = s.extendAhead(size)
	}
	s.wmu.Unlock()
	if err == nil && grew {
		// A new size is made durable as bbolt's own grow makes it: with
		// fsync, not fdatasync (boltdb/bolt#284: ext3 and ext4 may not
		// journal the size before fdatasync returns).
		err = s.dbFile.Sync()
	} else if err == nil {
		err = s.db.Sync()
	}
	if err == nil {
		err = writeCheckpoint(s.ckptFile, c)
	}
	if err != nil {
		_ = guard.Rollback()
		s.wmu.Lock()
		s.stopWrites(fmt.Errorf("checkpoint: %w", err))
		s.wmu.Unlock()
		return err
	}
	s.dur.synced(c.txid) // bbolt's file is durable up to it
	old := s.guard
	s.guard, s.ckpt = guard, c
	if old != nil {
		_ = old.Rollback()
	}
	s.ckptCount.Add(1)
	s.ckptTime.Add(int64(time.Since(start)))
	if size > int64(mapSize/2) {
		return s.goDirect()
	}
	return nil
}

// extendAhead extends bbolt's file to growAhead bytes past size, its last
// page, when fewer than growAt are left, and reports whether it did. The
// new space is a hole: its blocks are allocated as pages are written
// into it, so a full disk still refuses the write that needs them.
//
// bbolt grows a file that its pages outrun by itself, in the commit that
// needs the room, with a truncate and an fsync of the whole file: all
// that was written since the last checkpoint goes to disk while that
// commit, and every writer behind it, waits. It does so every 16 MiB
// (bbolt's step): at each node about every four seconds at 500
// reports/s, and twice a second at full rate (issue 7, BENCHMARKS.md).
// Extended here, the file has the room: bbolt grows nothing, and the
// checkpoint's own fsync, outside the commits, makes the new size
// durable before the checkpoint that may need it is written.
//
// wmu is held: bbolt's grow runs in a commit, so the file cannot have
// grown past what Stat says. A file that will not extend is left to
// bbolt, whose grow then reports the error in the commit that needs it.
func (s *Store) extendAhead(size int64) bool {
	st, err := s.dbFile.Stat()
	if err != nil || st.Size() >= size+growAt {
		return false
	}
	return s.dbFile.Truncate(size+growAhead) == nil
}

// checkpointAt is the next checkpoint, of the transaction tx reads (the
// last committed: wmu is held).
func (s *Store) checkpointAt(tx *bolt.Tx, clean bool) (checkpoint, error) {
	c := checkpoint{seq: s.ckpt.seq + 1, lsn: s.log.lsn, txid: uint64(tx.ID()), clean: clean}
	var err error
	c.meta, err = readMeta(s.dbFile, s.pageSize, c.txid)
	return c, err
}

// goDirect leaves the log for bbolt's own syncs, for a file grown past
// half its map (see the comment at the top): everything committed is made
// durable and recorded in a clean checkpoint, the log files are removed,
// then the checkpoint file, and the guard is released. A crash between
// the steps leaves either a clean checkpoint (Open takes the file as it
// is) or no checkpoint and no log. ckmu is held; the log files stay open
// until Close (a writer may still be syncing one).
func (s *Store) goDirect() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	fail := func(err error) error {
		s.stopWrites(err)
		if s.guard != nil {
			_ = s.guard.Rollback()
			s.guard = nil
		}
		return err
	}
	s.db.NoSync = false
	if err := s.db.Sync(); err != nil {
		return fail(err)
	}
	tx, err := s.db.Begin(false)
	if err != nil {
		return fail(err)
	}
	c, err := s.checkpointAt(tx, true)
	_ = tx.Rollback()
	if err == nil {
		err = writeCheckpoint(s.ckptFile, c)
	}
	if err != nil {
		return fail(err)
	}
	s.dur.synced(c.txid) // the Sync above, wmu held: the last commit
	path := s.db.Path()
	for i := range s.log.files {
		if err := os.Remove(fmt.Sprint(path, logSuffix, i)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fail(err)
		}
	}
	if err := syncDir(path); err != nil {
		return fail(err)
	}
	if err := os.Remove(path + checkpointSuffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fail(err)
	}
	if err := syncDir(path); err != nil {
		return fail(err)
	}
	s.log = nil
	if s.guard != nil {
		_ = s.guard.Rollback()
		s.guard = nil
	}
	return nil
}

// checkpointLoop makes a checkpoint every checkpointEvery when something
// was logged, and when a commit finds the log file full, until Close.
func (s *Store) checkpointLoop() {
	defer close(s.ckptDone)
	t := time.NewTicker(checkpointEvery)
	defer t.Stop()
	for {
		select {
		case <-s.ckptStop:
			return
		case <-t.C:
		case <-s.ckptWake:
		}
		_ = s.checkpoint() // a failure stops the writes (logErr)
	}
}

// ReleaseLogSpaceForTest makes a checkpoint, then gives back to the file
// system the space the log files hold beyond their records, so that the
// next commit must allocate log space: a test that fills the disk then
// sees that commit fail, as it would once a running node's log files had
// used their space. It panics outside a test binary.
func (s *Store) ReleaseLogSpaceForTest() error {
	if !testing.Testing() {
		panic("store: ReleaseLogSpaceForTest outside a test")
	}
	if err := s.checkpoint(); err != nil {
		return err
	}
	s.ckmu.Lock() // no checkpoint switches the file meanwhile
	defer s.ckmu.Unlock()
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.log == nil {
		return nil
	}
	for i, f := range s.log.files {
		keep := int64(0) // the other file's records are in the checkpoint
		if i == s.log.cur {
			keep = s.log.off
		}
		if err := f.Truncate(keep); err != nil {
			return err
		}
		s.log.filled[i] = keep
	}
	return nil
}
