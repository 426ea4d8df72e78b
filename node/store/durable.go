package store

import (
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// durability tracks which commits are durable, so that the readers that
// hand what they read to someone else (a subscriber's feed, a partner's
// outbox) hand out only what a crash of the machine cannot take back.
//
// Readers see a commit once bbolt has made it, which is before its log
// record is durable: the record's fdatasync runs after the store's write
// lock is released (wal.go), so that the next commit is prepared
// meanwhile, and it may take milliseconds. A report sent to a subscriber,
// or an outbox item sent to a partner, in that window is one that a power
// loss then takes back, and the feed's or the outbox's sequence numbers
// are given again, to other reports: a subscriber resuming from its
// cursor, or a partner whose acknowledgements count by them, would skip
// those. A killed process loses nothing of the kind (the record is in
// the kernel's cache), so only a machine's crash shows it.
//
// A commit's record made durable makes every commit before it durable
// too: records are appended in commit order, and a checkpoint makes one
// log file durable before the appends move to the other. A commit that
// wrote no record (it changed nothing, or bbolt synced it itself in
// direct mode) is durable once those before it are.
type durability struct {
	mu        sync.Mutex
	cond      sync.Cond
	committed uint64 // the last commit's transaction id
	logged    uint64 // the last commit that appended a log record
	durable   uint64 // every commit up to this transaction id is durable
	err       error  // the writes stopped: what is not durable now never will be

	waits    atomic.Uint64 // waits that found their transaction not yet durable
	waitTime atomic.Int64  // their time, ns
}

// init starts the tracking at txid, the store's last commit, durable.
func (d *durability) init(txid uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.cond.L = &d.mu
	d.committed, d.logged, d.durable = txid, txid, txid
}

// commit records commit txid, made in bbolt (wmu is held); logged says
// whether it appended a log record, whose fdatasync is still to come.
func (d *durability) commit(txid uint64, logged bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.committed = txid
	if logged {
		d.logged = txid
		return
	}
	if d.durable >= d.logged {
		d.durable = txid
		d.cond.Broadcast()
	}
}

// synced records that every commit up to txid is durable: its log record
// was made durable, or a checkpoint made bbolt's file durable to it.
func (d *durability) synced(txid uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.durable = max(d.durable, txid)
	if txid >= d.logged {
		// The commits after it wrote no record.
		d.durable = max(d.durable, d.committed)
	}
	d.cond.Broadcast()
}

// fail ends every wait for a commit that is not durable: the store takes
// no more writes (err says why), so it never will be.
func (d *durability) fail(err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.err == nil {
		d.err = err
	}
	d.cond.Broadcast()
}

// wait returns once every commit up to txid is durable, or the error that
// stopped the writes before it was.
func (d *durability) wait(txid uint64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cond.L == nil {
		d.cond.L = &d.mu // a write of Open's, before init
	}
	if d.durable < txid {
		d.waits.Add(1)
		start := time.Now()
		defer func() { d.waitTime.Add(int64(time.Since(start))) }()
	}
	for d.durable < txid {
		if d.err != nil {
			return d.err
		}
		d.cond.Wait()
	}
	return nil
}

// waitDurable returns once what a reader at transaction txid saw is
// durable (see durability).
func (s *Store) waitDurable(txid uint64) error {
	if s.readOnly {
		return nil // nothing is written
	}
	return s.dur.wait(txid)
}

// lastTxID is the id of the store's last commit.
func (s *Store) lastTxID() uint64 {
	var id uint64
	_ = s.db.View(func(tx *bolt.Tx) error {
		id = uint64(tx.ID())
		return nil
	})
	return id
}
