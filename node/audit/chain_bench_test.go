package audit

import (
	"fmt"
	"testing"
)

// BenchmarkChainAddValue checks a chain of delivery entries as a
// checkpoint's check of the log's tail does: 500 deliveries an entry, as a
// fan-out commit records them for one subscriber.
func BenchmarkChainAddValue(b *testing.B) {
	const n = 64
	values := make([][]byte, n)
	prev := Zero
	for i := range values {
		e := deliveries(fmt.Sprintf("GBR/svc-%04d", i), 500)
		for j, d := range e.Deliveries {
			d.ReportId = fmt.Sprintf("0190a000-0000-7000-8000-%012d", j)
			d.Portions = []uint32{0}
			d.EventSeq = uint64(i*500 + j)
		}
		e.Seq, e.Prev = uint64(i+1), prev
		canonical, err := Encode(e)
		if err != nil {
			b.Fatal(err)
		}
		values[i], prev = Value(canonical), Hash(canonical)
	}
	var size int64
	for _, v := range values {
		size += int64(len(v))
	}
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		c := NewChain()
		for i, v := range values {
			if f := c.AddValue(uint64(i+1), v); f != nil {
				b.Fatal(f)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/entry")
}
