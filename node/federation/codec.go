package federation

import (
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
)

// Field numbers of federationv1.DeliverRequest.
const (
	requestSeq      = 1
	requestEnvelope = 2
)

// encodedRequest is a DeliverRequest carrying an envelope, already encoded:
// head holds its seq and the envelope field's tag and length, envelope the
// envelope's encoding as the outbox stored it. A link sends it through
// codec without decoding the envelope and encoding it again.
type encodedRequest struct {
	head     []byte
	envelope []byte
}

// requestHead encodes a DeliverRequest's seq and the start of its envelope
// field, whose n bytes follow.
func requestHead(seq uint64, n int) []byte {
	b := make([]byte, 0, 2+protowire.SizeVarint(seq)+protowire.SizeVarint(uint64(n)))
	b = protowire.AppendTag(b, requestSeq, protowire.VarintType)
	b = protowire.AppendVarint(b, seq)
	b = protowire.AppendTag(b, requestEnvelope, protowire.BytesType)
	return protowire.AppendVarint(b, uint64(n))
}

// linkCodec is gRPC's proto codec, which also sends an encodedRequest as
// it is. Its name is the proto codec's, so the partner decodes what it
// sends as any other DeliverRequest.
type linkCodec struct{ encoding.CodecV2 }

func (c linkCodec) Marshal(v any) (mem.BufferSlice, error) {
	if r, ok := v.(*encodedRequest); ok {
		return mem.BufferSlice{mem.SliceBuffer(r.head), mem.SliceBuffer(r.envelope)}, nil
	}
	return c.CodecV2.Marshal(v)
}

var codec = linkCodec{encoding.GetCodecV2("proto")}
