// Package audittamper rewrites a node's audit log the way an attacker who
// holds the node's bbolt file (and its party's CA) would: it edits an
// entry, recomputes a consistent chain from there to the head, and re-signs
// the checkpoints that the edit invalidated, so that the node's own
// verification passes. Tests use it to show that only a partner's evidence
// catches such a rewrite. It is test support: nothing else imports it.
package audittamper

import (
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	"github.com/tearline/tearline/node/audit"
	"github.com/tearline/tearline/node/report"
	reportv1 "github.com/tearline/tearline/proto/tearline/report/v1"
	storev1 "github.com/tearline/tearline/proto/tearline/store/v1"
)

func u64(n uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], n)
	return b[:]
}

// Rewrite edits entry seq of the (closed) bbolt file at path with edit,
// rechains every entry after it, updates the store's head and re-signs with
// signer every checkpoint at or after seq. The bucket and key names are
// those of node/store/schema.go.
func Rewrite(path string, seq uint64, edit func(*storev1.AuditEntry), signer report.Signer) error {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return err
	}
	defer db.Close()
	return db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("audit"))
		if b == nil {
			return fmt.Errorf("no audit bucket")
		}
		prev := audit.Zero
		if seq > 1 {
			c, err := audit.Canonical(b.Get(u64(seq - 1)))
			if err != nil {
				return err
			}
			prev = audit.Hash(c)
		}
		heads := map[uint64][]byte{}
		var last uint64
		c := b.Cursor()
		var rewrites [][2][]byte
		for k, v := c.Seek(u64(seq)); k != nil; k, v = c.Next() {
			canonical, err := audit.Canonical(v)
			if err != nil {
				return err
			}
			e, err := audit.Decode(canonical)
			if err != nil {
				return err
			}
			if e.GetSeq() == seq {
				edit(e)
			}
			e.Prev = prev
			nc, err := audit.Encode(e)
			if err != nil {
				return err
			}
			prev = audit.Hash(nc)
			last = e.GetSeq()
			heads[last] = prev
			rewrites = append(rewrites, [2][]byte{append([]byte(nil), k...), audit.Value(nc)})
		}
		for _, kv := range rewrites {
			if err := b.Put(kv[0], kv[1]); err != nil {
				return err
			}
		}
		head := append(u64(last), prev...)
		if err := tx.Bucket([]byte("meta")).Put([]byte("audit_head"), head); err != nil {
			return err
		}
		cps := tx.Bucket([]byte("audit_checkpoints"))
		cc := cps.Cursor()
		var resign [][2][]byte
		for k, v := cc.Seek(u64(seq)); k != nil; k, v = cc.Next() {
			sd := &reportv1.Signed{}
			if err := proto.Unmarshal(v, sd); err != nil {
				return err
			}
			cp := &reportv1.AuditCheckpoint{}
			if err := proto.Unmarshal(sd.GetPayload(), cp); err != nil {
				return err
			}
			cp.Head = heads[cp.GetSeq()]
			nsd, err := report.SignStatement(report.KindAuditCheckpoint, cp, signer)
			if err != nil {
				return err
			}
			raw, err := proto.Marshal(nsd)
			if err != nil {
				return err
			}
			resign = append(resign, [2][]byte{append([]byte(nil), k...), raw})
		}
		for _, kv := range resign {
			if err := cps.Put(kv[0], kv[1]); err != nil {
				return err
			}
		}
		return nil
	})
}
