package report

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/tearline/tearline/internal/lru"
	reportv1 "github.com/tearline/tearline/proto/tearline/report/v1"
)

// Batched signatures (DESIGN §4 allows one signature over the Merkle root
// of a batch, each statement carrying its inclusion proof). A node signs
// many statements at once under load: the statements of a batch are the
// leaves of a Merkle tree hashed as in RFC 9162 §2.1, leaf i being
// SHA-256(0x00 ‖ signingInput(kind_i, payload_i)), and the signature is
// over signingInput("batch", root ‖ size). Each statement carries the
// signature, the chain and its proof (Signed.batch), so it verifies on its
// own, anywhere, exactly as strongly as a statement signed alone: the
// domain-separated input of the statement is bound into the signed root.
// A batch of one is signed as a single statement.

// KindBatch is the signing domain of batch roots; no statement has it.
const KindBatch = "batch"

// MaxBatch is the most statements one signature covers.
const MaxBatch = 1024

// maxProofLen bounds an inclusion path: ceil(log2(MaxBatch)).
const maxProofLen = 10

func leafHash(input []byte) [sha256.Size]byte {
	h := sha256.New()
	h.Write([]byte{0})
	h.Write(input)
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

func nodeHash(l, r [sha256.Size]byte) [sha256.Size]byte {
	h := sha256.New()
	h.Write([]byte{1})
	h.Write(l[:])
	h.Write(r[:])
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

// splitPoint is the largest power of two smaller than n (n > 1).
func splitPoint(n int) int {
	k := 1
	for k<<1 < n {
		k <<= 1
	}
	return k
}

// merkleRoot is RFC 9162's MTH over the leaf hashes.
func merkleRoot(leaves [][sha256.Size]byte) [sha256.Size]byte {
	if len(leaves) == 1 {
		return leaves[0]
	}
	k := splitPoint(len(leaves))
	return nodeHash(merkleRoot(leaves[:k]), merkleRoot(leaves[k:]))
}

// merklePath is RFC 9162's PATH(m, D[n]): the siblings from leaf m up.
func merklePath(m int, leaves [][sha256.Size]byte) [][]byte {
	if len(leaves) <= 1 {
		return nil
	}
	k := splitPoint(len(leaves))
	if m < k {
		r := merkleRoot(leaves[k:])
		return append(merklePath(m, leaves[:k]), r[:])
	}
	l := merkleRoot(leaves[:k])
	return append(merklePath(m-k, leaves[k:]), l[:])
}

// rootFromProof recomputes the root from a leaf and its proof (RFC 9162
// §2.1.3.2); it fails if the proof does not fit the index and size.
func rootFromProof(leaf [sha256.Size]byte, p *reportv1.MerkleProof) ([sha256.Size]byte, error) {
	var none [sha256.Size]byte
	size, index := uint64(p.GetSize()), uint64(p.GetIndex())
	if size < 2 || size > MaxBatch || index >= size || len(p.GetPath()) > maxProofLen {
		return none, fmt.Errorf("%w: batch proof for leaf %d of %d with %d hashes is malformed", ErrSignature, index, size, len(p.GetPath()))
	}
	fn, sn, r := index, size-1, leaf
	for _, sib := range p.GetPath() {
		if len(sib) != sha256.Size || sn == 0 {
			return none, fmt.Errorf("%w: batch proof does not fit its tree", ErrSignature)
		}
		s := [sha256.Size]byte(sib)
		if fn&1 == 1 || fn == sn {
			r = nodeHash(s, r)
			for fn&1 == 0 && fn != 0 {
				fn >>= 1
				sn >>= 1
			}
		} else {
			r = nodeHash(r, s)
		}
		fn >>= 1
		sn >>= 1
	}
	if sn != 0 {
		return none, fmt.Errorf("%w: batch proof is too short for its tree", ErrSignature)
	}
	return r, nil
}

// batchInput is what a batch signature covers.
func batchInput(root [sha256.Size]byte, size uint32) []byte {
	var b [sha256.Size + 4]byte
	copy(b[:], root[:])
	binary.BigEndian.PutUint32(b[sha256.Size:], size)
	return signingInput(KindBatch, b[:])
}

// signedInput is the message sd's signature must verify over: the
// statement's own domain-separated input, or the root of its batch.
func signedInput(kind string, sd *reportv1.Signed) ([]byte, error) {
	in := signingInput(kind, sd.GetPayload())
	p := sd.GetBatch()
	if p == nil {
		return in, nil
	}
	root, err := rootFromProof(leafHash(in), p)
	if err != nil {
		return nil, err
	}
	return batchInput(root, p.GetSize()), nil
}

// verifiedRoots remembers batch signatures that verified: every statement
// of a batch shares one (key, root, signature), and ed25519 verification
// is a pure function of them, so it is done once per batch. Single
// statements are not remembered.
var verifiedRoots = lru.New[[sha256.Size]byte, bool](4096)

func verifySignature(pub ed25519.PublicKey, msg, sig []byte, batched bool) bool {
	if !batched {
		return ed25519.Verify(pub, msg, sig)
	}
	h := sha256.New()
	for _, b := range [][]byte{pub, msg, sig} {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	var k [sha256.Size]byte
	h.Sum(k[:0])
	if _, ok := verifiedRoots.Get(k); ok {
		return true
	}
	if !ed25519.Verify(pub, msg, sig) {
		return false
	}
	verifiedRoots.Put(k, true)
	return true
}

// BatchSigner signs statements in batches: a statement to sign while
// another batch is being signed waits for the next batch, which one of
// the waiting callers signs for all. A caller that finds it idle signs
// its statement alone at once, so batching adds no delay. It is a Signer
// (Sign signs one message alone) and SignStatement uses its batches.
type BatchSigner struct {
	s Signer

	mu      sync.Mutex
	busy    bool
	pending []*batchCall
}

type batchCall struct {
	kind    string
	payload []byte
	out     *reportv1.Signed
	// lead receives false when out is set, true when the caller must sign
	// the next batch.
	lead chan bool
}

// NewBatchSigner wraps s.
func NewBatchSigner(s Signer) *BatchSigner { return &BatchSigner{s: s} }

// Sign signs one message alone with the wrapped signer.
func (b *BatchSigner) Sign(msg []byte) ([]byte, [][]byte) { return b.s.Sign(msg) }

// signBatched signs payload as kind in the next batch.
func (b *BatchSigner) signBatched(kind string, payload []byte) *reportv1.Signed {
	c := &batchCall{kind: kind, payload: payload, lead: make(chan bool, 1)}
	b.mu.Lock()
	b.pending = append(b.pending, c)
	if b.busy {
		b.mu.Unlock()
		if lead := <-c.lead; !lead {
			return c.out
		}
	} else {
		b.busy = true
		b.mu.Unlock()
	}
	// This caller signs what is pending (its own statement among it).
	b.mu.Lock()
	n := min(len(b.pending), MaxBatch)
	batch := b.pending[:n:n]
	b.pending = b.pending[n:]
	b.mu.Unlock()
	b.signAll(batch)
	for _, o := range batch {
		if o != c {
			o.lead <- false
		}
	}
	b.mu.Lock()
	if len(b.pending) > 0 {
		next := b.pending[0]
		b.mu.Unlock()
		next.lead <- true
	} else {
		b.busy = false
		b.mu.Unlock()
	}
	return c.out
}

func (b *BatchSigner) signAll(batch []*batchCall) {
	if len(batch) == 1 {
		c := batch[0]
		sig, chain := b.s.Sign(signingInput(c.kind, c.payload))
		c.out = &reportv1.Signed{Payload: c.payload, Signature: sig, CertChain: chain, Kind: c.kind}
		return
	}
	leaves := make([][sha256.Size]byte, len(batch))
	for i, c := range batch {
		leaves[i] = leafHash(signingInput(c.kind, c.payload))
	}
	size := uint32(len(batch))
	sig, chain := b.s.Sign(batchInput(merkleRoot(leaves), size))
	for i, c := range batch {
		c.out = &reportv1.Signed{
			Payload: c.payload, Signature: sig, CertChain: chain, Kind: c.kind,
			Batch: &reportv1.MerkleProof{Index: uint32(i), Size: size, Path: merklePath(i, leaves)},
		}
	}
}
