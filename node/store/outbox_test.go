package store

import (
	"errors"
	"testing"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	federationv1 "github.com/tearline/tearline/proto/tearline/federation/v1"
	reportv1 "github.com/tearline/tearline/proto/tearline/report/v1"
	storev1 "github.com/tearline/tearline/proto/tearline/store/v1"
)

// TestOutboxWire: an envelope item comes back with the envelope's stored
// encoding and its report id; a request item, and an item with neither,
// decoded whole; the same items, in the same order, as Outbox.
func TestOutboxWire(t *testing.T) {
	s := openTestStore(t)
	env := stored("r1", "").GetEnvelope()
	env.Hops = []*reportv1.Signed{{Payload: []byte("hop"), Signature: []byte("sig")}}
	req := &federationv1.DeliverRequest{Item: &federationv1.DeliverRequest_Withdrawal{Withdrawal: &reportv1.Signed{Payload: []byte("w")}}}
	items := []*storev1.OutboxItem{
		{ReportId: "r1", Envelope: env},
		{ReportId: "r2", Request: req},
		{ReportId: "r3"},
		{ReportId: "r4", Envelope: &reportv1.Envelope{}},
	}
	err := s.Update(t0, func(tx *Tx) error {
		for _, it := range items {
			if err := tx.Enqueue("GBR", proto.CloneOf(it)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.OutboxWire("GBR", 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(items) {
		t.Fatalf("OutboxWire gave %d items, want %d", len(got), len(items))
	}
	for i, e := range got {
		if e.Seq != uint64(i+1) || e.ReportID != items[i].GetReportId() {
			t.Errorf("item %d: seq %d, report %q; want %d, %q", i, e.Seq, e.ReportID, i+1, items[i].GetReportId())
		}
	}
	for _, i := range []int{0, 3} {
		if got[i].Item != nil || got[i].Envelope == nil {
			t.Fatalf("envelope item %d: Item %v, Envelope %x; want the encoding only", i, got[i].Item, got[i].Envelope)
		}
		var back reportv1.Envelope
		if err := proto.Unmarshal(got[i].Envelope, &back); err != nil {
			t.Fatalf("envelope item %d does not decode: %v", i, err)
		}
		if !proto.Equal(items[i].GetEnvelope(), &back) {
			t.Errorf("envelope item %d = %v, want %v", i, &back, items[i].GetEnvelope())
		}
	}
	for _, i := range []int{1, 2} {
		if got[i].Envelope != nil || got[i].Item == nil {
			t.Fatalf("item %d: Envelope %x, Item %v; want it decoded", i, got[i].Envelope, got[i].Item)
		}
		if !proto.Equal(got[i].Item.GetRequest(), items[i].GetRequest()) {
			t.Errorf("item %d request = %v, want %v", i, got[i].Item.GetRequest(), items[i].GetRequest())
		}
	}
	// The returned encoding is a copy: it outlives the read transaction
	// and changing it leaves the store as it was.
	got[0].Envelope[len(got[0].Envelope)-1] ^= 0xff
	again, err := s.OutboxWire("GBR", 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	var back reportv1.Envelope
	if err := proto.Unmarshal(again[0].Envelope, &back); err != nil || !proto.Equal(&back, env) {
		t.Errorf("after changing a returned encoding the store gives %v (%v), want %v", &back, err, env)
	}
}

// TestOutboxWireOddItems: values no node writes but that decode (a
// request beside envelopes, an envelope given twice, which protobuf
// merges) are decoded whole, as Outbox reads them, not sent raw.
func TestOutboxWireOddItems(t *testing.T) {
	env := func(title string) []byte {
		b, err := proto.Marshal(&reportv1.Envelope{Portions: []*reportv1.Portion{{Index: 1, Title: title}}})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	req, err := proto.Marshal(&federationv1.DeliverRequest{Item: &federationv1.DeliverRequest_Withdrawal{Withdrawal: &reportv1.Signed{Payload: []byte("w")}}})
	if err != nil {
		t.Fatal(err)
	}
	field := func(b []byte, num protowire.Number, v []byte) []byte {
		b = protowire.AppendTag(b, num, protowire.BytesType)
		return protowire.AppendBytes(b, v)
	}
	for name, v := range map[string][]byte{
		"request then two envelopes": field(field(field(nil, outboxRequest, req), outboxEnvelope, env("a")), outboxEnvelope, env("b")),
		"envelope then request":      field(field(nil, outboxEnvelope, env("a")), outboxRequest, req),
		"two envelopes":              field(field(nil, outboxEnvelope, env("a")), outboxEnvelope, env("b")),
	} {
		t.Run(name, func(t *testing.T) {
			e, err := outboxWireEntry(1, v)
			if err != nil {
				t.Fatal(err)
			}
			want := &storev1.OutboxItem{}
			if err := proto.Unmarshal(v, want); err != nil {
				t.Fatal(err)
			}
			if e.Envelope != nil || !proto.Equal(e.Item, want) {
				t.Errorf("read as Envelope %x, Item %v; want the item decoded: %v", e.Envelope, e.Item, want)
			}
		})
	}
}

// TestOutboxWireCorrupt: an outbox value that is not an item is
// ErrCorrupt, and reading it changes nothing.
func TestOutboxWireCorrupt(t *testing.T) {
	for name, v := range map[string][]byte{
		"truncated tag":    {0x80},
		"truncated length": {0x12, 0x05, 'a'},
		"bad wire type":    {0x0f},
	} {
		t.Run(name, func(t *testing.T) {
			s := openTestStore(t)
			if err := s.Update(t0, func(tx *Tx) error { return tx.Enqueue("GBR", &storev1.OutboxItem{ReportId: "r1"}) }); err != nil {
				t.Fatal(err)
			}
			err := s.rawUpdate(func(tx *bolt.Tx) error {
				return tx.Bucket(bucketOutbox).Bucket([]byte("GBR")).Put(u64(1), v)
			})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.OutboxWire("GBR", 0, 10); !errors.Is(err, ErrCorrupt) {
				t.Errorf("OutboxWire over %x = %v, want ErrCorrupt", v, err)
			}
			if n, err := s.OutboxLen("GBR"); err != nil || n != 1 {
				t.Errorf("OutboxLen after the failed read = %d, %v; want 1", n, err)
			}
		})
	}
}
