package node

import (
	"crypto/sha256"

	"github.com/tearline/tearline/internal/lru"
	"github.com/tearline/tearline/node/report"
	reportv1 "github.com/tearline/tearline/proto/tearline/report/v1"
)

// verifyCache remembers signed statements this node has verified for
// showing and delivering held reports, so that fanning one report out to
// a thousand subscribers does not verify its signatures a thousand times
// (DESIGN §4: a verifier that has checked a statement need not check it
// again). The key covers the whole statement: payload, signature and
// chain. Receipt never answers from the cache: every envelope that arrives
// is verified in full, and what verified is remembered for showing.
type verifyCache struct {
	headers *lru.Map[[32]byte, *report.Verified]
	hops    *lru.Map[[32]byte, *report.VerifiedHop]
}

// verifyCacheSize is how many statements of each kind a generation holds
// (the cache holds up to two): enough for subscribers reading well behind
// the reports arriving. With 32,768 the node held every header and hop of
// a benchmark's throughput phase, ~50 MiB of heap it did not use again
// (BENCHMARKS.md, issue 7); the catch-up figure is the same at 8,192.
const verifyCacheSize = 8192

func newVerifyCache() verifyCache {
	return verifyCache{
		headers: lru.New[[32]byte, *report.Verified](verifyCacheSize),
		hops:    lru.New[[32]byte, *report.VerifiedHop](verifyCacheSize),
	}
}

func statementKey(sd *reportv1.Signed, extra []byte) [32]byte {
	h := sha256.New()
	for _, b := range [][]byte{sd.GetPayload(), sd.GetSignature(), extra} {
		var n [8]byte
		for i, l := 0, uint64(len(b)); i < 8; i++ {
			n[i] = byte(l >> (8 * i))
		}
		h.Write(n[:])
		h.Write(b)
	}
	for _, c := range sd.GetCertChain() {
		h.Write(c)
	}
	var k [32]byte
	h.Sum(k[:0])
	return k
}

func (c *verifyCache) header(sd *reportv1.Signed, v report.Verifier) (*report.Verified, error) {
	k := statementKey(sd, nil)
	got, ok := c.headers.Get(k)
	if ok {
		return got, nil
	}
	got, err := report.OpenHeader(sd, v)
	if err != nil {
		return nil, err
	}
	c.putHeader(sd, got)
	return got, nil
}

// putHeader remembers a header that verified.
func (c *verifyCache) putHeader(sd *reportv1.Signed, got *report.Verified) {
	c.headers.Put(statementKey(sd, nil), got)
}

func hopKey(sd *reportv1.Signed, headerDigest []byte, reportID string) [32]byte {
	return statementKey(sd, append(append([]byte{}, headerDigest...), reportID...))
}

func (c *verifyCache) hop(sd *reportv1.Signed, headerDigest []byte, reportID string, v report.Verifier) (*report.VerifiedHop, error) {
	got, ok := c.hops.Get(hopKey(sd, headerDigest, reportID))
	if ok {
		return got, nil
	}
	got, err := report.OpenHop(sd, headerDigest, reportID, v)
	if err != nil {
		return nil, err
	}
	c.putHop(sd, headerDigest, reportID, got)
	return got, nil
}

// putHop remembers a hop that verified.
func (c *verifyCache) putHop(sd *reportv1.Signed, headerDigest []byte, reportID string, got *report.VerifiedHop) {
	c.hops.Put(hopKey(sd, headerDigest, reportID), got)
}
