package node

import (
	"crypto/sha256"
	"slices"
	"weak"

	"github.com/tearline/tearline/internal/lru"
	"github.com/tearline/tearline/node/report"
	reportv1 "github.com/tearline/tearline/proto/tearline/report/v1"
	storev1 "github.com/tearline/tearline/proto/tearline/store/v1"
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

// receivedChecks remembers, for each report this node has just received
// and stored as new, what its receipt check verified: the header, each hop
// and every portion. The store hands its readers that very report
// (store.Tx.PutReport's r is not decoded again), so showing it to a
// subscriber need not verify it again, nor hash its statements to find
// them in the verify cache. A report read back from the file, or rewritten
// since, is another object and is not found here; View verifies it as
// before. Once its transaction's function returns, a stored report is not
// modified (store.Tx.PutReport, store.Feed), nor are the received messages
// it shares with the checked envelope; View also checks that the report
// still holds the very header, hops and portions that were checked.
//
// Keys are weak: an entry does not keep its report alive, and a report
// collected cannot be taken for a later one at its address. An entry does
// hold the report's messages; the memo keeps the last maxViews to twice
// that received, much as the store's cache of decoded reports does.
type receivedChecks struct {
	m *lru.Map[weak.Pointer[storev1.StoredReport], *receivedCheck]
}

// receivedCheck is what a receipt check verified of a stored report: its
// header statement (as v), its hop statements in the stored envelope's
// order (as hops), and its portions against the header.
type receivedCheck struct {
	header   *reportv1.Signed
	v        *report.Verified
	hopSDs   []*reportv1.Signed
	hops     []*report.VerifiedHop
	portions []*reportv1.Portion
}

func newReceivedChecks() receivedChecks {
	return receivedChecks{lru.New[weak.Pointer[storev1.StoredReport], *receivedCheck](maxViews)}
}

// put records that r, a report new to this node made from env alone, was
// checked: v and hops are env's header and hops as check verified them.
// It records nothing if r's header, any of its hops or any of its portions
// is not one of env's (View shows no other part of a report as verified).
func (rc receivedChecks) put(r *storev1.StoredReport, env *reportv1.Envelope, v *report.Verified, hops []*report.VerifiedHop) {
	held := r.GetEnvelope()
	if held.GetHeader() != env.GetHeader() || len(hops) != len(env.GetHops()) {
		return
	}
	for _, p := range held.GetPortions() {
		if !slices.Contains(env.GetPortions(), p) {
			return
		}
	}
	c := &receivedCheck{
		header: held.GetHeader(), v: v,
		hopSDs:   slices.Clone(held.GetHops()),
		hops:     make([]*report.VerifiedHop, len(held.GetHops())),
		portions: slices.Clone(held.GetPortions()),
	}
	for i, sh := range held.GetHops() {
		j := slices.Index(env.GetHops(), sh)
		if j < 0 {
			return
		}
		c.hops[i] = hops[j]
	}
	rc.m.Put(weak.Make(r), c)
}

// get returns what the receipt check verified of r, or nil when r is not a
// report just received or no longer holds exactly what was checked.
func (rc receivedChecks) get(r *storev1.StoredReport) *receivedCheck {
	c, ok := rc.m.Get(weak.Make(r))
	if !ok {
		return nil
	}
	env := r.GetEnvelope()
	if env.GetHeader() != c.header || !slices.Equal(env.GetHops(), c.hopSDs) || !slices.Equal(env.GetPortions(), c.portions) {
		return nil
	}
	return c
}
