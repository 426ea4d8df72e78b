package report

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	mrand "math/rand/v2"
	"sync"
	"time"

	"github.com/tearline/tearline/internal/lru"
	reportv1 "github.com/tearline/tearline/proto/tearline/report/v1"
)

// Batched signatures (DESIGN §4 allows one signature over the Merkle root
// of a batch, each statement carrying its inclusion proof). A node signs
// many statements at once under load: the statements of a batch are the
// leaves of a Merkle tree hashed as in RFC 9162 §2.1, leaf i being
// SHA-256(0x02 ‖ salt_i ‖ signingInput(kind_i, payload_i)) with a fresh
// random 16-byte salt_i, placed at random among random leaves that pad the
// tree to size (see minPadded), and the signature is over
// signingInput("batch", root ‖ size). Each statement carries the
// signature, the chain and its proof (Signed.batch, with its salt), so it
// verifies on its own, anywhere, exactly as strongly as a statement signed
// alone: the domain-separated input of the statement is bound into the
// signed root.
// A batch of one is signed as a single statement.
//
// The salt: a proof holds the hashes of other statements of its batch,
// and a statement may be guessable (a hop to another partner: its report,
// its time and a few choices of portions and bases). Unsalted, a holder
// of the proof could test its guesses against those hashes. Proofs made
// before salts (RFC 9162's leaf, SHA-256(0x00 ‖ ...)) still verify.

// KindBatch is the signing domain of batch roots; no statement has it.
const KindBatch = "batch"

// MaxBatch is the most statements one signature covers.
const MaxBatch = 1024

// maxProofLen bounds an inclusion path: ceil(log2(MaxBatch)).
const maxProofLen = 10

// stackInput is the size of the buffers the hashes below build their
// input in: statements up to about this size hash without an allocation
// (a hop or a header is a few hundred bytes); longer ones still hash.
const stackInput = 1024

// leafHash is a statement's leaf: SHA-256(0x00 ‖ signingInput(kind,
// payload)) unsalted (proofs made before salts), SHA-256(0x02 ‖ salt ‖
// signingInput(kind, payload)) salted.
func leafHash(salt []byte, kind string, payload []byte) [sha256.Size]byte {
	var a [stackInput]byte
	b := append(a[:0], 0)
	if len(salt) > 0 {
		b = append(append(a[:0], 2), salt...)
	}
	return sha256.Sum256(appendSigningInput(b, kind, payload))
}

// LeafSaltSize is the size of a batch leaf's salt.
const LeafSaltSize = 16

func nodeHash(l, r [sha256.Size]byte) [sha256.Size]byte {
	var b [1 + 2*sha256.Size]byte
	b[0] = 1
	copy(b[1:], l[:])
	copy(b[1+sha256.Size:], r[:])
	return sha256.Sum256(b[:])
}

// merkleTree is a batch's tree, every level of it from the leaves up:
// level k+1 hashes level k's nodes in pairs, and an odd last node moves up
// unhashed. That is RFC 9162's tree (each subtree split at the largest
// power of two below its size) built from the bottom: n-1 hashes for n
// leaves, and each leaf's path read off the levels.
type merkleTree struct {
	levels [][][sha256.Size]byte
}

func newMerkleTree(leaves [][sha256.Size]byte) *merkleTree {
	t := &merkleTree{levels: [][][sha256.Size]byte{leaves}}
	for l := leaves; len(l) > 1; {
		next := make([][sha256.Size]byte, (len(l)+1)/2)
		for i := range next {
			if 2*i+1 < len(l) {
				next[i] = nodeHash(l[2*i], l[2*i+1])
			} else {
				next[i] = l[2*i]
			}
		}
		t.levels = append(t.levels, next)
		l = next
	}
	return t
}

// root is MTH(D[n]).
func (t *merkleTree) root() [sha256.Size]byte { return t.levels[len(t.levels)-1][0] }

// path is PATH(m, D[n]): leaf m's siblings from the bottom up. Its hashes
// are slices of the tree's levels, shared by the batch's proofs (no one
// writes to a proof's hashes).
func (t *merkleTree) path(m int) [][]byte {
	var p [][]byte
	for _, l := range t.levels[:len(t.levels)-1] {
		if s := m ^ 1; s < len(l) {
			if p == nil {
				p = make([][]byte, 0, len(t.levels)-1)
			}
			p = append(p, l[s][:])
		}
		m >>= 1
	}
	return p
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
	p := sd.GetBatch()
	if p == nil {
		return signingInput(kind, sd.GetPayload()), nil
	}
	salt := p.GetSalt()
	switch len(salt) {
	case 0:
		salt = nil // a proof made before salts
	case LeafSaltSize:
	default:
		return nil, fmt.Errorf("%w: batch proof's salt is %d bytes, not %d", ErrSignature, len(salt), LeafSaltSize)
	}
	root, err := rootFromProof(leafHash(salt, kind, sd.GetPayload()), p)
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
	var a [stackInput]byte
	in := a[:0]
	for _, b := range [][]byte{pub, msg, sig} {
		in = binary.BigEndian.AppendUint64(in, uint64(len(b)))
		in = append(in, b...)
	}
	k := sha256.Sum256(in)
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
// the waiting callers signs for all. It is a Signer (Sign signs one
// message alone) and SignStatement uses its batches.
//
// A caller that finds the signer idle signs at once, unless statements
// have been arriving at Busy per second or more: it then waits Linger
// for others to join its batch. Under light load nothing waits and a
// lone statement is signed alone; under heavy load one signature (and,
// at every receiver, one verification) covers many statements, for at
// most Linger more latency.
type BatchSigner struct {
	s Signer
	// Linger and Busy: see above. NewBatchSigner sets DefaultLinger and
	// DefaultBusy; Linger 0 never waits.
	Linger time.Duration
	Busy   int

	mu      sync.Mutex
	busy    bool
	pending []*batchCall
	// The arrival rate: statements counted in the current window, and in
	// the window before it.
	window       time.Time
	inWindow     int
	lastInWindow int
}

// The defaults of a BatchSigner. 2,000 statements/s is about 1,000
// reports/s (a header and a hop each); at 500 reports/s nothing waits.
const (
	DefaultLinger = time.Millisecond
	DefaultBusy   = 2000
	rateWindow    = 100 * time.Millisecond
)

type batchCall struct {
	sts []Statement
	out []*reportv1.Signed
	// lead receives false when out is set, true when the caller must sign
	// the next batch.
	lead chan bool
}

// NewBatchSigner wraps s.
func NewBatchSigner(s Signer) *BatchSigner {
	return &BatchSigner{s: s, Linger: DefaultLinger, Busy: DefaultBusy}
}

// arrived counts n statements at now and reports whether the rate of the
// last full window reached b.Busy. Called with b.mu held.
func (b *BatchSigner) arrived(now time.Time, n int) bool {
	switch d := now.Sub(b.window); {
	case d >= 2*rateWindow || d < 0:
		b.window, b.inWindow, b.lastInWindow = now, 0, 0
	case d >= rateWindow:
		b.window, b.lastInWindow, b.inWindow = b.window.Add(rateWindow), b.inWindow, 0
	}
	b.inWindow += n
	return b.Linger > 0 && b.lastInWindow*int(time.Second/rateWindow) >= b.Busy
}

// Sign signs one message alone with the wrapped signer.
func (b *BatchSigner) Sign(msg []byte) ([]byte, [][]byte) { return b.s.Sign(msg) }

// signBatched signs sts, in order, in the next batch.
func (b *BatchSigner) signBatched(sts []Statement) []*reportv1.Signed {
	c := &batchCall{sts: sts, lead: make(chan bool, 1)}
	b.mu.Lock()
	b.pending = append(b.pending, c)
	loaded := b.arrived(time.Now(), len(sts))
	if b.busy {
		b.mu.Unlock()
		if lead := <-c.lead; !lead {
			return c.out
		}
	} else {
		b.busy = true
		b.mu.Unlock()
		if loaded {
			// Busy: let the statements arriving meanwhile join this batch.
			time.Sleep(b.Linger)
		}
	}
	// This caller signs what is pending (its own statements first): the
	// calls whose statements fit in MaxBatch, and at least its own.
	b.mu.Lock()
	n, size := 1, len(b.pending[0].sts)
	for n < len(b.pending) && size+len(b.pending[n].sts) <= MaxBatch {
		size += len(b.pending[n].sts)
		n++
	}
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

// signAll signs the statements of batch, MaxBatch at a time (a call may
// bring more), and sets each call's out.
func (b *BatchSigner) signAll(batch []*batchCall) {
	var sts []Statement
	for _, c := range batch {
		sts = append(sts, c.sts...)
	}
	out := make([]*reportv1.Signed, 0, len(sts))
	for len(sts) > 0 {
		k := min(len(sts), MaxBatch)
		out = append(out, b.sign(sts[:k])...)
		sts = sts[k:]
	}
	for _, c := range batch {
		c.out, out = out[:len(c.sts):len(c.sts)], out[len(c.sts):]
	}
}

// sign signs at most MaxBatch statements: one alone, more over their root.
func (b *BatchSigner) sign(sts []Statement) []*reportv1.Signed {
	if len(sts) == 1 {
		return []*reportv1.Signed{signAlone(b.s, sts[0])}
	}
	// The tree: padded with random leaves to a power of two, at least
	// minPadded, and the statements at random places among them.
	size := minPadded
	for size < len(sts) {
		size <<= 1
	}
	var seed [32]byte
	rand.Read(seed[:]) // never fails (crypto/rand)
	places := mrand.New(mrand.NewChaCha8(seed)).Perm(size)[:len(sts)]
	random := make([]byte, sha256.Size*size+LeafSaltSize*len(sts))
	rand.Read(random)
	leaves := make([][sha256.Size]byte, size)
	for i := range leaves {
		leaves[i] = [sha256.Size]byte(random[i*sha256.Size:])
	}
	salts := random[sha256.Size*size:]
	salt := func(i int) []byte { return salts[i*LeafSaltSize : (i+1)*LeafSaltSize : (i+1)*LeafSaltSize] }
	for i, st := range sts {
		leaves[places[i]] = leafHash(salt(i), st.Kind, st.Payload)
	}
	tree := newMerkleTree(leaves)
	sig, chain := b.s.Sign(batchInput(tree.root(), uint32(size)))
	out := make([]*reportv1.Signed, len(sts))
	for i, st := range sts {
		out[i] = &reportv1.Signed{
			Payload: st.Payload, Signature: sig, CertChain: chain, Kind: st.Kind,
			Batch: &reportv1.MerkleProof{Index: uint32(places[i]), Size: uint32(size), Path: tree.path(places[i]), Salt: salt(i)},
		}
	}
	return out
}

// minPadded is the fewest leaves of a batch's tree. A proof shows its
// tree's size and its own place in it: were the tree the statements
// alone, in order, a partner would read off a report's header how many
// partners it was released to, and from its own hop's place, which. So a
// tree is padded with random leaves (as random as a salted leaf's hash)
// to a power of two of at least this, and the statements are placed at
// random: a proof shows at most that its batch held more than half its
// size, when that is over minPadded.
const minPadded = 16

// signAlone signs st alone: a plain signature, no proof.
func signAlone(s Signer, st Statement) *reportv1.Signed {
	sig, chain := s.Sign(signingInput(st.Kind, st.Payload))
	return &reportv1.Signed{Payload: st.Payload, Signature: sig, CertChain: chain, Kind: st.Kind}
}
