package store

import (
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	storev1 "github.com/tearline/tearline/proto/tearline/store/v1"
)

// deliveryGroup gathers, for one write transaction, the deliveries to
// subscribers that can share one provenance event: those of one report with
// the same kind and portions. A fan-out records each report's delivery to
// many subscribers in the same commit, and one event for them all is one
// key in the provenance bucket instead of one each: most of the work of
// such a commit was inserting those keys (BENCHMARKS.md, issue 7).
//
// The shared events are written when every writer of the transaction has
// run (flush); until then Tx.Events adds them to what the bucket holds.
type deliveryGroup struct {
	byKey    map[string]*storev1.Event
	byReport map[string][]*storev1.Event
	order    []*storev1.Event
	key      []byte // deliveryKey's buffer
	// the time of the writer whose deliveries are being added, shared by
	// its events (it is not modified)
	now   time.Time
	nowPB *timestamppb.Timestamp
}

// sharable reports whether e is a delivery to a subscriber that can share
// an event with others: one that says no more than who, when, what kind and
// which portions.
func sharable(e *storev1.Event) bool {
	switch e.GetKind() {
	case "delivered", "withdrawal-delivered":
	default:
		return false
	}
	return e.GetSubject() != "" && e.GetParty() == "" && e.GetDetail() == "" &&
		len(e.GetDecisions()) == 0 && len(e.GetRecipients()) == 0
}

// deliveryKey is the key of the event e can share, in a buffer that the
// next call overwrites.
func (g *deliveryGroup) deliveryKey(e *storev1.Event) []byte {
	k := g.key[:0]
	k = append(k, e.GetReportId()...)
	k = append(k, 0)
	k = append(k, e.GetKind()...)
	k = append(k, 0)
	for _, p := range e.GetPortions() {
		k = binary.BigEndian.AppendUint32(k, p)
	}
	g.key = k
	return k
}

// addDelivery adds e to the event it shares with the transaction's other
// deliveries of the report, creating that event (and its seq) if it is the
// first. e gets the shared event's seq, which its audit entry refers to.
func (t *Tx) addDelivery(e *storev1.Event) error {
	g := t.group
	if e.Time == nil {
		if g.nowPB == nil || !g.now.Equal(t.now) {
			g.now, g.nowPB = t.now, timestamppb.New(t.now)
		}
		e.Time = g.nowPB
	}
	key := g.deliveryKey(e)
	shared := g.byKey[string(key)]
	if shared == nil {
		seq, err := t.w(bucketProvenance).NextSequence()
		if err != nil {
			return err
		}
		shared = &storev1.Event{Seq: seq, Time: e.GetTime(), ReportId: e.GetReportId(), Kind: e.GetKind(), Portions: slices.Clone(e.GetPortions())}
		if g.byKey == nil {
			g.byKey, g.byReport = map[string]*storev1.Event{}, map[string][]*storev1.Event{}
		}
		g.byKey[string(key)] = shared
		g.byReport[shared.ReportId] = append(g.byReport[shared.ReportId], shared)
		g.order = append(g.order, shared)
	}
	shared.Recipients = append(shared.Recipients, &storev1.EventRecipient{Subject: e.GetSubject(), Time: e.GetTime()})
	e.Seq = shared.Seq
	return t.auditEvent(e)
}

// flush writes the transaction's shared delivery events. One with a single
// recipient is written as an ordinary event. One with several is written
// in bucketDeliveries under its seq, and its provenance key gets an empty
// value: the events of a fan-out commit, one for each report it covers,
// are appended side by side there, and only the small keys land among
// each report's events (writing the events there rewrote a page of each
// report's events at each commit: most of a fan-out's dirty pages).
func (g *deliveryGroup) flush(t *Tx) error {
	if len(g.order) == 0 {
		return nil
	}
	b := t.w(bucketProvenance)
	shared := t.w(bucketDeliveries)
	for _, e := range g.order {
		key := provKey(e.GetReportId(), e.GetSeq())
		if len(e.Recipients) == 1 {
			r := e.Recipients[0]
			e.Subject, e.Time, e.Recipients = r.GetSubject(), r.GetTime(), nil
			if err := put(b, key, e); err != nil {
				return err
			}
			continue
		}
		if err := put(shared, u64(e.GetSeq()), e); err != nil {
			return err
		}
		if err := b.Put(key, []byte{}); err != nil {
			return err
		}
	}
	return nil
}

// sharedEvent reads the shared delivery event that the provenance key k
// (with an empty value) stands for.
func sharedEvent(tx *bolt.Tx, k []byte) (*storev1.Event, error) {
	var v []byte
	if b := tx.Bucket(bucketDeliveries); b != nil && len(k) >= 8 {
		v = b.Get(k[len(k)-8:])
	}
	if v == nil {
		return nil, fmt.Errorf("%w: provenance key %x refers to a shared delivery event that is not held", ErrCorrupt, k)
	}
	e := &storev1.Event{}
	if err := proto.Unmarshal(v, e); err != nil {
		return nil, fmt.Errorf("%w: shared delivery event %x: %v", ErrCorrupt, k[len(k)-8:], err)
	}
	return e, nil
}

// expand appends to out the events e stands for: e itself, or one per
// recipient of a shared delivery, each with e's seq.
func expand(out []*storev1.Event, e *storev1.Event) []*storev1.Event {
	if len(e.GetRecipients()) == 0 {
		return append(out, e)
	}
	for _, r := range e.GetRecipients() {
		out = append(out, &storev1.Event{
			Seq: e.GetSeq(), Time: r.GetTime(), ReportId: e.GetReportId(), Kind: e.GetKind(),
			Subject: r.GetSubject(), Portions: slices.Clone(e.GetPortions()),
		})
	}
	return out
}
