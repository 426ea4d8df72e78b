package audit

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	storev1 "github.com/tearline/tearline/proto/tearline/store/v1"
)

// chainValues is a valid chain of n stored values (hash ‖ canonical),
// delivery entries of 3 deliveries each.
func chainValues(t *testing.T, n int) [][]byte {
	t.Helper()
	values := make([][]byte, n)
	prev := Zero
	for i := range values {
		e := deliveries(fmt.Sprintf("GBR/svc-%d", i), 3)
		e.Seq, e.Prev = uint64(i+1), prev
		c, err := Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		values[i], prev = Value(c), Hash(c)
	}
	return values
}

func check(values [][]byte) *Fault {
	c := NewChain()
	for i, v := range values {
		if f := c.AddValue(uint64(i+1), v); f != nil {
			return f
		}
	}
	return nil
}

// encodeValue is the stored value of e, as the store writes it.
func encodeValue(t *testing.T, e *storev1.AuditEntry) []byte {
	t.Helper()
	c, err := Encode(e)
	if err != nil {
		t.Fatal(err)
	}
	return Value(c)
}

// The chain check finds each kind of alteration at the entry altered (or,
// for an entry rewritten with a matching stored hash, at the next one,
// whose prev no longer matches), reading only the entries' links.
func TestChainFindsAlterations(t *testing.T) {
	if f := check(chainValues(t, 5)); f != nil {
		t.Fatalf("a valid chain fails: %v", f)
	}
	cases := []struct {
		name   string
		alter  func(vs [][]byte)
		seq    uint64
		reason string
	}{
		{"a byte flipped", func(vs [][]byte) { vs[2][len(vs[2])-1] ^= 1 }, 3, "do not match its stored hash"},
		{"truncated", func(vs [][]byte) { vs[2] = vs[2][:10] }, 3, "truncated"},
		{"rewritten with its hash", func(vs [][]byte) {
			e, _ := Decode(vs[2][HashSize:])
			e.Subject = "GBR/someone-else"
			vs[2] = encodeValue(t, e)
		}, 4, "prev hash is not the hash of entry 3"},
		{"garbage with its hash", func(vs [][]byte) { vs[2] = Value([]byte{0x0a, 0xff}) }, 3, "does not decode"},
		{"another entry's seq", func(vs [][]byte) {
			e, _ := Decode(vs[2][HashSize:])
			e.Seq = 9
			vs[2] = encodeValue(t, e)
		}, 3, "is entry 9"},
		{"prev altered", func(vs [][]byte) {
			e, _ := Decode(vs[2][HashSize:])
			e.Prev = bytes.Repeat([]byte{7}, HashSize)
			vs[2] = encodeValue(t, e)
		}, 3, "prev hash is not the hash of entry 2"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			vs := chainValues(t, 5)
			tc.alter(vs)
			f := check(vs)
			if f == nil || f.Seq != tc.seq || !strings.Contains(f.Reason, tc.reason) {
				t.Fatalf("fault %v, want at entry %d: %q", f, tc.seq, tc.reason)
			}
		})
	}
}

// links reads seq and prev as proto.Unmarshal does: the last occurrence
// wins, a field of another wire type is skipped, malformed bytes fail.
func TestLinksAsUnmarshal(t *testing.T) {
	prev := bytes.Repeat([]byte{1}, HashSize)
	other := bytes.Repeat([]byte{2}, HashSize)
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, 4)
	b = protowire.AppendTag(b, 3, protowire.BytesType)
	b = protowire.AppendBytes(b, other)
	b = protowire.AppendTag(b, 4, protowire.BytesType)
	b = protowire.AppendString(b, "deliveries")
	b = protowire.AppendTag(b, 1, protowire.Fixed64Type) // wrong type: unknown
	b = protowire.AppendFixed64(b, 99)
	b = protowire.AppendTag(b, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, 5)
	b = protowire.AppendTag(b, 3, protowire.BytesType)
	b = protowire.AppendBytes(b, prev)
	seq, got, ok := links(b)
	e, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if !ok || seq != e.GetSeq() || !bytes.Equal(got, e.GetPrev()) || seq != 5 || !bytes.Equal(got, prev) {
		t.Fatalf("links = %d, %x, %v; Decode has seq %d prev %x", seq, got, ok, e.GetSeq(), e.GetPrev())
	}
	for _, bad := range [][]byte{{0x08}, {0x1a, 0x05, 1}, {0xff}} {
		if _, _, ok := links(bad); ok {
			t.Errorf("links(%x) ok, want malformed", bad)
		}
		if _, err := Decode(bad); err == nil {
			t.Errorf("Decode(%x) succeeds, so links should too", bad)
		}
	}
}
