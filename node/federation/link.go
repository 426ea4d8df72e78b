// Package federation runs a node's links to its partners: each link dials
// its partner over mutual TLS, delivers the partner's outbox in order on one
// Deliver stream, removes each item once the partner has acknowledged it
// (after the partner's commit to disk), and reconnects with backoff while
// the partner is away or silent (keepalive). Nothing is lost: an item
// leaves the outbox only on acknowledgement; nothing is stored twice: the
// partner's receipt is idempotent, so an item resent after a broken stream
// is a duplicate.
package federation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	"github.com/tearline/tearline/node/store"
	federationv1 "github.com/tearline/tearline/proto/tearline/federation/v1"
	reportv1 "github.com/tearline/tearline/proto/tearline/report/v1"
	storev1 "github.com/tearline/tearline/proto/tearline/store/v1"
)

// Outbox is what a link needs of its node; node.Node is one.
type Outbox interface {
	Store() *store.Store
	OutboxChanged(party string) <-chan struct{}
	// PartnerUp is closed when the partner's node connects to this one:
	// a link waiting out a backoff tries again at once.
	PartnerUp(party string) <-chan struct{}
	// PartnerSuspended and SuspensionChanged hold the link while a security
	// team has suspended the partner: nothing is sent, nothing is dropped.
	PartnerSuspended(party string) bool
	SuspensionChanged() <-chan struct{}
}

// Link delivers one partner's outbox.
type Link struct {
	Node    Outbox
	Party   string
	Address string
	Creds   credentials.TransportCredentials
	Log     *slog.Logger
	Clock   func() time.Time
	// Window is how many items may wait for acknowledgement at once.
	Window int
	// MinBackoff and MaxBackoff bound the wait between reconnects.
	MinBackoff, MaxBackoff time.Duration
	// Keepalive pings a partner that has sent nothing for a while and drops
	// the connection when it does not answer, so that a partner that
	// vanished without closing the connection (a host gone, a firewall
	// that lost the flow) is noticed and the link reconnects. Zero means
	// DefaultKeepalive.
	Keepalive keepalive.ClientParameters
	// DialOptions are extra options (tests).
	DialOptions []grpc.DialOption
}

// DefaultKeepalive pings after 10 s without a byte from the partner (the
// shortest interval gRPC allows; a partner's server accepts pings every 5 s)
// and gives the partner 5 s to answer.
var DefaultKeepalive = keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 5 * time.Second, PermitWithoutStream: true}

func (l *Link) defaults() {
	if l.Window <= 0 {
		l.Window = 1024
	}
	if l.MinBackoff <= 0 {
		l.MinBackoff = 100 * time.Millisecond
	}
	if l.MaxBackoff <= 0 {
		l.MaxBackoff = 5 * time.Second
	}
	if l.Clock == nil {
		l.Clock = time.Now
	}
	if l.Log == nil {
		l.Log = slog.New(slog.DiscardHandler)
	}
	if l.Keepalive == (keepalive.ClientParameters{}) {
		l.Keepalive = DefaultKeepalive
	}
}

// Run delivers until ctx ends. It returns nil then; it never gives up on a
// partner that is away.
func (l *Link) Run(ctx context.Context) error {
	l.defaults()
	log := l.Log.With("partner", l.Party, "address", l.Address)
	backoff := l.MinBackoff
	for {
		for {
			changed := l.Node.SuspensionChanged()
			if !l.Node.PartnerSuspended(l.Party) {
				break
			}
			log.Warn("link held: partner suspended")
			select {
			case <-ctx.Done():
				return nil
			case <-changed:
			}
		}
		up := l.Node.PartnerUp(l.Party)
		delivered, err := l.session(ctx)
		if errors.Is(err, errSuspended) {
			continue
		}
		if ctx.Err() != nil {
			return nil
		}
		if delivered > 0 {
			backoff = l.MinBackoff
		}
		log.Warn("link down", "error", err, "retry_in", backoff.String())
		// Wait out the backoff, but try again early: after MinBackoff when
		// there is something new to deliver, at once when the partner's
		// node connects here (it has come back).
		jitter := time.Duration(rand.Int64N(int64(backoff)/5 + 1))
		wake := l.Node.OutboxChanged(l.Party)
		timer := time.NewTimer(backoff + jitter)
	wait:
		for {
			select {
			case <-ctx.Done():
				timer.Stop()
				return nil
			case <-timer.C:
				break wait
			case <-up:
				timer.Stop()
				break wait
			case <-wake:
				wake = nil
				timer.Reset(l.MinBackoff)
			}
		}
		backoff = min(backoff*2, l.MaxBackoff)
	}
}

type pending struct {
	seq      uint64
	reportID string
	item     string // "" for an envelope, else the request's kind
}

// session runs one connection: send the outbox in order, handle acks. It
// returns how many items were acknowledged and why it ended.
func (l *Link) session(ctx context.Context) (int, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	opts := append([]grpc.DialOption{grpc.WithTransportCredentials(l.Creds), grpc.WithKeepaliveParams(l.Keepalive)}, l.DialOptions...)
	conn, err := grpc.NewClient(l.Address, opts...)
	if err != nil {
		return 0, fmt.Errorf("dial: %w", err)
	}
	defer conn.Close()
	stream, err := federationv1.NewFederationServiceClient(conn).Deliver(ctx, grpc.WaitForReady(false), grpc.ForceCodecV2(codec))
	if err != nil {
		return 0, fmt.Errorf("open stream: %w", err)
	}
	acks := make(chan *federationv1.DeliverResponse, l.Window)
	recvErr := make(chan error, 1)
	go func() {
		for {
			resp, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case acks <- resp:
			case <-ctx.Done():
				recvErr <- ctx.Err()
				return
			}
		}
	}()
	st := l.Node.Store()
	suspendedCh := l.Node.SuspensionChanged()
	if l.Node.PartnerSuspended(l.Party) {
		return 0, errSuspended
	}
	// A recorder records the acks (removes the items from the outbox, with
	// their provenance events), coalescing what waits into one commit that
	// joins the store's next one, so that sending never waits for a commit.
	// Items acknowledged but not yet recorded still count against the
	// window; at the end of the session the recorder records what it holds.
	toRecord := make(chan []store.Acked, l.Window) // ≤ Window acks, ≥ 1 each
	recorded := make(chan int, l.Window)
	recordErr := make(chan error, 1)
	recorderDone := make(chan struct{})
	go func() {
		defer close(recorderDone)
		for acks := range toRecord {
		more:
			for {
				select {
				case as, ok := <-toRecord:
					if !ok {
						break more
					}
					acks = append(acks, as...)
				default:
					break more
				}
			}
			if err := st.Ack(l.Clock(), l.Party, acks...); err != nil {
				recordErr <- err
				return
			}
			recorded <- len(acks)
		}
	}()
	defer func() {
		close(toRecord)
		<-recorderDone
	}()
	var inflight []pending
	var lastSent uint64
	delivered, unrecorded := 0, 0
	for {
		wake := l.Node.OutboxChanged(l.Party)
		if room := l.Window - len(inflight) - unrecorded; room > 0 {
			items, err := st.OutboxWire(l.Party, lastSent, room)
			if err != nil {
				return delivered, fmt.Errorf("read outbox: %w", err)
			}
			for _, it := range items {
				msg, item := outboxRequest(it)
				if err := stream.SendMsg(msg); err != nil {
					return delivered, fmt.Errorf("send: %w", err)
				}
				inflight = append(inflight, pending{seq: it.Seq, reportID: it.ReportID, item: item})
				lastSent = it.Seq
			}
			if len(items) == room {
				wake = closed // more to send as soon as there is room
			}
		}
		select {
		case <-ctx.Done():
			return delivered, ctx.Err()
		case err := <-recvErr:
			return delivered, fmt.Errorf("receive: %w", err)
		case resp := <-acks:
			// Take every ack that has arrived and record them in one commit.
			resps := []*federationv1.DeliverResponse{resp}
		drain:
			for len(resps) < len(inflight) {
				select {
				case r := <-acks:
					resps = append(resps, r)
				default:
					break drain
				}
			}
			done := make([]store.Acked, 0, len(resps))
			for i, r := range resps {
				if i >= len(inflight) || inflight[i].seq != r.GetSeq() {
					return delivered, fmt.Errorf("%w: ack for %d out of order", errProtocol, r.GetSeq())
				}
				p := inflight[i]
				ev := ackEvent(l.Party, p.reportID, p.item, r)
				if p.item == "audit-checkpoint" {
					// Not a provenance event: recording it would grow the
					// log that the checkpoint covers, and call for another
					// one (a refusal is logged below).
					ev = nil
				}
				done = append(done, store.Acked{Seq: p.seq, Event: ev})
				if r.GetOutcome() == federationv1.Outcome_OUTCOME_REJECTED {
					l.Log.Warn("partner refused envelope", "partner", l.Party, "report", p.reportID, "rule", r.GetReason())
				}
			}
			toRecord <- done
			inflight = inflight[len(done):]
			unrecorded += len(done)
			delivered += len(done)
		case n := <-recorded:
			unrecorded -= n
		case err := <-recordErr:
			return delivered, fmt.Errorf("record ack: %w", err)
		case <-wake:
		case <-suspendedCh:
			suspendedCh = l.Node.SuspensionChanged()
			if l.Node.PartnerSuspended(l.Party) {
				return delivered, errSuspended
			}
		}
	}
}

// errSuspended ends a session when the partner is suspended.
var errSuspended = errors.New("federation: partner suspended")

var closed = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

var errProtocol = errors.New("federation: protocol error")

// maxPartnerText bounds what of a partner's refusal message is kept: it is
// stored in provenance and in the audit log, and a hostile partner could
// otherwise make one cheap item cost megabytes of both.
const maxPartnerText = 1024

// partnerText is a partner's refusal message as kept: at most
// maxPartnerText bytes of valid UTF-8, with the length cut off said.
func partnerText(m string) string {
	if len(m) <= maxPartnerText {
		return strings.ToValidUTF8(m, "\uFFFD")
	}
	return strings.ToValidUTF8(m[:maxPartnerText], "") + fmt.Sprintf("... (%d bytes in all)", len(m))
}

// partnerRule is a partner's refusal rule as kept: a rule id is at most 64
// lower-case letters, digits and '-'; anything else is "unknown".
func partnerRule(r string) string {
	if r == "" || len(r) > 64 {
		return "unknown"
	}
	for _, c := range r {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return "unknown"
		}
	}
	return r
}

// ackEvent is the provenance event of an acknowledgement. For an item
// other than an envelope its detail starts with the item's kind, so that
// only envelope acknowledgements count as the partner holding the report.
func ackEvent(party, reportID, item string, resp *federationv1.DeliverResponse) *storev1.Event {
	ev := &storev1.Event{ReportId: reportID, Party: party}
	switch resp.GetOutcome() {
	case federationv1.Outcome_OUTCOME_ACCEPTED:
		ev.Kind = "acknowledged"
	case federationv1.Outcome_OUTCOME_DUPLICATE:
		ev.Kind = "acknowledged"
		ev.Detail = "duplicate"
	default:
		ev.Kind = "refused-by-partner"
		ev.Decisions = []*reportv1.Decision{{Rule: partnerRule(resp.GetReason()), Party: party, Message: partnerText(resp.GetMessage())}}
	}
	if item != "" {
		ev.Detail = strings.TrimSuffix(item+": "+ev.Detail, ": ")
	}
	return ev
}

// outboxRequest is the message that sends an outbox item, and the item's
// kind for provenance ("" for an envelope). An envelope is sent as it was
// stored, in an encodedRequest.
func outboxRequest(it store.OutboxWireEntry) (any, string) {
	if it.Item == nil {
		return &encodedRequest{head: requestHead(it.Seq, len(it.Envelope)), envelope: it.Envelope}, ""
	}
	if r := it.Item.GetRequest(); r != nil {
		r.Seq = it.Seq
		return r, itemKind(r)
	}
	return &federationv1.DeliverRequest{Seq: it.Seq, Item: &federationv1.DeliverRequest_Envelope{Envelope: it.Item.GetEnvelope()}}, ""
}

// itemKind names a request item for provenance.
func itemKind(r *federationv1.DeliverRequest) string {
	switch r.GetItem().(type) {
	case *federationv1.DeliverRequest_ConsentRequest:
		return "consent-request"
	case *federationv1.DeliverRequest_ConsentDecision:
		return "consent-decision"
	case *federationv1.DeliverRequest_Crisis:
		return "crisis"
	case *federationv1.DeliverRequest_HopNotice:
		return "hop-notice"
	case *federationv1.DeliverRequest_Withdrawal:
		return "withdrawal"
	case *federationv1.DeliverRequest_WithdrawalAck:
		return "withdrawal-ack"
	case *federationv1.DeliverRequest_AuditCheckpoint:
		return "audit-checkpoint"
	}
	return "item"
}
