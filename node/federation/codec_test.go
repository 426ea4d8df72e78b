package federation

import (
	"math"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tearline/tearline/node/store"
	federationv1 "github.com/tearline/tearline/proto/tearline/federation/v1"
	reportv1 "github.com/tearline/tearline/proto/tearline/report/v1"
	storev1 "github.com/tearline/tearline/proto/tearline/store/v1"
)

// TestOutboxRequests: what a link sends for each kind of outbox item, read
// from a real store and encoded by the link's codec, decodes to the
// DeliverRequest the item stands for: the envelope sent as stored, a
// request with the item's seq, and an item holding neither as an empty
// envelope (as before envelopes were sent encoded).
func TestOutboxRequests(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "node.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	env := &reportv1.Envelope{
		Header:      &reportv1.Signed{Payload: []byte("header"), Signature: []byte("sig"), CertChain: [][]byte{[]byte("cert")}, Kind: "header"},
		Portions:    []*reportv1.Portion{{Index: 1, Title: "t", Body: make([]byte, 2048)}, {Index: 3, Body: []byte("b")}},
		Hops:        []*reportv1.Signed{{Payload: []byte("hop")}},
		Authorities: []*reportv1.Signed{{Payload: []byte("consent")}},
	}
	consent := &federationv1.DeliverRequest{Item: &federationv1.DeliverRequest_ConsentRequest{ConsentRequest: &federationv1.ConsentRequest{Id: "c1", ReportId: "r2", To: "CAN"}}}
	items := []*storev1.OutboxItem{
		{ReportId: "r1", Envelope: env},
		{ReportId: "r2", Request: consent},
		{ReportId: "r3"},
	}
	err = st.Update(time.Now(), func(tx *store.Tx) error {
		for _, it := range items {
			if err := tx.Enqueue("GBR", it); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	entries, err := st.OutboxWire("GBR", 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		req  *federationv1.DeliverRequest
		kind string
	}{
		{&federationv1.DeliverRequest{Seq: 1, Item: &federationv1.DeliverRequest_Envelope{Envelope: env}}, ""},
		{&federationv1.DeliverRequest{Seq: 2, Item: consent.GetItem()}, "consent-request"},
		{&federationv1.DeliverRequest{Seq: 3, Item: &federationv1.DeliverRequest_Envelope{Envelope: &reportv1.Envelope{}}}, ""},
	}
	if len(entries) != len(want) {
		t.Fatalf("%d entries, want %d", len(entries), len(want))
	}
	for i, e := range entries {
		msg, kind := outboxRequest(e)
		if kind != want[i].kind {
			t.Errorf("item %d kind %q, want %q", i, kind, want[i].kind)
		}
		if _, encoded := msg.(*encodedRequest); encoded != (i == 0) {
			t.Errorf("item %d sent as %T", i, msg)
		}
		got := decodeSent(t, msg)
		if !proto.Equal(got, want[i].req) {
			t.Errorf("item %d sent %v, want %v", i, got, want[i].req)
		}
	}
}

// TestRequestHead: the seq and the envelope's length at their varint
// boundaries.
func TestRequestHead(t *testing.T) {
	for _, seq := range []uint64{1, 127, 128, 1 << 32, math.MaxUint64} {
		for _, n := range []int{0, 1, 127, 128, 1 << 20} {
			env := &reportv1.Envelope{Portions: []*reportv1.Portion{{Body: make([]byte, n)}}}
			b, err := proto.Marshal(env)
			if err != nil {
				t.Fatal(err)
			}
			got := decodeSent(t, &encodedRequest{head: requestHead(seq, len(b)), envelope: b})
			want := &federationv1.DeliverRequest{Seq: seq, Item: &federationv1.DeliverRequest_Envelope{Envelope: env}}
			if !proto.Equal(got, want) {
				t.Errorf("seq %d, body %d: decoded seq %d, body %d", seq, n, got.GetSeq(), len(got.GetEnvelope().GetPortions()[0].GetBody()))
			}
		}
	}
}

// decodeSent encodes msg with the link's codec and decodes it as the
// partner does.
func decodeSent(t *testing.T, msg any) *federationv1.DeliverRequest {
	t.Helper()
	bs, err := codec.Marshal(msg)
	if err != nil {
		t.Fatalf("Marshal(%T): %v", msg, err)
	}
	got := &federationv1.DeliverRequest{}
	if err := proto.Unmarshal(bs.Materialize(), got); err != nil {
		t.Fatalf("sent %T does not decode: %v", msg, err)
	}
	return got
}
