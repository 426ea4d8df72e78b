package gateway

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/tearline/tearline/internal/faultfs"
	"github.com/tearline/tearline/node"
	"github.com/tearline/tearline/node/store"
	clientv1 "github.com/tearline/tearline/proto/tearline/client/v1"
)

func errorInfo(st *status.Status) *errdetails.ErrorInfo {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info
		}
	}
	return nil
}

// A store that cannot be written gives a status that says so, with the
// next step and a reason, never Internal; the path stays in the log.
func TestStoreErrorStatus(t *testing.T) {
	const secretPath = "/srv/tearline/data/tearline.db"
	disk := func(errno syscall.Errno, class error) error {
		cause := &fs.PathError{Op: "write", Path: secretPath, Err: errno}
		// As the node wraps a failed commit.
		return fmt.Errorf("%w: store: %w", node.ErrInternal, fmt.Errorf("%w: %w", class, cause))
	}
	cases := []struct {
		name   string
		err    error
		code   codes.Code
		reason string
		says   string
	}{
		{"full", disk(syscall.ENOSPC, store.ErrFull), codes.ResourceExhausted, ReasonStoreFull, "full"},
		{"read-only", disk(syscall.EROFS, store.ErrReadOnly), codes.Unavailable, ReasonStoreReadOnly, "read-only"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := status.Convert(toStatus(slog.New(slog.DiscardHandler), "Publish", tc.err))
			if st.Code() != tc.code {
				t.Fatalf("code %v, want %v (%s)", st.Code(), tc.code, st.Message())
			}
			msg := st.Message()
			if !strings.Contains(msg, tc.says) || !strings.Contains(msg, "reads still work") || !strings.Contains(msg, "Next: ") {
				t.Fatalf("message %q does not say what happened, that reads work, and what to do", msg)
			}
			if strings.Contains(msg, secretPath) || strings.Contains(msg, "internal") {
				t.Fatalf("message %q leaks internals", msg)
			}
			info := errorInfo(st)
			if info == nil || info.GetReason() != tc.reason || info.GetDomain() != ErrorDomain || info.GetMetadata()["next"] == "" {
				t.Fatalf("ErrorInfo = %v", info)
			}
			// A partner's envelope gets the partner's text.
			pst := status.Convert(storeStatus(tc.err, partnerStoreText))
			if pst.Code() != tc.code || !strings.Contains(pst.Message(), "not acknowledged") || strings.Contains(pst.Message(), secretPath) {
				t.Fatalf("partner status %v: %s", pst.Code(), pst.Message())
			}
		})
	}
	// A caller gone before the commit is told so (it is not an internal
	// error, nor logged as one).
	for err, code := range map[error]codes.Code{context.Canceled: codes.Canceled, context.DeadlineExceeded: codes.DeadlineExceeded} {
		if got := status.Code(toStatus(slog.New(slog.DiscardHandler), "Publish", fmt.Errorf("publish abandoned: %w", err))); got != code {
			t.Errorf("toStatus(%v) = %v, want %v", err, got, code)
		}
	}
	// Any other failure stays an internal error with fixed text.
	st := status.Convert(toStatus(slog.New(slog.DiscardHandler), "Publish", fmt.Errorf("%w: %w", node.ErrInternal, errors.New("disk on fire"))))
	if st.Code() != codes.Internal || strings.Contains(st.Message(), "fire") {
		t.Fatalf("internal error: %v %q", st.Code(), st.Message())
	}
}

// A real node whose store fills up: publishing is refused with
// ResourceExhausted and reason store-full, reads work, a partner's
// envelopes stay queued at the partner; once space returns the node takes
// work again and the partner's queue drains. Needs root (skips otherwise).
func TestNodeWithFullDisk(t *testing.T) {
	data := filepath.Join(t.TempDir(), "gbr-data")
	faultfs.MountT(t, data, 8<<20, nil) // cleaned up after the servers stop
	f := startFedWith(t, func(c *Config) {
		if c.Party == "GBR" {
			c.DataDir = data
		}
	}, "USA", "GBR")
	usa, gbr := f.officer("USA"), f.officer("GBR")
	publish := func(c clientv1.ClientServiceClient, banner string, size int) (string, error) {
		resp, err := c.Publish(ctxT(t), &clientv1.PublishRequest{Portions: []*clientv1.NewPortion{{Banner: banner, Title: "t", Body: make([]byte, size)}}})
		return resp.GetId(), err
	}
	first, err := publish(gbr, "SECRET//REL TO GBR", 100)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := faultfs.Fill(data); err != nil {
		t.Fatal(err)
	}
	// Free pages in the file may take a few writes; large ones need new space.
	var refused error
	var kept []string
	for i := 0; i < 100 && refused == nil; i++ {
		id, err := publish(gbr, "SECRET//REL TO GBR", 256<<10)
		if err != nil {
			refused = err
		} else {
			kept = append(kept, id)
		}
	}
	st := status.Convert(refused)
	if st.Code() != codes.ResourceExhausted || errorInfo(st).GetReason() != ReasonStoreFull || !strings.Contains(st.Message(), "full") {
		t.Fatalf("publish on a full disk: %v", refused)
	}
	// Reads still work, and what was stored is there.
	for _, id := range append(kept, first) {
		if _, err := gbr.GetReport(ctxT(t), &clientv1.GetReportRequest{Id: id}); err != nil {
			t.Fatalf("read %s on a full disk: %v", id, err)
		}
		if _, err := gbr.GetProvenance(ctxT(t), &clientv1.GetProvenanceRequest{Id: id}); err != nil {
			t.Fatalf("provenance %s on a full disk: %v", id, err)
		}
	}
	if n := count(t, gbr); n != len(kept)+1 {
		t.Fatalf("GBR lists %d reports, want %d", n, len(kept)+1)
	}
	// USA's report for GBR waits in USA's outbox.
	sent, err := publish(usa, "SECRET//REL TO USA, GBR", 256<<10)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if _, err := gbr.GetReport(ctxT(t), &clientv1.GetReportRequest{Id: sent}); status.Code(err) != codes.NotFound {
		t.Fatalf("GBR stored a receipt on a full disk: %v", err)
	}
	if n, _ := f.servers["USA"].Node().Store().OutboxLen("GBR"); n != 1 {
		t.Fatalf("USA's outbox for GBR holds %d, want 1", n)
	}
	// Space returns: work is taken again, without a restart.
	if err := faultfs.Free(data); err != nil {
		t.Fatal(err)
	}
	if _, err := publish(gbr, "SECRET//REL TO GBR", 100); err != nil {
		t.Fatalf("publish after space returned: %v", err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, err := gbr.GetReport(ctxT(t), &clientv1.GetReportRequest{Id: sent}); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("USA's report never reached GBR after space returned")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A node whose store's file system is read-only starts, serves reads and
// refuses work with Unavailable and reason store-read-only. Needs root.
func TestNodeWithReadOnlyStore(t *testing.T) {
	data := filepath.Join(t.TempDir(), "gbr-data")
	faultfs.MountT(t, data, 8<<20, nil)
	st, err := store.Open(filepath.Join(data, "tearline.db"))
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	if err := faultfs.SetReadOnly(data, true); err != nil {
		t.Fatal(err)
	}
	f := startFedWith(t, func(c *Config) {
		if c.Party == "GBR" {
			c.DataDir = data
		}
	}, "USA", "GBR")
	gbr := f.officer("GBR")
	if !f.servers["GBR"].Node().Store().ReadOnly() {
		t.Fatal("GBR's store did not open read-only")
	}
	if n := count(t, gbr); n != 0 {
		t.Fatalf("reads on a read-only store: %d reports", n)
	}
	req := &clientv1.PublishRequest{Portions: []*clientv1.NewPortion{{Banner: "SECRET//REL TO GBR", Body: []byte("x")}}}
	_, err = gbr.Publish(ctxT(t), req)
	s := status.Convert(err)
	if s.Code() != codes.Unavailable || errorInfo(s).GetReason() != ReasonStoreReadOnly || !strings.Contains(s.Message(), "read-only") {
		t.Fatalf("publish on a read-only store: %v", err)
	}
	// A PublishStream's answer carries the same status, details and all.
	got, err := publishOne(t, gbr, 9, req)
	if err != nil || len(got) != 1 {
		t.Fatalf("stream on a read-only store: %v, %v", got, err)
	}
	if have := status.Convert(PublishStreamErr(got[9])); !proto.Equal(have.Proto(), s.Proto()) {
		t.Fatalf("stream answered %v, Publish %v", have.Proto(), s.Proto())
	}
	// A subscription is refused: its deliveries could not be recorded.
	analyst := f.client("GBR", filepath.Join(f.dir, "GBR", DevSubscriber))
	sub, err := analyst.Subscribe(ctxT(t), &clientv1.SubscribeRequest{})
	if err == nil {
		_, err = sub.Recv()
	}
	s = status.Convert(err)
	if s.Code() != codes.Unavailable || errorInfo(s).GetReason() != ReasonStoreReadOnly || !strings.Contains(s.Message(), "cannot record deliveries") {
		t.Fatalf("subscribe on a read-only store: %v", err)
	}
}

// usaOnFaultfs is a federation of USA and GBR whose USA keeps its store
// on a small tmpfs (faultfs) that a test can fill.
type usaOnFaultfs struct {
	officer, analyst clientv1.ClientServiceClient
	st               *store.Store
	data             string // USA's data_dir, the faultfs mount
}

func startUSAOnFaultfs(t *testing.T) usaOnFaultfs {
	t.Helper()
	data := filepath.Join(t.TempDir(), "usa-data")
	faultfs.MountT(t, data, 64<<20, nil) // cleaned up after the servers stop
	f := startFedWith(t, func(c *Config) {
		if c.Party == "USA" {
			c.DataDir = data
		}
	}, "USA", "GBR")
	return usaOnFaultfs{
		officer: f.officer("USA"),
		analyst: f.client("USA", filepath.Join(f.dir, "USA", DevSubscriber)),
		st:      f.servers["USA"].Node().Store(),
		data:    data,
	}
}

// publishN publishes n reports of one portion marked banner, topic CT,
// titled prefix and a four-digit index, with a body of size bytes; it
// returns their ids in order.
func publishN(ctx context.Context, t *testing.T, c clientv1.ClientServiceClient, n int, banner, prefix string, size int) []string {
	t.Helper()
	body := []byte(strings.Repeat("x", size))
	ids := make([]string, n)
	for i := range n {
		resp, err := c.Publish(ctx, &clientv1.PublishRequest{
			Portions: []*clientv1.NewPortion{{Banner: banner, Title: fmt.Sprintf("%s%04d", prefix, i), Body: body}},
			Topics:   []string{"CT"},
		})
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = resp.GetId()
	}
	return ids
}

// deliveredTo reports whether report id's provenance at st records its
// delivery to the dev subscriber.
func deliveredTo(t *testing.T, st *store.Store, id string) bool {
	t.Helper()
	return eventOf(t, st, id, "delivered")
}

// TestSubscriptionEndsWhenDeliveriesCannotBeRecorded: a subscription whose
// deliveries cannot be recorded (the disk filled while they waited for a
// commit) ends with ResourceExhausted and reason store-full, instead of
// sending on; the cursor saved is never past a delivery not recorded, so
// once space returns a resumed subscription sends those reports again and
// every one is recorded. Needs root (skips otherwise).
func TestSubscriptionEndsWhenDeliveriesCannotBeRecorded(t *testing.T) {
	u := startUSAOnFaultfs(t)
	officer, analyst, st, data := u.officer, u.analyst, u.st, u.data
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	const n = 600 // under recordBudget: all are sent while the first record waits
	ids := publishN(ctx, t, officer, n, "SECRET//REL TO USA", "r", 2048)
	recv := func(s clientv1.ClientService_SubscribeClient, from, to int) error {
		for i := from; i < to; i++ {
			m, err := s.Recv()
			if err != nil {
				return fmt.Errorf("stream ended before r%04d: %w", i, err)
			}
			if title, want := m.GetReport().GetPortions()[0].GetTitle(), fmt.Sprintf("r%04d", i); title != want {
				return fmt.Errorf("got %s, want %s", title, want)
			}
		}
		return nil
	}

	// Hold every commit while the subscriber receives all n, then fill
	// the disk and let the commits go on. The store's log has its space
	// allocated ahead of its records: give that back first, so that the
	// full disk is full for the log too.
	if err := st.ReleaseLogSpaceForTest(); err != nil {
		t.Fatal(err)
	}
	release := holdCommits(t, st)
	sub, err := analyst.Subscribe(ctx, &clientv1.SubscribeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if err := recv(sub, 0, n); err != nil {
		t.Fatal(err)
	}
	if _, err := faultfs.Fill(data); err != nil {
		t.Fatal(err)
	}
	if err := release(); err != nil {
		t.Fatal(err)
	}
	ended := make(chan error, 1)
	go func() {
		_, err := sub.Recv()
		ended <- err
	}()
	endsStoreFull(t, ended, "the subscription went on for 20 s after its deliveries could not be recorded")

	// Recorded so far: a prefix of what was sent, and no more.
	k := 0
	for k < n && deliveredTo(t, st, ids[k]) {
		k++
	}
	if k == n {
		t.Fatal("every delivery was recorded on a full disk: the test did not make recording fail")
	}
	for i := k; i < n; i++ {
		if deliveredTo(t, st, ids[i]) {
			t.Fatalf("r%04d is recorded as delivered but r%04d before it is not", i, k)
		}
	}

	t.Logf("%d of %d deliveries recorded when the subscription ended: %v", k, n, err)
	// Space returns: a resumed subscription starts at the first delivery
	// not recorded, and every report ends up recorded.
	if err := faultfs.Free(data); err != nil {
		t.Fatal(err)
	}
	resumed, err := analyst.Subscribe(ctx, &clientv1.SubscribeRequest{ResumeSaved: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := recv(resumed, k, n); err != nil {
		t.Fatalf("resumed (%d were recorded): %v", k, err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for i := k; i < n; i++ {
		for !deliveredTo(t, st, ids[i]) {
			if time.Now().After(deadline) {
				t.Fatalf("r%04d was sent again but its delivery is not recorded", i)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// TestSubscriptionEndsWhenWithheldCannotBeRecorded: what a subscriber's
// filter withholds is recorded in provenance before the stream goes on;
// when that record cannot be written (the disk filled while it waited for
// a commit) the stream ends with the store's status worded for a
// subscriber, not for an officer's publish. Needs root (skips otherwise).
func TestSubscriptionEndsWhenWithheldCannotBeRecorded(t *testing.T) {
	u := startUSAOnFaultfs(t)
	officer, analyst, st, data := u.officer, u.analyst, u.st, u.data
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// Above the analyst's clearance (SECRET): each is withheld from it
	// whole, and recorded as withheld when its subscription reads past it.
	ids := publishN(ctx, t, officer, 256, "TOP SECRET//REL TO USA", "ts", 1)
	if err := st.ReleaseLogSpaceForTest(); err != nil { // see TestSubscriptionEndsWhenDeliveriesCannotBeRecorded
		t.Fatal(err)
	}
	release := holdCommits(t, st)
	sub, err := analyst.Subscribe(ctx, &clientv1.SubscribeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	ended := make(chan error, 1)
	go func() {
		m, err := sub.Recv()
		if err == nil {
			err = fmt.Errorf("received %q, which is above the analyst's clearance", m.GetReport().GetPortions()[0].GetTitle())
		}
		ended <- err
	}()
	if _, err := faultfs.Fill(data); err != nil {
		t.Fatal(err)
	}
	if err := release(); err != nil {
		t.Fatal(err)
	}
	// The withheld records of 256 reports need pages the store's file
	// never wrote, which a full tmpfs cannot give; a commit that fits in
	// pages freed earlier succeeds on a full disk. If this fails after a
	// change to what a commit writes, check that first.
	endsStoreFull(t, ended, "the subscription went on for 20 s after the disk filled: what it withheld was recorded anyway, or its failure did not end the stream")

	// Space returns: subscribing again records what is withheld, and
	// still sends none of it.
	if err := faultfs.Free(data); err != nil {
		t.Fatal(err)
	}
	actx, acancel := context.WithCancel(ctx)
	defer acancel()
	again, err := analyst.Subscribe(actx, &clientv1.SubscribeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, id := range ids {
		for !eventOf(t, st, id, "withheld") {
			if time.Now().After(deadline) {
				t.Fatalf("%s is not recorded as withheld after space returned", id)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	time.AfterFunc(500*time.Millisecond, acancel)
	if m, err := again.Recv(); status.Code(err) != codes.Canceled {
		t.Fatalf("subscribed again: %v, %q", err, m.GetReport().GetPortions())
	}
}

// eventOf reports whether st holds an event of kind about report id for
// the dev subscriber.
func eventOf(t *testing.T, st *store.Store, id, kind string) bool {
	t.Helper()
	events, err := st.Events(id)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events {
		if e.GetKind() == kind && strings.HasSuffix(e.GetSubject(), "/"+DevSubscriber) {
			return true
		}
	}
	return false
}

// endsStoreFull waits up to 20 s for a subscription's end on ended and
// checks that it ended because its deliveries could not be recorded (a
// full store, to be resumed); stillOn is the failure if it goes on.
func endsStoreFull(t *testing.T, ended <-chan error, stillOn string) {
	t.Helper()
	var err error
	select {
	case err = <-ended:
	case <-time.After(20 * time.Second):
		t.Fatal(stillOn)
	}
	s := status.Convert(err)
	if s.Code() != codes.ResourceExhausted || errorInfo(s).GetReason() != ReasonStoreFull || !strings.Contains(s.Message(), "cannot record deliveries") || !strings.Contains(s.Message(), "--resume") {
		t.Fatalf("subscription ended with %v", err)
	}
}
