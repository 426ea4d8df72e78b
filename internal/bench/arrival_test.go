package bench

import (
	"strings"
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	clientv1 "github.com/tearline/tearline/proto/tearline/client/v1"
	reportv1 "github.com/tearline/tearline/proto/tearline/report/v1"
)

// TestDecodeArrival: a SubscribeResponse decoded in part has the cursor,
// report id and first portion's title of the full decoding, whatever the
// other fields hold; a truncated message is an error.
func TestDecodeArrival(t *testing.T) {
	full := &clientv1.SubscribeResponse{
		Cursor: 1<<40 + 7,
		Report: &clientv1.ReportView{
			Id: "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", Originator: "USA", Created: timestamppb.Now(),
			Topics: []string{"maritime", "cyber"}, Route: []*reportv1.RouteEntry{{Via: "GBR", To: "CAN"}},
			SignatureVerified: true, Signer: "spiffe://usa.tearline.test/party/USA/node/dc",
			Portions: []*clientv1.PortionView{
				{Index: 1, Banner: "SECRET//REL TO USA, GBR", Topics: []string{"maritime"}, Verified: true, ContentType: "text/plain", Title: "T-41", Body: []byte(strings.Repeat("x", 2048)), Digest: make([]byte, 32)},
				{Index: 2, Title: "second", Withheld: true, Digest: make([]byte, 32)},
			},
			Hops:       []*clientv1.HopView{{From: "USA", To: "GBR"}},
			Withdrawal: &clientv1.WithdrawalView{Id: "w", Action: "withdraw", Reason: "r"},
		},
	}
	wire, err := proto.Marshal(full)
	if err != nil {
		t.Fatal(err)
	}
	codec := partial
	var got clientv1.SubscribeResponse
	if err := codec.Unmarshal(mem.BufferSlice{mem.SliceBuffer(wire)}, &got); err != nil {
		t.Fatal(err)
	}
	if got.GetCursor() != full.GetCursor() || got.GetReport().GetId() != full.GetReport().GetId() {
		t.Errorf("cursor %d, id %q; want %d, %q", got.GetCursor(), got.GetReport().GetId(), full.GetCursor(), full.GetReport().GetId())
	}
	if i := index(got.GetReport(), "T"); i != 41 {
		t.Errorf("index of the partly decoded report = %d, want 41", i)
	}
	if n := len(got.GetReport().GetPortions()); n != 1 || got.GetReport().GetPortions()[0].GetBody() != nil {
		t.Errorf("decoded %d portions (first body %d bytes); want only the first portion's title", n, len(got.GetReport().GetPortions()[0].GetBody()))
	}
	for _, cut := range []int{1, len(wire) / 2, len(wire) - 1} {
		if err := codec.Unmarshal(mem.BufferSlice{mem.SliceBuffer(wire[:cut])}, &got); err == nil {
			t.Errorf("a message cut to %d of %d bytes decoded without error", cut, len(wire))
		}
	}
	// Other messages decode in full, as with the proto codec.
	req, err := proto.Marshal(&clientv1.SubscribeRequest{After: 9})
	if err != nil {
		t.Fatal(err)
	}
	var r clientv1.SubscribeRequest
	if err := codec.Unmarshal(mem.BufferSlice{mem.SliceBuffer(req)}, &r); err != nil || r.GetAfter() != 9 {
		t.Errorf("SubscribeRequest through the codec: after %d, %v", r.GetAfter(), err)
	}
}

// BenchmarkDecodeDelivery compares decoding a 2 KiB delivery in full (the
// proto codec) with the benchmark subscribers' partial decoding.
func BenchmarkDecodeDelivery(b *testing.B) {
	wire, err := proto.Marshal(&clientv1.SubscribeResponse{Cursor: 12345, Report: &clientv1.ReportView{
		Id: "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", Originator: "USA", Created: timestamppb.Now(), Topics: []string{"maritime"},
		SignatureVerified: true, Signer: "spiffe://usa.tearline.test/party/USA/node/dc",
		Portions: []*clientv1.PortionView{{Index: 1, Banner: "SECRET//REL TO USA, GBR", Verified: true, ContentType: "text/plain", Title: "T-1", Body: make([]byte, 2048), Digest: make([]byte, 32)}},
		Hops:     []*clientv1.HopView{{From: "USA", To: "GBR", Sent: timestamppb.Now(), Signer: "spiffe://usa.tearline.test/party/USA/node/dc"}},
	}})
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		codec interface {
			Unmarshal(mem.BufferSlice, any) error
		}
	}{{"full", partial.proto}, {"partial", partial}} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(wire)))
			for b.Loop() {
				var m clientv1.SubscribeResponse
				if err := c.codec.Unmarshal(mem.BufferSlice{mem.SliceBuffer(wire)}, &m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
