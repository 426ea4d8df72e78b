package gateway

import (
	"testing"

	"google.golang.org/grpc/encoding"
)

// Subscriptions send one encoding of a delivery on many streams
// (preparedMemo). That is right only while the server compresses nothing:
// a compressor linked into the binary would let a client ask for
// compressed responses on its stream.
func TestNoCompressorLinked(t *testing.T) {
	for _, name := range []string{"gzip", "deflate", "snappy", "zstd", "identity"} {
		if encoding.GetCompressor(name) != nil {
			t.Errorf("compressor %q is linked in: preparedMemo must then key its encodings by the stream's compressor", name)
		}
	}
}
