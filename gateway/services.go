package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/tearline/tearline/internal/lru"
	"github.com/tearline/tearline/node"
	"github.com/tearline/tearline/node/marking"
	"github.com/tearline/tearline/node/policy"
	"github.com/tearline/tearline/node/store"
	"github.com/tearline/tearline/pki"
	clientv1 "github.com/tearline/tearline/proto/tearline/client/v1"
	federationv1 "github.com/tearline/tearline/proto/tearline/federation/v1"
	storev1 "github.com/tearline/tearline/proto/tearline/store/v1"
)

// federationService receives partners' envelopes.
type federationService struct {
	federationv1.UnimplementedFederationServiceServer
	node *node.Node
	log  *slog.Logger

	mu      sync.Mutex
	streams map[string]int // open Deliver streams by partner party
}

// maxDeliverStreams is how many Deliver streams one partner may have open
// at once. Its link uses one; after a partition the old streams may stay
// open until keepalive ends them, beside the link's new one. Each holds up
// to deliverBudget of received requests, so this bounds what one partner
// can make this node hold (128 MiB).
const maxDeliverStreams = 8

// deliverBudget bounds the bytes of requests one Deliver stream holds,
// received and not yet answered (at least one request, whatever its size,
// up to max_message_bytes). Without it a partner that sent quickly and
// never read the answers made the node hold deliverGroup requests of up to
// max_message_bytes each, twice over, per stream: gigabytes.
const deliverBudget = 16 << 20

// openStream counts a Deliver stream of party, or refuses it when party
// has maxDeliverStreams open already; done uncounts it.
func (s *federationService) openStream(party string) (done func(), err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.streams == nil {
		s.streams = map[string]int{}
	}
	if s.streams[party] >= maxDeliverStreams {
		return nil, status.Errorf(codes.ResourceExhausted, "%s has %d Deliver streams open at this node already, the most one partner may: this one is refused (a link needs one)", party, maxDeliverStreams)
	}
	s.streams[party]++
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.streams[party]--; s.streams[party] == 0 {
			delete(s.streams, party)
		}
	}, nil
}

// byteBudget is a stream's deliverBudget: take waits for room, give
// returns it.
type byteBudget struct {
	mu   sync.Mutex
	held int
	room chan struct{} // a token when room was given back
}

func newByteBudget() *byteBudget { return &byteBudget{room: make(chan struct{}, 1)} }

func (b *byteBudget) take(ctx context.Context, n int) error {
	for {
		b.mu.Lock()
		if b.held == 0 || b.held+n <= deliverBudget {
			b.held += n
			b.mu.Unlock()
			return nil
		}
		b.mu.Unlock()
		select {
		case <-b.room:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (b *byteBudget) give(n int) {
	b.mu.Lock()
	b.held -= n
	b.mu.Unlock()
	select {
	case b.room <- struct{}{}:
	default:
	}
}

func (s *federationService) Deliver(stream grpc.BidiStreamingServer[federationv1.DeliverRequest, federationv1.DeliverResponse]) error {
	ctx := stream.Context()
	from, err := mustCaller(ctx)
	if err != nil {
		return err
	}
	done, err := s.openStream(from.Party)
	if err != nil {
		return err
	}
	defer done()
	// The partner is up: our link to it need not wait out its backoff.
	s.node.PartnerConnected(from.Party)
	// A reader keeps receiving while the items before are checked and
	// committed; the loop below takes what has arrived (up to a sender's
	// window) and commits the envelopes among it together. What the
	// stream holds received and unanswered stays within deliverBudget.
	budget := newByteBudget()
	type sized struct {
		req *federationv1.DeliverRequest
		n   int
	}
	reqs := make(chan sized, deliverGroup)
	recvErr := make(chan error, 1)
	go func() {
		defer close(reqs)
		for {
			req, err := stream.Recv()
			n := 0
			if err == nil {
				n = proto.Size(req)
				err = budget.take(ctx, n)
			}
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case reqs <- sized{req, n}:
			case <-ctx.Done():
				// The loop below reads recvErr once reqs is closed.
				recvErr <- ctx.Err()
				return
			}
		}
	}()
	group := make([]*federationv1.DeliverRequest, 0, deliverGroup)
	for {
		first, ok := <-reqs
		if !ok {
			err := <-recvErr
			if unreadable(err) {
				return s.refuseUnreadable(from, err)
			}
			if ctx.Err() != nil || errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled {
				return nil
			}
			return err
		}
		group = append(group[:0], first.req)
		held := first.n // bytes of the group, given back once it is answered
	more:
		for len(group) < deliverGroup {
			select {
			case r, ok := <-reqs:
				if !ok {
					break more
				}
				group, held = append(group, r.req), held+r.n
			default:
				break more
			}
		}
		resps, err := s.receive(ctx, from, group)
		if err != nil {
			return err
		}
		for _, resp := range resps {
			if err := stream.Send(resp); err != nil {
				return err
			}
		}
		budget.give(held)
	}
}

// deliverGroup is the most items of one stream committed together.
const deliverGroup = 256

// receive handles items in order: runs of envelopes as one batch, other
// items one by one. It returns the acks, in order. An error ends the
// stream without acks for the items not committed, so the sender keeps
// them and retries.
func (s *federationService) receive(ctx context.Context, from pki.Identity, items []*federationv1.DeliverRequest) ([]*federationv1.DeliverResponse, error) {
	resps := make([]*federationv1.DeliverResponse, 0, len(items))
	for len(items) > 0 {
		if items[0].GetItem() == nil {
			return resps, status.Error(codes.InvalidArgument, "deliver: the request carries no item")
		}
		if items[0].GetEnvelope() == nil {
			outcome, reason, err := s.node.ReceiveItem(ctx, from, items[0])
			if err != nil {
				return resps, s.receiptFailed(from, err)
			}
			resps = append(resps, deliverResponse(items[0].GetSeq(), outcome, reason))
			items = items[1:]
			continue
		}
		run := 1
		for run < len(items) && items[run].GetEnvelope() != nil {
			run++
		}
		rs := make([]node.Receipt, run)
		for i := range rs {
			rs[i].Envelope = items[i].GetEnvelope()
		}
		if err := s.node.ReceiveBatch(ctx, from, rs); err != nil {
			return resps, s.receiptFailed(from, err)
		}
		for i, r := range rs {
			resps = append(resps, deliverResponse(items[i].GetSeq(), r.Outcome, r.Reason))
		}
		items = items[run:]
	}
	return resps, nil
}

func (s *federationService) receiptFailed(from pki.Identity, err error) error {
	s.log.Error("receipt failed", "partner", from.Party, "error", err)
	// Not committed: the stream ends without an ack, so the sender keeps
	// the item and retries; a full or read-only store says so.
	if st := storeStatus(err, partnerStoreText); st != nil {
		return st
	}
	return status.Error(codes.Unavailable, "the node could not store the envelope; retry later")
}

func deliverResponse(seq uint64, outcome node.Outcome, reason policy.Reason) *federationv1.DeliverResponse {
	resp := &federationv1.DeliverResponse{Seq: seq}
	switch outcome {
	case node.Accepted:
		resp.Outcome = federationv1.Outcome_OUTCOME_ACCEPTED
	case node.Duplicate:
		resp.Outcome = federationv1.Outcome_OUTCOME_DUPLICATE
	default:
		resp.Outcome = federationv1.Outcome_OUTCOME_REJECTED
		resp.Reason = string(reason.Rule)
		resp.Message = reason.Message
	}
	return resp
}

// unreadable reports whether a Deliver stream's receive error is a message
// that could not be read: over the size limit (ResourceExhausted), or
// bytes that do not decode as a DeliverRequest (grpc's unmarshal error,
// Internal). Other receive errors (the client closed the stream, the
// connection broke) are not.
func unreadable(err error) bool {
	st := status.Convert(err)
	return st.Code() == codes.ResourceExhausted || st.Code() == codes.Internal && strings.Contains(st.Message(), "unmarshal")
}

// refuseUnreadable records an unreadable message (see unreadable) as a
// security event naming the partner: no partner's node sends one. grpc has
// already ended the stream with err's status; the partner may open a new
// stream.
func (s *federationService) refuseUnreadable(from pki.Identity, err error) error {
	what := "the message does not decode as a federation item"
	if status.Code(err) == codes.ResourceExhausted {
		what = "the message is larger than this node accepts"
	}
	s.log.Warn("unreadable federation message", "partner", from.Party, "error", err)
	if rerr := s.node.Unreadable(from, what+" ("+status.Convert(err).Message()+")"); rerr != nil {
		s.log.Error("record security event", "partner", from.Party, "error", rerr)
	}
	return err
}

// clientService serves officers and subscribers of the node's party.
type clientService struct {
	clientv1.UnimplementedClientServiceServer
	node *node.Node
	log  *slog.Logger
	// authn checks a PublishStream's caller again before each request.
	authn *authn
	// poll bounds how long a subscription waits before re-reading the feed.
	poll time.Duration
	// stall is how long a subscription's send queue may stay full.
	stall time.Duration
	cut   *cutoff
	// prepared holds deliveries encoded once for every stream they go to.
	prepared preparedMemo
	// recording lets a resuming stream wait for the recorders of ended
	// streams of the same subscriber.
	recording recordings
	// recorders are the goroutines writing subscriptions' delivery events;
	// the server waits for them before it closes the store.
	recorders sync.WaitGroup
	// live counts the subscriptions streaming now (see runAhead).
	live atomic.Int64
}

// CursorKey is the key of a subscriber's saved cursor: kind/name.
func CursorKey(id pki.Identity) string { return string(id.Kind) + "/" + id.Name }

func (s *clientService) Publish(ctx context.Context, req *clientv1.PublishRequest) (*clientv1.PublishResponse, error) {
	by, err := mustCaller(ctx)
	if err != nil {
		return nil, err
	}
	return s.publish(ctx, "Publish", by, req)
}

// publish publishes one report for Publish and PublishStream.
func (s *clientService) publish(ctx context.Context, method string, by pki.Identity, req *clientv1.PublishRequest) (*clientv1.PublishResponse, error) {
	in := node.PublishInput{Topics: req.GetTopics()}
	for _, p := range req.GetPortions() {
		in.Portions = append(in.Portions, node.NewPortion{
			Banner: p.GetBanner(), Topics: p.GetTopics(), ContentType: p.GetContentType(), Title: p.GetTitle(), Body: p.GetBody(),
		})
	}
	for _, r := range req.GetRoute() {
		in.Route = append(in.Route, policy.RouteEntry{Via: r.GetVia(), To: r.GetTo()})
	}
	id, rels, err := s.node.Publish(ctx, by, in)
	if err != nil {
		return nil, toStatus(s.log, method, err)
	}
	resp := &clientv1.PublishResponse{Id: id}
	for _, r := range rels {
		rel := &clientv1.Release{Party: r.Party, Held: r.Held}
		for _, rs := range r.Reasons {
			rel.Decisions = append(rel.Decisions, node.DecisionProto(rs))
		}
		resp.Releases = append(resp.Releases, rel)
	}
	return resp, nil
}

func (s *clientService) ListReports(ctx context.Context, req *clientv1.ListReportsRequest) (*clientv1.ListReportsResponse, error) {
	limit := int(req.GetLimit())
	if limit == 0 {
		limit = 100
	}
	if limit > 1000 {
		return nil, status.Error(codes.InvalidArgument, "limit is at most 1000")
	}
	rs, err := s.node.List(ctx, limit)
	if err != nil {
		return nil, toStatus(s.log, "ListReports", err)
	}
	return &clientv1.ListReportsResponse{Reports: rs}, nil
}

func (s *clientService) GetReport(ctx context.Context, req *clientv1.GetReportRequest) (*clientv1.GetReportResponse, error) {
	if req.GetId() == "" {
		return nil, status.Error(codes.InvalidArgument, "a report id is required")
	}
	v, err := s.node.Get(ctx, req.GetId())
	if err != nil {
		return nil, toStatus(s.log, "GetReport", err)
	}
	return &clientv1.GetReportResponse{Report: v}, nil
}

func (s *clientService) GetProvenance(ctx context.Context, req *clientv1.GetProvenanceRequest) (*clientv1.GetProvenanceResponse, error) {
	if req.GetId() == "" {
		return nil, status.Error(codes.InvalidArgument, "a report id is required")
	}
	v, evs, err := s.node.Provenance(ctx, req.GetId())
	if err != nil {
		return nil, toStatus(s.log, "GetProvenance", err)
	}
	resp := &clientv1.GetProvenanceResponse{Report: v}
	for _, e := range evs {
		resp.Events = append(resp.Events, eventProto(e))
	}
	return resp, nil
}

func eventProto(e *storev1.Event) *clientv1.ProvenanceEvent {
	return &clientv1.ProvenanceEvent{
		Seq: e.GetSeq(), Time: e.GetTime(), Kind: e.GetKind(), Party: e.GetParty(), Subject: e.GetSubject(),
		Decisions: e.GetDecisions(), Detail: e.GetDetail(), Portions: e.GetPortions(),
	}
}

func (s *clientService) Share(ctx context.Context, req *clientv1.ShareRequest) (*clientv1.ShareResponse, error) {
	by, err := mustCaller(ctx)
	if err != nil {
		return nil, err
	}
	if req.GetId() == "" || req.GetTo() == "" {
		return nil, status.Error(codes.InvalidArgument, "a report id and a partner (to) are required")
	}
	if !marking.ValidParty(req.GetTo()) {
		return nil, status.Errorf(codes.InvalidArgument, "%q is not a party code", req.GetTo())
	}
	reasons, err := s.node.Share(ctx, by, req.GetId(), req.GetTo(), req.GetPortions())
	var denied *node.DeniedError
	if errors.As(err, &denied) {
		return nil, deniedStatus(denied.Reasons, req.GetId())
	}
	if err != nil {
		return nil, toStatus(s.log, "Share", err)
	}
	resp := &clientv1.ShareResponse{}
	for _, r := range reasons {
		resp.Decisions = append(resp.Decisions, node.DecisionProto(r))
	}
	return resp, nil
}

func (s *clientService) Subscribe(req *clientv1.SubscribeRequest, stream grpc.ServerStreamingServer[clientv1.SubscribeResponse]) error {
	ctx := stream.Context()
	who, err := mustCaller(ctx)
	if err != nil {
		return err
	}
	sub, officer, err := s.node.Subscriber(who)
	if err != nil {
		return toStatus(s.log, "Subscribe", err)
	}
	topics, err := marking.NormalizeTopics(req.GetTopics())
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "topics: %v", err)
	}
	key := CursorKey(who)
	cursor := req.GetAfter()
	limit := req.GetLimit() // deliveries still to send; 0: no limit
	if req.GetResumeSaved() {
		// A stream of this subscriber that ended may still be writing its
		// last cursor: resume from that one.
		s.recording.wait(key)
		if cursor, err = s.node.Store().Cursor(key); err != nil {
			return toStatus(s.log, "Subscribe", err)
		}
	}
	// A cursor past the feed's end was never sent by this node (mistyped,
	// or kept from before its store was restored): the stream would wait,
	// silent, for reports numbered past it, and skip the ones before.
	end, err := s.node.Store().FeedEnd()
	if err != nil {
		return toStatus(s.log, "Subscribe", err)
	}
	if cursor > end {
		what := "--after " + strconv.FormatUint(cursor, 10) + " is"
		if req.GetResumeSaved() {
			what = "the cursor saved for " + who.Name + ", " + strconv.FormatUint(cursor, 10) + ", is"
		}
		return status.Errorf(codes.OutOfRange, "%s past the end of this node's feed (its last report is cursor %d), so no report this node sent has it: give --after with a cursor this node sent (0: from the start)", what, end)
	}
	if who.Kind == pki.KindService && s.cut != nil {
		var done func()
		ctx, done = s.cut.subscription(ctx, who.Name)
		defer done()
		// A suspension that raced with the registration still ends it.
		if s.node.Suspended(node.SuspendSubscriber, who.Name) {
			return suspendedStatus(who.Name, cursor)
		}
	}
	if s.node.Store().ReadOnly() {
		// Deliveries could not be recorded in provenance.
		return storeStatus(store.ErrReadOnly, subscriberStoreText)
	}
	// A recorder writes what was sent (provenance records what was sent,
	// not what was prepared) and the cursor, in order, coalescing what
	// waits into one commit, so that neither sending nor a suspension
	// waits for a commit. The cursor it saves last is the last report sent
	// (or skipped as not for this subscriber), so --resume continues
	// exactly there.
	type sentUpTo struct {
		sent   node.SentDelivery // ReportID "": only the cursor moved
		cursor uint64
	}
	// The sender hands over what it sent since the recorder last took it;
	// see runAhead. A delivery that cannot be recorded ends the stream
	// (recordFailed): sending on would leave provenance without what was
	// sent. Nothing after it is recorded either, so the cursor saved is
	// never past a delivery not recorded, and a resumed subscription
	// sends those reports again.
	record := make(chan []sentUpTo)
	recordFailed := make(chan error, 1)
	var recordBroken atomic.Bool // the sender sends nothing more
	s.recorders.Add(1)
	go func() {
		defer s.recorders.Done()
		var ds []node.SentDelivery // reused: RecordDelivered keeps none of it
		var failed error
		unrecorded, first := 0, ""
		for sent := range record {
			ds = ds[:0]
			upTo := uint64(0)
			for _, r := range sent {
				if r.sent.ReportID != "" {
					ds = append(ds, r.sent)
				}
				upTo = max(upTo, r.cursor)
			}
			if failed == nil {
				if failed = s.node.RecordDelivered(who, ds, key, upTo); failed == nil {
					continue
				}
				recordBroken.Store(true)
				recordFailed <- failed // once: buffered, and failed stays set
				if len(ds) > 0 {
					first = ds[0].ReportID
				}
			}
			unrecorded += len(ds)
		}
		if failed != nil {
			s.log.Error("deliveries sent could not be recorded in provenance; the subscription ended, its saved cursor is before them, and a resumed subscription sends them again", "subscriber", who.String(), "unrecorded", unrecorded, "first_report", first, "error", failed)
		}
		s.recording.done(key)
	}()

	// A sender sends what the loop below queues (a delivery, or a cursor
	// past reports that are not for this subscriber), in order, and hands
	// what it sent to the recorder. The queue is bounded: a subscriber
	// that reads so slowly that the queue stays full for s.stall, one send
	// to it waiting all that time, is disconnected, with its cursor kept.
	// While the sender waits for its recorder instead (a slow commit), the
	// queue may stay full as long as that takes. The handler never waits for a
	// send, so a suspension or a stall ends the stream at once even when
	// the client has stopped reading; the sender then ends with the stream.
	type queued struct {
		d      *node.Delivery
		cursor uint64
		last   bool // the limit's last delivery: the sender closes lastSent once it is sent
	}
	queue := make(chan queued, subscriberQueue)
	lastSent := make(chan struct{})
	stop := make(chan struct{})       // the handler has returned
	sendFailed := make(chan error, 1) // the sender's send error
	var sentCursor atomic.Uint64
	sentCursor.Store(cursor)
	// The sender notes when it began the send it is in (0: it is not
	// sending), on a clock that only goes forward: a subscriber is stalled
	// when one send has waited s.stall for it to read. A sender that waits
	// for its recorder (a slow commit) is not sending, so the subscriber is
	// not blamed for the node's own disk.
	began := time.Now()
	var sendingSince atomic.Int64
	stuck := func() (bool, time.Duration) {
		since := sendingSince.Load()
		if since == 0 {
			return false, s.stall
		}
		waited := time.Since(began) - time.Duration(since)
		if waited >= s.stall {
			return true, 0
		}
		return false, s.stall - waited
	}
	go func() {
		last := cursor
		var pending []sentUpTo // sent, not yet handed to the recorder
		defer func() {
			<-stop // the handler has noted the stream's end (recording.start)
			if c := sentCursor.Load(); c != last {
				pending = append(pending, sentUpTo{cursor: c})
			}
			if len(pending) > 0 {
				record <- pending
			}
			close(record)
		}()
		for {
			var toRecorder chan<- []sentUpTo // nil: nothing to hand over
			if len(pending) > 0 {
				toRecorder = record
			}
			next := queue
			if len(pending) >= s.runAhead() {
				next = nil // the recorder is that far behind: wait for it
			}
			var q queued
			select {
			case <-stop:
				return
			case toRecorder <- pending:
				pending = nil
				continue
			case q = <-next:
			}
			if q.d == nil {
				sentCursor.Store(q.cursor)
				continue
			}
			msg, err := s.prepared.get(stream, *q.d)
			if err == nil {
				select {
				case <-stop:
					return
				default:
				}
				if recordBroken.Load() {
					return // the handler ends the stream (recordFailed)
				}
				sendingSince.Store(int64(max(time.Since(began), 1)))
				err = stream.SendMsg(msg)
				sendingSince.Store(0)
			}
			if err != nil {
				sendFailed <- err
				return
			}
			sentCursor.Store(q.cursor)
			pending = append(pending, sentUpTo{q.d.Sent(), q.cursor})
			last = q.cursor
			if q.last {
				close(lastSent)
			}
		}
	}()
	s.live.Add(1)
	defer func() {
		s.live.Add(-1)
		s.recording.start(key)
		close(stop)
	}()
	// wait waits until q is queued (send non-nil) or the limit's last
	// delivery is sent (recv, lastSent, non-nil), or the stream ends. A
	// subscriber that has not read for s.stall while the sender waits on
	// it ends it with stalled.
	wait := func(send chan<- queued, q queued, recv <-chan struct{}, stalled error) error {
		stall := time.NewTimer(s.stall)
		defer stall.Stop()
		for {
			select {
			case send <- q:
				return nil
			case <-recv:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			case err := <-sendFailed:
				return err
			case err := <-recordFailed:
				return errRecord{err}
			case <-stall.C:
				if is, wait := stuck(); !is {
					stall.Reset(wait)
					continue
				}
				return stalled
			}
		}
	}
	enqueue := func(q queued) error {
		select {
		case queue <- q:
			return nil
		default:
		}
		return wait(queue, q, nil, errSlowSubscriber)
	}
	ended := func(err error) error {
		select {
		case rerr := <-recordFailed:
			// What was sent is not all recorded: that, not a stall or a
			// suspension, is what the subscriber must be told (the saved
			// cursor is before it).
			err = errRecord{rerr}
		default:
		}
		var rec errRecord
		var prod errProduce
		switch {
		case errors.As(err, &rec):
			if st := storeStatus(rec.err, subscriberStoreText); st != nil {
				return st
			}
			return deliveryNotRecordedStatus()
		case context.Cause(ctx) == errSubscriberSuspended:
			return suspendedStatus(who.Name, sentCursor.Load())
		case errors.Is(err, errStalledReader):
			s.log.Warn("slow subscriber disconnected", "subscriber", who.String(), "stall", s.stall.String(), "cursor", sentCursor.Load())
			return status.Errorf(codes.ResourceExhausted, "subscriber %s stopped reading: nothing could be sent to it for %s; it is disconnected; the last report sent to it was cursor %d, and its saved cursor is kept: subscribe --resume continues after the last delivery recorded", who.Name, s.stall, sentCursor.Load())
		case errors.Is(err, errSlowSubscriber):
			s.log.Warn("slow subscriber disconnected", "subscriber", who.String(), "queued", subscriberQueue, "stall", s.stall.String(), "cursor", sentCursor.Load())
			return status.Errorf(codes.ResourceExhausted, "subscriber %s is reading too slowly: %d reports waited over %s to be sent; it is disconnected; the last report sent to it was cursor %d, and its saved cursor is kept: subscribe --resume continues after the last delivery recorded, once it can keep up", who.Name, subscriberQueue, s.stall, sentCursor.Load())
		case ctx.Err() != nil:
			return nil // the caller went away: the cursor stays at the last report sent
		case errors.As(err, &prod):
			// Reading the feed, or recording what the filter withheld,
			// failed (logged where it came): a store that cannot be
			// written is told as it is for the deliveries' records.
			if st := storeStatus(prod.err, subscriberStoreText); st != nil {
				return st
			}
			return status.Error(codes.Internal, "internal error; the node's log has the details")
		}
		return err
	}

	// drained waits until the limit's last delivery is sent: the stream
	// then ends, the cursor saved is that delivery's, and nothing after it
	// was sent. A subscriber that stops reading meanwhile, so that one send
	// waits s.stall, is disconnected as a slow one.
	drained := func() error { return wait(nil, queued{}, lastSent, errStalledReader) }

	// A producer reads the feed and prepares deliveries; this loop queues
	// them. The split lets a suspension end the stream at once even while
	// the producer is busy (it then stops on its own).
	type batch struct {
		ds   []node.Delivery
		last uint64
		err  error
	}
	batches := make(chan batch)
	go func() {
		defer close(batches)
		from := cursor
		// With a limit the producer prepares no delivery past it: preparing
		// records what the subscriber may not see of the reports it skips,
		// and a resumed subscription would read those again.
		toPrepare := int(req.GetLimit()) // 0: no limit
		for {
			changed := s.node.Store().FeedChanged()
			ds, last, err := s.node.Deliveries(ctx, who, sub, officer, from, topics, 256, toPrepare)
			if last != from || err != nil {
				select {
				case batches <- batch{ds, last, err}:
				case <-ctx.Done():
					return
				}
				if err != nil {
					return
				}
				from = last
				if toPrepare > 0 {
					if toPrepare -= len(ds); toPrepare == 0 {
						return
					}
				}
				continue
			}
			select {
			case <-ctx.Done():
				return
			case <-changed:
			case <-time.After(s.poll):
			}
		}
	}()
	for {
		var bt batch
		var ok bool
		select {
		case <-ctx.Done():
			return ended(nil)
		case err := <-sendFailed:
			return ended(err)
		case err := <-recordFailed:
			return ended(errRecord{err})
		case bt, ok = <-batches:
			if !ok {
				return ended(nil)
			}
		}
		if bt.err != nil {
			// Logged here, whatever ended tells the subscriber: a record
			// failure or a suspension that came first is what it is told.
			if storeStatus(bt.err, subscriberStoreText) != nil {
				s.log.Warn("subscription ended: the store cannot be written", "subscriber", who.String(), "cursor", sentCursor.Load(), "error", bt.err)
			} else {
				s.log.Error("subscription ended: preparing deliveries failed", "subscriber", who.String(), "cursor", sentCursor.Load(), "error", bt.err)
			}
			return ended(errProduce{bt.err})
		}
		for i := range bt.ds {
			q := queued{d: &bt.ds[i], cursor: bt.ds[i].Cursor}
			if limit > 0 {
				limit--
				q.last = limit == 0
			}
			if err := enqueue(q); err != nil {
				return ended(err)
			}
			if q.last {
				return ended(drained())
			}
		}
		if n := len(bt.ds); n == 0 || bt.ds[n-1].Cursor < bt.last {
			// Past reports that are not for this subscriber.
			if err := enqueue(queued{cursor: bt.last}); err != nil {
				return ended(err)
			}
		}
	}
}

// subscriberQueue is how many deliveries may wait to be sent to one
// subscription before the producer waits.
const subscriberQueue = 512

// recordBudget is how many deliveries the live subscriptions together may
// have sent and not yet recorded: each may run that far ahead of its
// recorder, which waits for a commit, before its sender waits too (see
// runAhead). What waits is held by the sender, which hands it all over
// whenever the recorder is free.
//
// With a channel of 64 (node.RecordAtOnce) between them, one subscription
// got at most ~65 deliveries a commit. At full rate, with a commit every
// 6-10 ms, it fell behind the reports arriving, read them back from the
// file once they had left the store's cache and verified them again (~12 %
// of the receiving node's CPU, BENCHMARKS.md, the fifteenth session); and a
// commit slower than subscriber_stall disconnected it as if it read too
// slowly. Many subscriptions share the budget: 1,000 streams of a fan-out
// each running 1,024 ahead spread out over the feed, and the node sent
// fewer deliveries a second with more memory than when each waited at 64
// and the streams kept together.
//
// What waits is sent but not recorded: after a crash, a resumed
// subscription gets it again (the cursor saved is the last recorded).
const recordBudget = 1024

// runAhead is how many deliveries one subscription may have sent and not
// yet recorded: its share of recordBudget, and at least node.RecordAtOnce.
func (s *clientService) runAhead() int {
	return max(node.RecordAtOnce, recordBudget/int(max(s.live.Load(), 1)))
}

// errSlowSubscriber ends a subscription whose queue stayed full too long;
// errStalledReader one with a limit, while its last deliveries are sent,
// to which nothing could be sent for as long.
var (
	errSlowSubscriber = errors.New("subscriber too slow")
	errStalledReader  = errors.New("subscriber stopped reading")
)

// errRecord ends a subscription whose deliveries could not be recorded.
type errRecord struct{ err error }

func (e errRecord) Error() string { return "record deliveries: " + e.err.Error() }

// errProduce ends a subscription whose deliveries could not be prepared.
type errProduce struct{ err error }

func (e errProduce) Error() string { return "prepare deliveries: " + e.err.Error() }

// recordings counts, per cursor key, the recorders of ended streams that
// are still writing, so that a stream resuming from the saved cursor reads
// the last one.
type recordings struct {
	mu   sync.Mutex
	keys map[string]*recordingKey
}

type recordingKey struct {
	n    int
	idle chan struct{} // closed when n drops to 0
}

// start notes that a stream of key ended and its recorder is finishing.
func (r *recordings) start(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.keys == nil {
		r.keys = map[string]*recordingKey{}
	}
	k := r.keys[key]
	if k == nil || k.n == 0 {
		k = &recordingKey{idle: make(chan struct{})}
		r.keys[key] = k
	}
	k.n++
}

// done notes that a recorder of key has finished.
func (r *recordings) done(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if k := r.keys[key]; k != nil && k.n > 0 {
		if k.n--; k.n == 0 {
			close(k.idle)
			delete(r.keys, key)
		}
	}
}

// wait waits until no recorder of an ended stream of key is writing.
func (r *recordings) wait(key string) {
	r.mu.Lock()
	k := r.keys[key]
	r.mu.Unlock()
	if k != nil {
		<-k.idle
	}
}

func consentProto(c *storev1.ConsentRecord) *clientv1.Consent {
	return &clientv1.Consent{
		Id: c.GetId(), ReportId: c.GetReportId(), Holder: c.GetHolder(), To: c.GetTo(), Originator: c.GetOriginator(),
		Portions: c.GetPortions(), Purpose: c.GetPurpose(), State: c.GetState(), Direction: c.GetDirection(), Reason: c.GetReason(),
		Requested: c.GetRequested(), Decided: c.GetDecided(), Expires: c.GetExpires(),
	}
}

func (s *clientService) RequestConsent(ctx context.Context, req *clientv1.RequestConsentRequest) (*clientv1.RequestConsentResponse, error) {
	by, err := mustCaller(ctx)
	if err != nil {
		return nil, err
	}
	if req.GetId() == "" || !marking.ValidParty(req.GetTo()) {
		return nil, status.Error(codes.InvalidArgument, "a report id and a party code (to) are required")
	}
	rec, err := s.node.RequestConsent(ctx, by, req.GetId(), req.GetTo(), req.GetPurpose(), req.GetPortions())
	if err != nil {
		return nil, toStatus(s.log, "RequestConsent", err)
	}
	return &clientv1.RequestConsentResponse{Consent: consentProto(rec)}, nil
}

func (s *clientService) ListConsents(ctx context.Context, _ *clientv1.ListConsentsRequest) (*clientv1.ListConsentsResponse, error) {
	cs, err := s.node.Consents(ctx)
	if err != nil {
		return nil, toStatus(s.log, "ListConsents", err)
	}
	resp := &clientv1.ListConsentsResponse{}
	for _, c := range cs {
		resp.Consents = append(resp.Consents, consentProto(c))
	}
	return resp, nil
}

func (s *clientService) DecideConsent(ctx context.Context, req *clientv1.DecideConsentRequest) (*clientv1.DecideConsentResponse, error) {
	by, err := mustCaller(ctx)
	if err != nil {
		return nil, err
	}
	if req.GetId() == "" {
		return nil, status.Error(codes.InvalidArgument, "a consent request id is required")
	}
	var ttl time.Duration
	if req.GetTtl() != nil {
		if err := req.GetTtl().CheckValid(); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "ttl: %v", err)
		}
		ttl = req.GetTtl().AsDuration()
	}
	rec, err := s.node.DecideConsent(ctx, by, req.GetId(), req.GetApprove(), req.GetWithdraw(), ttl, req.GetReason())
	if err != nil {
		return nil, toStatus(s.log, "DecideConsent", err)
	}
	return &clientv1.DecideConsentResponse{Consent: consentProto(rec)}, nil
}

// suspendedStatus ends a suspended subscriber's stream; sent is the cursor
// of the last report sent to it. (The cursor saved is that one unless
// recording it fails: --resume, not after=sent, is the way back.)
func suspendedStatus(name string, sent uint64) error {
	return suspendedCallStatus(fmt.Sprintf("subscriber %s is suspended; the last report sent to it was cursor %d, and its saved cursor is kept: after reinstatement, subscribe --resume continues after the last delivery recorded", name, sent))
}

// preparedMemo encodes a delivery once for all the streams it goes to:
// the node shares one view between the subscribers allowed the same
// portions, and the response (cursor and view) is then the same bytes on
// every stream. The server registers no compressor, so an encoding made on
// one stream is valid on any other.
type preparedMemo struct {
	m *lru.Map[preparedKey, *grpc.PreparedMsg]
}

type preparedKey struct {
	view   *clientv1.ReportView
	cursor uint64
}

// maxPrepared is how many encodings a generation of the memo holds: an
// encoding serves the subscribers that send the same report at about the
// same time (see store.maxDecoded for the size).
const maxPrepared = 2048

func newPreparedMemo() preparedMemo {
	return preparedMemo{lru.New[preparedKey, *grpc.PreparedMsg](maxPrepared)}
}

func (pm preparedMemo) get(stream grpc.ServerStream, d node.Delivery) (*grpc.PreparedMsg, error) {
	return pm.m.Load(preparedKey{d.View, d.Cursor}, func() (*grpc.PreparedMsg, error) {
		msg := &grpc.PreparedMsg{}
		return msg, msg.Encode(stream, &clientv1.SubscribeResponse{Cursor: d.Cursor, Report: d.View})
	})
}
