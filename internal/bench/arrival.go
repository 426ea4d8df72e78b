package bench

import (
	"fmt"
	"slices"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"

	clientv1 "github.com/tearline/tearline/proto/tearline/client/v1"
)

// The benchmark's subscribers run in the benchmark's process, on the cores
// the nodes under test use; in the fan-out phase 1,000 of them take about
// as much CPU as the node serving them. They receive every byte of every
// delivery (TLS, HTTP/2 framing), but decode only what they read: the
// cursor, the report's id and its first portion's title (arrivalCodec).
// A real subscriber runs elsewhere and decodes the rest on its own CPU.

// arrivalCodec is the proto codec, except that it decodes a
// SubscribeResponse only in part (decodeArrival). The content subtype
// stays "proto": the node sees an ordinary call.
type arrivalCodec struct {
	proto encoding.CodecV2
	// first, if set, receives a copy of the first SubscribeResponse's
	// bytes.
	first *atomic.Pointer[[]byte]
}

// keepingFirst is c, keeping a copy of the first response it decodes in
// first.
func (c arrivalCodec) keepingFirst(first *atomic.Pointer[[]byte]) arrivalCodec {
	c.first = first
	return c
}

func (c arrivalCodec) Name() string { return c.proto.Name() }

func (c arrivalCodec) Marshal(v any) (mem.BufferSlice, error) { return c.proto.Marshal(v) }

func (c arrivalCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(*clientv1.SubscribeResponse)
	if !ok {
		return c.proto.Unmarshal(data, v)
	}
	var b []byte
	if len(data) == 1 {
		// Read in place: what decodeArrival keeps (strings) it copies.
		b = data[0].ReadOnlyData()
	} else {
		b = data.Materialize()
	}
	if c.first != nil && c.first.Load() == nil {
		kept := slices.Clone(b)
		c.first.CompareAndSwap(nil, &kept)
	}
	return decodeArrival(b, m)
}

// arrivals is the call option that makes a Subscribe call's responses
// decode in part.
var arrivals = grpc.ForceCodecV2(partial)

var partial = arrivalCodec{proto: encoding.GetCodecV2("proto")}

// SubscribeResponse, ReportView and PortionView field numbers
// (proto/tearline/client/v1/client.proto).
const (
	fieldCursor      = 1 // SubscribeResponse.cursor
	fieldReport      = 2 // SubscribeResponse.report
	fieldViewID      = 1 // ReportView.id
	fieldViewPortion = 8 // ReportView.portions
	fieldTitle       = 7 // PortionView.title
)

// decodeArrival sets m's cursor, its report's id and the title of the
// report's first portion from the wire form b, skipping every other field.
func decodeArrival(b []byte, m *clientv1.SubscribeResponse) error {
	m.Reset()
	return eachField(b, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		switch {
		case num == fieldCursor && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			m.Cursor = v
			return n, nil
		case num == fieldReport && typ == protowire.BytesType:
			m.Report = &clientv1.ReportView{}
			return nested(b, func(v []byte) error { return decodeView(v, m.Report) })
		}
		return protowire.ConsumeFieldValue(num, typ, b), nil
	})
}

func decodeView(b []byte, v *clientv1.ReportView) error {
	return eachField(b, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		switch {
		case num == fieldViewID && typ == protowire.BytesType:
			s, n := protowire.ConsumeString(b)
			v.Id = s
			return n, nil
		case num == fieldViewPortion && typ == protowire.BytesType && len(v.Portions) == 0:
			pv := &clientv1.PortionView{}
			v.Portions = append(v.Portions, pv)
			return nested(b, func(p []byte) error { return decodeTitle(p, pv) })
		}
		return protowire.ConsumeFieldValue(num, typ, b), nil
	})
}

func decodeTitle(b []byte, pv *clientv1.PortionView) error {
	return eachField(b, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		if num == fieldTitle && typ == protowire.BytesType {
			s, n := protowire.ConsumeString(b)
			pv.Title = s
			return n, nil
		}
		return protowire.ConsumeFieldValue(num, typ, b), nil
	})
}

// nested consumes the length-delimited value at the start of b and hands
// the message it holds to decode; it returns the value's length, as
// eachField's value does.
func nested(b []byte, decode func([]byte) error) (int, error) {
	v, n := protowire.ConsumeBytes(b)
	if n < 0 {
		return n, nil
	}
	return n, decode(v)
}

// eachField calls value for each field of the message b with the bytes
// after its tag; value returns the length of the field's value (negative:
// a protowire error).
func eachField(b []byte, value func(protowire.Number, protowire.Type, []byte) (int, error)) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("bench: subscription response: %w", protowire.ParseError(n))
		}
		b = b[n:]
		n, err := value(num, typ, b)
		if err != nil {
			return err
		}
		if n < 0 {
			return fmt.Errorf("bench: subscription response: %w", protowire.ParseError(n))
		}
		b = b[n:]
	}
	return nil
}
