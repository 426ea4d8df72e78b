package gateway

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tearline/tearline/node"
	"github.com/tearline/tearline/node/store"
	clientv1 "github.com/tearline/tearline/proto/tearline/client/v1"
)

// TestSubscriberSendsWhileItsRecordCommits: a subscription keeps sending
// while what it sent waits for a commit to be recorded. With every commit
// at the node held, the subscriber still receives n (< recordBudget)
// reports (a lone subscription runs up to recordBudget ahead of its records); once the commits go on, each is recorded as delivered to it and
// its cursor is saved after the last.
func TestSubscriberSendsWhileItsRecordCommits(t *testing.T) {
	f := startFed(t, "USA", "GBR")
	officer := f.officer("USA")
	analyst := f.client("USA", filepath.Join(f.dir, "USA", DevSubscriber))
	st := f.servers["USA"].Node().Store()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// More than the 64 deliveries a recorder could hold before.
	const n = 600
	if n >= recordBudget {
		t.Fatalf("n = %d must stay under recordBudget (%d)", n, recordBudget)
	}
	body := []byte(strings.Repeat("x", 2048))
	publish := func(i int) {
		t.Helper()
		if _, err := officer.Publish(ctx, &clientv1.PublishRequest{
			Portions: []*clientv1.NewPortion{{Banner: "SECRET//REL TO USA, GBR", Title: fmt.Sprintf("r%04d", i), Body: body}},
			Topics:   []string{"CT"},
		}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		publish(i)
	}

	// Hold every commit.
	release := holdCommits(t, st)

	subCtx, endSub := context.WithCancel(ctx)
	defer endSub()
	sub, err := analyst.Subscribe(subCtx, &clientv1.SubscribeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	ids := make([]string, 0, n)
	go func() {
		for i := range n {
			m, err := sub.Recv()
			if err != nil {
				got <- fmt.Errorf("stream ended after %d reports: %w", i, err)
				return
			}
			if title, want := m.GetReport().GetPortions()[0].GetTitle(), fmt.Sprintf("r%04d", i); title != want {
				got <- fmt.Errorf("report %d is %s, want %s", i, title, want)
				return
			}
			ids = append(ids, m.GetReport().GetId())
		}
		got <- nil
	}()
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("the subscriber did not receive %d reports in 20 s while the node's commits were held", n)
	}

	if err := release(); err != nil {
		t.Fatal(err)
	}
	// Recorded: every report's provenance names its delivery to the
	// analyst (the last one once the commits have gone on).
	deadline := time.Now().Add(20 * time.Second)
	for !deliveredTo(t, st, ids[n-1]) {
		if time.Now().After(deadline) {
			t.Fatal("the last report's delivery was not recorded once commits went on")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for i, id := range ids {
		if !deliveredTo(t, st, id) {
			t.Fatalf("report %d (%s) was sent but its delivery is not recorded", i, id)
		}
	}
	// End the stream; once it has ended, its last cursor is saved (a
	// resumed stream waits for its recorder).
	endSub()
	for {
		if _, err := sub.Recv(); err != nil {
			break
		}
	}
	// And the cursor: a resumed subscription starts after the last sent.
	resumeCtx, cancel2 := context.WithTimeout(ctx, 30*time.Second)
	defer cancel2()
	publish(n)
	resumed, err := analyst.Subscribe(resumeCtx, &clientv1.SubscribeRequest{ResumeSaved: true})
	if err != nil {
		t.Fatal(err)
	}
	m, err := resumed.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if title, want := m.GetReport().GetPortions()[0].GetTitle(), fmt.Sprintf("r%04d", n); title != want {
		t.Fatalf("resumed at %s, want %s (the cursor saved is not the last report sent)", title, want)
	}
}

// TestRunAheadShared: a lone subscription may run recordBudget deliveries
// ahead of its records; many share the budget, each keeping at least
// node.RecordAtOnce.
func TestRunAheadShared(t *testing.T) {
	s := &clientService{}
	for _, c := range []struct{ live, want int }{
		{0, recordBudget}, // a stream counts itself once it streams; never below one
		{1, recordBudget},
		{2, recordBudget / 2},
		{8, recordBudget / 8},
		{16, node.RecordAtOnce},
		{1000, node.RecordAtOnce},
	} {
		s.live.Store(int64(c.live))
		if got := s.runAhead(); got != c.want {
			t.Errorf("%d live: run ahead %d, want %d", c.live, got, c.want)
		}
	}
}

// holdCommits holds every commit at st until release is called (or the
// test ends): a transaction keeps bbolt's writer. release returns that
// transaction's error.
func holdCommits(t *testing.T, st *store.Store) (release func() error) {
	t.Helper()
	held, done := make(chan struct{}), make(chan struct{})
	holding := make(chan error, 1)
	go func() {
		holding <- st.Update(time.Now(), func(*store.Tx) error {
			close(held)
			<-done
			return nil
		})
	}()
	<-held
	var once sync.Once
	var err error
	release = func() error {
		once.Do(func() {
			close(done)
			err = <-holding
		})
		return err
	}
	t.Cleanup(func() { _ = release() })
	return release
}
