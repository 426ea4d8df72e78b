package node

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tearline/tearline/node/policy"
	"github.com/tearline/tearline/node/store"
	"github.com/tearline/tearline/pki"
	storev1 "github.com/tearline/tearline/proto/tearline/store/v1"
)

// Suspension kinds.
const (
	SuspendPartner    = "partner"
	SuspendSubscriber = "subscriber"
)

// suspensions is the in-memory view of the store's suspensions, read on
// every handshake, call and release; the store is the record that
// survives restarts.
type suspensions struct {
	mu        sync.RWMutex
	set       map[string]*storev1.Suspension // kind/name
	changed   chan struct{}
	listeners []func(kind, name string)
}

func (s *suspensions) load(st *store.Store) error {
	all, err := st.Suspensions()
	if err != nil {
		return err
	}
	s.set = map[string]*storev1.Suspension{}
	s.changed = make(chan struct{})
	for _, x := range all {
		s.set[x.GetKind()+"/"+x.GetName()] = x
	}
	return nil
}

// Suspended reports whether a partner or subscriber is suspended.
func (n *Node) Suspended(kind, name string) bool {
	n.susp.mu.RLock()
	defer n.susp.mu.RUnlock()
	_, ok := n.susp.set[kind+"/"+name]
	return ok
}

// PartnerSuspended reports whether party is a suspended partner.
func (n *Node) PartnerSuspended(party string) bool { return n.Suspended(SuspendPartner, party) }

// SuspensionChanged returns a channel closed at the next suspension or
// reinstatement.
func (n *Node) SuspensionChanged() <-chan struct{} {
	n.susp.mu.RLock()
	defer n.susp.mu.RUnlock()
	return n.susp.changed
}

// OnSuspend registers fn to run, synchronously, when a partner or a
// subscriber is suspended; the gateway closes connections and streams there.
func (n *Node) OnSuspend(fn func(kind, name string)) {
	n.susp.mu.Lock()
	defer n.susp.mu.Unlock()
	n.susp.listeners = append(n.susp.listeners, fn)
}

// Suspend cuts a partner or a subscriber off: recorded first (it survives a
// restart), then in force for every new handshake and call, then every live
// connection and stream of it is closed before Suspend returns.
func (n *Node) Suspend(ctx context.Context, by pki.Identity, kind, name, reason string) (*storev1.Suspension, error) {
	if err := n.suspendable(kind, name); err != nil {
		return nil, err
	}
	if strings.TrimSpace(reason) == "" || len(reason) > maxPurpose {
		return nil, fmt.Errorf("%w: say why (--reason, at most %d bytes)", ErrInvalid, maxPurpose)
	}
	if err := freeText("the reason (--reason)", reason); err != nil {
		return nil, err
	}
	if n.Suspended(kind, name) {
		return nil, fmt.Errorf("%w: %s %s is already suspended", ErrInvalid, kind, name)
	}
	now := n.clock()
	rec := &storev1.Suspension{Kind: kind, Name: name, Reason: reason, By: by.String(), Since: timestamppb.New(now)}
	if err := n.st.Update(now, func(t *store.Tx) error { return t.PutSuspension(rec) }); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInternal, err)
	}
	n.susp.mu.Lock()
	n.susp.set[kind+"/"+name] = rec
	close(n.susp.changed)
	n.susp.changed = make(chan struct{})
	listeners := slices.Clone(n.susp.listeners)
	n.susp.mu.Unlock()
	for _, fn := range listeners {
		fn(kind, name)
	}
	n.log.Warn("suspended", "kind", kind, "name", name, "by", by.String(), "reason", reason)
	return rec, nil
}

// suspendable says why kind/name cannot be suspended: an unknown kind, or
// a name this node's configuration does not hold.
func (n *Node) suspendable(kind, name string) error {
	switch kind {
	case SuspendPartner:
		if _, ok := n.partners[name]; !ok {
			return fmt.Errorf("%w: %q is not a partner of %s (partners: %s)", ErrInvalid, name, n.party, strings.Join(n.partnerList(), ", "))
		}
	case SuspendSubscriber:
		if _, ok := n.subscribers[name]; !ok {
			return fmt.Errorf("%w: %q is not a configured subscriber of this node", ErrInvalid, name)
		}
	default:
		return fmt.Errorf("%w: unknown suspension kind %q", ErrInvalid, kind)
	}
	return nil
}

// Reinstate lifts a suspension; held traffic then flows again in order.
func (n *Node) Reinstate(ctx context.Context, by pki.Identity, kind, name string) error {
	now := n.clock()
	var found bool
	if err := n.st.Update(now, func(t *store.Tx) error {
		var err error
		found, err = t.DeleteSuspension(kind, name, by.String())
		return err
	}); err != nil {
		return fmt.Errorf("%w: %w", ErrInternal, err)
	}
	if !found {
		// A suspension outlives its name in the configuration, so only a
		// name with none is told it is unknown.
		if err := n.suspendable(kind, name); err != nil {
			return err
		}
		return fmt.Errorf("%w: %s %q is not suspended", ErrInvalid, kind, name)
	}
	n.susp.mu.Lock()
	delete(n.susp.set, kind+"/"+name)
	close(n.susp.changed)
	n.susp.changed = make(chan struct{})
	n.susp.mu.Unlock()
	if kind == SuspendPartner {
		n.wake([]string{name})
	}
	n.log.Warn("reinstated", "kind", kind, "name", name, "by", by.String())
	return nil
}

// SuspensionOf returns the suspension of a partner or subscriber, or nil.
func (n *Node) SuspensionOf(kind, name string) *storev1.Suspension {
	n.susp.mu.RLock()
	defer n.susp.mu.RUnlock()
	return n.susp.set[kind+"/"+name]
}

// SubscriberConfigs lists the configured subscribers, by name.
func (n *Node) SubscriberConfigs() []policy.Subscriber {
	out := make([]policy.Subscriber, 0, len(n.subscribers))
	for _, s := range n.subscribers {
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b policy.Subscriber) int { return strings.Compare(a.Name, b.Name) })
	return out
}
