package report_test

import (
	"sync"
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
		if p := hdr.GetBatch(); p == nil || p.GetSize() != 2 {
			t.Errorf("loaded signer, statement %d: batch proof %v, want one of a batch of 2 (the second arrived during the first's linger)", i, p)
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
