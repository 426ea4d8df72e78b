package report

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"

	reportv1 "github.com/tearline/tearline/proto/tearline/report/v1"
)

// Every leaf of trees of every size up to 70 proves to the root, and no
// proof survives a change of leaf, index or path. (A changed size can give
// the same root, as the last subtree of a smaller tree can be read as a
// leaf of a larger one: that is why the signature covers the size too, as
// TestBatchSigner checks.)
func TestMerkleProofs(t *testing.T) {
	for n := 2; n <= 70; n++ {
		leaves := make([][sha256.Size]byte, n)
		for i := range leaves {
			leaves[i] = leafHash(nil, KindHop, fmt.Appendf(nil, "statement %d of %d", i, n))
		}
		tree := newMerkleTree(leaves)
		root := tree.root()
		for m := range n {
			p := &reportv1.MerkleProof{Index: uint32(m), Size: uint32(n), Path: tree.path(m)}
			got, err := rootFromProof(leaves[m], p)
			if err != nil || got != root {
				t.Fatalf("n=%d m=%d: root %x, %v; want %x", n, m, got, err, root)
			}
			other := leaves[(m+1)%n]
			if got, err := rootFromProof(other, p); err == nil && got == root {
				t.Fatalf("n=%d m=%d: another leaf proves with this proof", n, m)
			}
			for _, mutate := range []func(*reportv1.MerkleProof){
				func(p *reportv1.MerkleProof) { p.Index = (p.Index + 1) % p.Size },
				func(p *reportv1.MerkleProof) {
					if len(p.Path) > 0 {
						p.Path[0] = append([]byte{}, p.Path[0]...)
						p.Path[0][0] ^= 1
					}
				},
				func(p *reportv1.MerkleProof) { p.Path = append(p.Path, root[:]) },
				func(p *reportv1.MerkleProof) {
					if len(p.Path) > 0 {
						p.Path = p.Path[:len(p.Path)-1]
					}
				},
			} {
				q := proto.CloneOf(p)
				mutate(q)
				if proto.Equal(p, q) {
					continue
				}
				if got, err := rootFromProof(leaves[m], q); err == nil && got == root {
					t.Fatalf("n=%d m=%d: mutated proof %v still gives the root", n, m, q)
				}
			}
		}
	}
}

func TestMerkleProofLimits(t *testing.T) {
	leaf := leafHash(nil, KindHop, []byte("x"))
	for _, p := range []*reportv1.MerkleProof{
		{Index: 0, Size: 1},
		{Index: 2, Size: 2, Path: [][]byte{leaf[:]}},
		{Index: 0, Size: MaxBatch + 1},
		{Index: 0, Size: 2, Path: [][]byte{leaf[:5]}},
		{Index: 0, Size: 2, Path: make([][]byte, maxProofLen+1)},
	} {
		if _, err := rootFromProof(leaf, p); err == nil {
			t.Errorf("proof %v accepted", p)
		}
	}
}

// The tree built from the bottom gives exactly RFC 9162's definitions,
// written below as the RFC states them (recursively), for every leaf of
// trees of every size up to 70.
func TestMerkleTreeMatchesDefinition(t *testing.T) {
	// splitPoint is the largest power of two smaller than n (n > 1).
	splitPoint := func(n int) int {
		k := 1
		for k<<1 < n {
			k <<= 1
		}
		return k
	}
	var mth func(d [][sha256.Size]byte) [sha256.Size]byte
	mth = func(d [][sha256.Size]byte) [sha256.Size]byte {
		if len(d) == 1 {
			return d[0]
		}
		k := splitPoint(len(d))
		return nodeHash(mth(d[:k]), mth(d[k:]))
	}
	var path func(m int, d [][sha256.Size]byte) [][]byte
	path = func(m int, d [][sha256.Size]byte) [][]byte {
		if len(d) <= 1 {
			return nil
		}
		k := splitPoint(len(d))
		if m < k {
			r := mth(d[k:])
			return append(path(m, d[:k]), r[:])
		}
		l := mth(d[:k])
		return append(path(m-k, d[k:]), l[:])
	}
	for n := 1; n <= 70; n++ {
		leaves := make([][sha256.Size]byte, n)
		for i := range leaves {
			leaves[i] = leafHash(nil, KindHop, fmt.Appendf(nil, "leaf %d of %d", i, n))
		}
		tree := newMerkleTree(leaves)
		if got, want := tree.root(), mth(leaves); got != want {
			t.Fatalf("n=%d: root %x, want %x", n, got, want)
		}
		for m := range n {
			got, want := tree.path(m), path(m, leaves)
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("n=%d m=%d: path %x, want %x", n, m, got, want)
			}
		}
	}
}

// BenchmarkBatchProofs: the root and every leaf's path for a batch of 256.
func BenchmarkBatchProofs(b *testing.B) {
	leaves := make([][sha256.Size]byte, 256)
	for i := range leaves {
		leaves[i] = leafHash(nil, KindHop, fmt.Appendf(nil, "leaf %d", i))
	}
	for b.Loop() {
		tree := newMerkleTree(leaves)
		tree.root()
		for m := range leaves {
			tree.path(m)
		}
	}
}

// keySigner signs with a bare ed25519 key (no certificate chain).
type keySigner ed25519.PrivateKey

func (k keySigner) Sign(msg []byte) ([]byte, [][]byte) {
	return ed25519.Sign(ed25519.PrivateKey(k), msg), nil
}

// benchBatch signs 64 hop-sized statements as one batch.
func benchBatch(b *testing.B) (ed25519.PublicKey, []Statement, []*reportv1.Signed) {
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		b.Fatal(err)
	}
	sts := make([]Statement, 64)
	for i := range sts {
		sts[i] = Statement{Kind: KindHop, Payload: fmt.Appendf(nil, "%0200d", i)}
	}
	return pub, sts, NewBatchSigner(keySigner(priv)).sign(sts)
}

// BenchmarkSignAll: one batch of 64 statements signed (the signature, the
// leaves, the tree and each statement's proof).
func BenchmarkSignAll(b *testing.B) {
	_, sts, _ := benchBatch(b)
	s := NewBatchSigner(keySigner(ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))))
	for b.Loop() {
		s.sign(sts)
	}
}

// BenchmarkVerifyBatched: a statement of a batch whose root has verified
// already, as a receiver checks every statement but the first of a batch:
// its proof to the root, and the remembered root.
func BenchmarkVerifyBatched(b *testing.B) {
	pub, sts, signed := benchBatch(b)
	for i, sd := range signed {
		msg, err := signedInput(sts[i].Kind, sd)
		if err != nil || !verifySignature(pub, msg, sd.GetSignature(), true) {
			b.Fatalf("statement does not verify: %v", err)
		}
	}
	i := 0
	for b.Loop() {
		sd := signed[i%len(signed)]
		i++
		msg, err := signedInput(KindHop, sd)
		if err != nil || !verifySignature(pub, msg, sd.GetSignature(), true) {
			b.Fatal("statement does not verify")
		}
	}
}

// verifies reports whether sd, of kind, verifies under pub as a batched
// statement (its proof to the root, and the root's signature).
func verifies(pub ed25519.PublicKey, kind string, sd *reportv1.Signed) bool {
	msg, err := signedInput(kind, sd)
	return err == nil && verifySignature(pub, msg, sd.GetSignature(), true)
}

// Each leaf of a batch is salted: its proof carries a fresh salt, and the
// hashes a proof holds are never those statements hashed without their
// salts (a guess of another partner's hop cannot be tested against them).
// A salt changed, cut or dropped fails; a proof made before salts (RFC
// 9162's leaf) still verifies.
func TestBatchLeavesSalted(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	sts := []Statement{{KindHeader, []byte("header")}, {KindHop, []byte("hop to GBR")}, {KindHop, []byte("hop to CAN")}}
	signed := NewBatchSigner(keySigner(priv)).sign(sts)
	for i, sd := range signed {
		if len(sd.GetBatch().GetSalt()) != LeafSaltSize || !verifies(pub, sts[i].Kind, sd) {
			t.Fatalf("statement %d: salt %x, verifies %v", i, sd.GetBatch().GetSalt(), verifies(pub, sts[i].Kind, sd))
		}
	}
	if bytes.Equal(signed[0].GetBatch().GetSalt(), signed[1].GetBatch().GetSalt()) {
		t.Error("two leaves share a salt")
	}
	// The leaves of the others, hashed unsalted or salted: a proof may
	// hold the salted ones (siblings), never the unsalted.
	held := map[[sha256.Size]byte]bool{}
	for _, sd := range signed {
		for _, h := range sd.GetBatch().GetPath() {
			held[[sha256.Size]byte(h)] = true
		}
	}
	salted := 0
	for i, st := range sts {
		if held[leafHash(nil, st.Kind, st.Payload)] {
			t.Errorf("a proof holds statement %d hashed without its salt: a guess can be tested", i)
		}
		if held[leafHash(signed[i].GetBatch().GetSalt(), st.Kind, st.Payload)] {
			salted++
		}
	}
	if salted == 0 && signed[0].GetBatch().GetIndex()^1 == signed[1].GetBatch().GetIndex() {
		t.Error("two sibling statements, and neither's proof holds the other's salted leaf")
	}
	for name, mutate := range map[string]func(p *reportv1.MerkleProof){
		"salt changed": func(p *reportv1.MerkleProof) { p.Salt = append([]byte{p.Salt[0] ^ 1}, p.Salt[1:]...) },
		"salt cut":     func(p *reportv1.MerkleProof) { p.Salt = p.Salt[:LeafSaltSize-1] },
		"salt dropped": func(p *reportv1.MerkleProof) { p.Salt = nil },
	} {
		sd := proto.CloneOf(signed[1])
		mutate(sd.Batch)
		if verifies(pub, KindHop, sd) {
			t.Errorf("%s: the statement still verifies", name)
		}
	}
	// A proof made before salts verifies; given a salt, it does not.
	leaves := [][sha256.Size]byte{leafHash(nil, KindHeader, []byte("header")), leafHash(nil, KindHop, []byte("hop to GBR"))}
	tree := newMerkleTree(leaves)
	sig := ed25519.Sign(priv, batchInput(tree.root(), 2))
	old := &reportv1.Signed{Payload: []byte("hop to GBR"), Signature: sig, Kind: KindHop, Batch: &reportv1.MerkleProof{Index: 1, Size: 2, Path: tree.path(1)}}
	if !verifies(pub, KindHop, old) {
		t.Error("a proof made before salts does not verify")
	}
	old.Batch.Salt = signed[1].GetBatch().GetSalt()
	if verifies(pub, KindHop, old) {
		t.Error("a proof made before salts verifies with a salt added")
	}
}

// A batch's tree is padded with random leaves to a power of two of at
// least minPadded, and its statements placed at random: a proof shows
// neither how many statements its batch held (two and nine give the same
// size) nor where the others are.
func TestBatchPaddedAndShuffled(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	bs := NewBatchSigner(keySigner(priv))
	batch := func(n int) ([]Statement, []*reportv1.Signed) {
		sts := make([]Statement, n)
		for i := range sts {
			sts[i] = Statement{Kind: KindHop, Payload: fmt.Appendf(nil, "hop %d of %d", i, n)}
		}
		return sts, bs.sign(sts)
	}
	places := map[uint32]bool{}
	for _, n := range []int{2, 9, minPadded, minPadded + 1} {
		for range 20 {
			sts, signed := batch(n)
			want := uint32(minPadded)
			if n > minPadded {
				want = 2 * minPadded
			}
			seen := map[uint32]bool{}
			for i, sd := range signed {
				p := sd.GetBatch()
				if p.GetSize() != want || seen[p.GetIndex()] || !verifies(pub, sts[i].Kind, sd) {
					t.Fatalf("%d statements: statement %d at %d of %d (want a tree of %d, places distinct), verifies %v", n, i, p.GetIndex(), p.GetSize(), want, verifies(pub, sts[i].Kind, sd))
				}
				seen[p.GetIndex()] = true
			}
			if n == 2 {
				places[signed[0].GetBatch().GetIndex()] = true
			}
		}
	}
	if len(places) < 2 {
		t.Errorf("the first of two statements was at %v in 20 batches: not placed at random", places)
	}
}
