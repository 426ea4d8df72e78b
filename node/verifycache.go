package node

import (
	"crypto/sha256"
	"sync"

	"github.com/tearline/tearline/node/report"
	reportv1 "github.com/tearline/tearline/proto/tearline/report/v1"
)

// verifyCache remembers signed statements this node has verified for
// showing and delivering held reports, so that fanning one report out to
// a thousand subscribers does not verify its signatures a thousand times
// (DESIGN §4: a verifier that has checked a statement need not check it
// again). The key covers the whole statement: payload, signature and
// chain. Receipt never uses the cache: every envelope that arrives is
// verified in full.
type verifyCache struct {
	mu      sync.Mutex
	headers map[[32]byte]*report.Verified
	hops    map[[32]byte]*report.VerifiedHop
}

const verifyCacheSize = 4096

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
	c.mu.Lock()
	if got, ok := c.headers[k]; ok {
		c.mu.Unlock()
		return got, nil
	}
	c.mu.Unlock()
	got, err := report.OpenHeader(sd, v)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.headers == nil || len(c.headers) >= verifyCacheSize {
		c.headers = make(map[[32]byte]*report.Verified)
	}
	c.headers[k] = got
	c.mu.Unlock()
	return got, nil
}

func (c *verifyCache) hop(sd *reportv1.Signed, headerDigest []byte, reportID string, v report.Verifier) (*report.VerifiedHop, error) {
	k := statementKey(sd, append(append([]byte{}, headerDigest...), reportID...))
	c.mu.Lock()
	if got, ok := c.hops[k]; ok {
		c.mu.Unlock()
		return got, nil
	}
	c.mu.Unlock()
	got, err := report.OpenHop(sd, headerDigest, reportID, v)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.hops == nil || len(c.hops) >= verifyCacheSize {
		c.hops = make(map[[32]byte]*report.VerifiedHop)
	}
	c.hops[k] = got
	c.mu.Unlock()
	return got, nil
}
