package report_test

import (
	"bytes"
	"crypto/sha256"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tearline/tearline/node/report"
	reportv1 "github.com/tearline/tearline/proto/tearline/report/v1"
)

// slowSigner holds each signature until released, so that batches form.
type slowSigner struct {
	report.Signer
	mu    sync.Mutex
	calls int
	gate  chan struct{}
}

func (s *slowSigner) Sign(msg []byte) ([]byte, [][]byte) {
	s.mu.Lock()
	s.calls++
	s.mu.Unlock()
	<-s.gate
	return s.Signer.Sign(msg)
}

// TestBatchSigner: statements signed concurrently share signatures over
// batch roots, and each verifies on its own exactly as a statement signed
// alone does; moving a proof or a signature to another statement, another
// kind or another batch size fails.
func TestBatchSigner(t *testing.T) {
	f := newFederation(t, "USA", "GBR", "CAN")
	slow := &slowSigner{Signer: f.node(t, "USA"), gate: make(chan struct{})}
	bs := report.NewBatchSigner(slow)
	const n = 60
	type out struct {
		hdr  *reportv1.Signed
		hops []*reportv1.Signed
	}
	outs := make([]out, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			hdr, ps, err := report.Seal(draft("USA", time.Now()), bs)
			if err != nil {
				t.Error(err)
				return
			}
			v, err := report.OpenHeader(hdr, f.trust)
			if err != nil {
				t.Errorf("batched header %d: %v", i, err)
				return
			}
			r := sealed{header: hdr, portions: ps, v: v}
			outs[i].hdr = hdr
			outs[i].hops = append(outs[i].hops, signHop(t, hop(r, "USA", "GBR", time.Now(), 1, 2), bs))
		})
	}
	// Let signatures through one at a time while callers pile up.
	go func() {
		for {
			select {
			case slow.gate <- struct{}{}:
			case <-time.After(2 * time.Second):
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	wg.Wait()
	if t.Failed() {
		return
	}
	slow.mu.Lock()
	calls := slow.calls
	slow.mu.Unlock()
	if calls >= 2*n {
		t.Fatalf("%d statements took %d signatures: no batch formed", 2*n, calls)
	}
	var batched *reportv1.Signed
	for i, o := range outs {
		v, err := report.OpenHeader(o.hdr, f.trust)
		if err != nil {
			t.Fatalf("header %d: %v", i, err)
		}
		for _, h := range o.hops {
			if _, err := report.OpenHop(h, v.Digest, v.Header.GetId(), f.trust); err != nil {
				t.Fatalf("hop of %d: %v", i, err)
			}
			if h.GetBatch() != nil && batched == nil {
				batched = h
			}
		}
		if o.hdr.GetBatch() != nil {
			batched = o.hdr
		}
	}
	if batched == nil {
		t.Fatal("no statement carries a batch proof")
	}

	// Tampering: each must fail to verify.
	var hdr *reportv1.Signed
	for _, o := range outs {
		if o.hdr.GetBatch() != nil {
			hdr = o.hdr
			break
		}
	}
	if hdr == nil {
		t.Fatal("no batched header")
	}
	other := outs[0].hdr
	if other == hdr {
		other = outs[1].hdr
	}
	cases := map[string]func(*reportv1.Signed){
		"proof removed":         func(s *reportv1.Signed) { s.Batch = nil },
		"size changed":          func(s *reportv1.Signed) { s.Batch.Size++ },
		"index changed":         func(s *reportv1.Signed) { s.Batch.Index = (s.Batch.Index + 1) % s.Batch.Size },
		"another payload":       func(s *reportv1.Signed) { s.Payload = other.GetPayload() },
		"another signature":     func(s *reportv1.Signed) { s.Signature = other.GetSignature() },
		"path hash changed":     func(s *reportv1.Signed) { s.Batch.Path[0] = append([]byte{1}, s.Batch.Path[0][1:]...) },
		"proof on a single sig": nil,
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			var s *reportv1.Signed
			if mutate == nil {
				// A statement signed alone, given a proof it never had.
				single, _, err := report.Seal(draft("USA", time.Now()), f.node(t, "USA"))
				if err != nil {
					t.Fatal(err)
				}
				s = single
				s.Batch = proto.CloneOf(hdr.GetBatch())
			} else {
				s = proto.CloneOf(hdr)
				mutate(s)
			}
			if proto.Equal(s, hdr) {
				t.Skip("mutation changed nothing")
			}
			_, err := report.OpenHeader(s, f.trust)
			wantErr(t, "OpenHeader", err, report.ErrSignature)
		})
	}
	t.Run("header proof opened as a hop", func(t *testing.T) {
		s := proto.CloneOf(hdr)
		s.Kind = report.KindHop
		v, _ := report.OpenHeader(hdr, f.trust)
		_, err := report.OpenHop(s, v.Digest, v.Header.GetId(), f.trust)
		wantErr(t, "OpenHop", err, report.ErrSignature, report.ErrInvalid)
	})
}

// A lone statement is signed alone: no proof, a plain signature.
func TestBatchSignerAloneSignsSingly(t *testing.T) {
	f := newFederation(t, "USA")
	bs := report.NewBatchSigner(f.node(t, "USA"))
	hdr, _, err := report.Seal(draft("USA", time.Now()), bs)
	if err != nil {
		t.Fatal(err)
	}
	if hdr.GetBatch() != nil {
		t.Errorf("a lone statement carries a batch proof %v", hdr.GetBatch())
	}
	if _, err := report.OpenHeader(hdr, f.trust); err != nil {
		t.Fatal(err)
	}
}

// Under load (statements arriving at Busy per second or more) a statement
// that finds the signer idle waits Linger for company; below that rate it
// is signed at once, alone.
func TestBatchSignerLingersUnderLoad(t *testing.T) {
	f := newFederation(t, "USA")
	signer := f.node(t, "USA")
	// Two statements 5 ms apart, signed concurrently.
	pair := func(bs *report.BatchSigner) [2]*reportv1.Signed {
		var out [2]*reportv1.Signed
		var wg sync.WaitGroup
		for i := range out {
			wg.Go(func() {
				time.Sleep(time.Duration(i) * 5 * time.Millisecond)
				hdr, _, err := report.Seal(draft("USA", time.Now()), bs)
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := report.OpenHeader(hdr, f.trust); err != nil {
					t.Error(err)
				}
				out[i] = hdr
			})
		}
		wg.Wait()
		return out
	}

	// Busy: 10 statements/s is one per 100 ms window. One statement, then
	// a full window later the rate of the window before counts.
	loaded := report.NewBatchSigner(signer)
	loaded.Linger, loaded.Busy = 100*time.Millisecond, 10
	if _, _, err := report.Seal(draft("USA", time.Now()), loaded); err != nil {
		t.Fatal(err)
	}
	time.Sleep(110 * time.Millisecond)
	got := pair(loaded)
	for i, hdr := range got {
		if p := hdr.GetBatch(); p == nil || !bytes.Equal(hdr.GetSignature(), got[0].GetSignature()) {
			t.Errorf("loaded signer, statement %d: batch proof %v, want both in one batch (the second arrived during the first's linger)", i, p)
		}
	}

	// Quiet: the same two statements are each signed alone, at once.
	quiet := report.NewBatchSigner(signer)
	quiet.Linger, quiet.Busy = 100*time.Millisecond, 1_000_000
	start := time.Now()
	got = pair(quiet)
	if took := time.Since(start); took > 90*time.Millisecond {
		t.Errorf("quiet signer took %v for two statements 5 ms apart: it lingered", took)
	}
	for i, hdr := range got {
		if hdr.GetBatch() != nil {
			t.Errorf("quiet signer, statement %d: batch proof %v, want a lone signature", i, hdr.GetBatch())
		}
	}
}

// countSigner counts its signatures.
type countSigner struct {
	report.Signer
	n atomic.Int64
}

func (s *countSigner) Sign(msg []byte) ([]byte, [][]byte) {
	s.n.Add(1)
	return s.Signer.Sign(msg)
}

// prepared is a report prepared, not yet signed: its header's statement,
// and the hops of its portions 1 and 2 to each party of to, as statements.
func prepared(t *testing.T, to ...string) (sealed, []report.Statement) {
	t.Helper()
	h, ps, err := report.Prepare(draft("USA", time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	hst, err := report.NewStatement(report.KindHeader, h)
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256(hst.Payload)
	r := sealed{portions: ps, v: &report.Verified{Header: h, Digest: digest[:]}}
	sts := []report.Statement{hst}
	for _, p := range to {
		st, err := report.NewStatement(report.KindHop, hop(r, "USA", p, time.Now(), 1, 2))
		if err != nil {
			t.Fatal(err)
		}
		sts = append(sts, st)
	}
	return r, sts
}

// SignTogether with a BatchSigner signs a header and its hops with one
// signature, even with nothing else to sign (a lone statement is signed
// alone), and each verifies on its own; with another Signer, each is
// signed alone; statements beyond MaxBatch take another signature.
func TestSignTogether(t *testing.T) {
	f := newFederation(t, "USA", "GBR", "CAN")
	cs := &countSigner{Signer: f.node(t, "USA")}
	check := func(t *testing.T, signed []*reportv1.Signed, hops int) {
		t.Helper()
		if len(signed) != 1+hops {
			t.Fatalf("%d statements signed, want %d", len(signed), 1+hops)
		}
		v, err := report.OpenHeader(signed[0], f.trust)
		if err != nil {
			t.Fatalf("header: %v", err)
		}
		for i, sd := range signed[1:] {
			if _, err := report.OpenHop(sd, v.Digest, v.Header.GetId(), f.trust); err != nil {
				t.Fatalf("hop %d: %v", i, err)
			}
		}
	}

	_, sts := prepared(t, "GBR", "CAN")
	signed := report.SignTogether(report.NewBatchSigner(cs), sts...)
	check(t, signed, 2)
	if n := cs.n.Load(); n != 1 {
		t.Errorf("a header and two hops took %d signatures, want 1", n)
	}
	for i, sd := range signed {
		if sd.GetBatch() == nil || !bytes.Equal(sd.GetSignature(), signed[0].GetSignature()) {
			t.Errorf("statement %d: proof %v; want one under the header's signature", i, sd.GetBatch())
		}
		if string(sd.GetPayload()) != string(sts[i].Payload) || sd.GetKind() != sts[i].Kind {
			t.Errorf("statement %d signed out of order", i)
		}
	}

	cs.n.Store(0)
	_, sts = prepared(t, "GBR")
	check(t, report.SignTogether(cs, sts...), 1)
	if n := cs.n.Load(); n != 2 {
		t.Errorf("a plain signer made %d signatures for two statements, want 2", n)
	}

	cs.n.Store(0)
	_, sts = prepared(t)
	for len(sts) < report.MaxBatch+2 {
		_, more := prepared(t, "GBR")
		sts = append(sts, more[1])
	}
	signed = report.SignTogether(report.NewBatchSigner(cs), sts...)
	if n := cs.n.Load(); n != 2 {
		t.Errorf("%d statements took %d signatures, want 2", len(sts), n)
	}
	if _, err := report.OpenHeader(signed[0], f.trust); err != nil || signed[0].GetBatch().GetSize() != report.MaxBatch {
		t.Errorf("the first statement: %v, in a batch of %d; want one of %d", err, signed[0].GetBatch().GetSize(), report.MaxBatch)
	}
	if last := signed[len(signed)-1]; last.GetBatch() == nil || bytes.Equal(last.GetSignature(), signed[0].GetSignature()) {
		t.Errorf("the last statement: batch %v; want the second signature's batch", last.GetBatch())
	}
}
