package node

import (
	"fmt"
	"sync"
	"time"

	"github.com/tearline/tearline/node/policy"
	"github.com/tearline/tearline/pki"
	storev1 "github.com/tearline/tearline/proto/tearline/store/v1"
)

// ErrSuspended is the refusal of a suspended subscriber's call. It says
// nothing of why: the reason is the security team's, in the audit log.
var ErrSuspended = fmt.Errorf("%w: suspended", ErrDenied)

// SecuritySuspendedAttempt is the kind of the security event recording that
// a suspended subscriber or partner tried again and was refused.
const SecuritySuspendedAttempt = "suspended-attempt"

// attemptEvery bounds the records of a suspended identity's attempts: at
// most one security event in each, counting the attempts in between, so
// that a client retrying in a loop is on record without flooding the log.
const attemptEvery = time.Minute

// attempts remembers when each suspended caller's attempt was last
// recorded: a subscriber of this node by its identity, a partner by its
// party, whatever identity its certificate names (a partner's CA can issue
// any number of them). Only configured subscribers and partners are
// suspended, and only a verified, unrevoked certificate gets here: the map
// stays small, and a suspended party cannot fill the log or the disk.
type attempts struct {
	mu   sync.Mutex
	last map[string]*attemptRecord
}

type attemptRecord struct {
	at         time.Time
	unrecorded int
}

// take decides whether an attempt by key at now is recorded; if so it
// returns how many of its attempts since its last record were not.
func (a *attempts) take(key string, now time.Time) (bool, int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	r := a.last[key]
	if r != nil && now.Sub(r.at) < attemptEvery {
		r.unrecorded++
		return false, 0
	}
	if a.last == nil {
		a.last = map[string]*attemptRecord{}
	}
	if r == nil {
		r = &attemptRecord{}
		a.last[key] = r
	}
	n := r.unrecorded
	r.at, r.unrecorded = now, 0
	return true, n
}

// SuspendedAttempt records that id, suspended here (a subscriber of this
// node, or a partner's node or officer), tried to do what and was refused:
// a security event (so an audit entry too), at most one each attemptEvery
// for one subscriber or one partner party, counting the attempts between.
// A failure to record is logged; the refusal stands either way.
func (n *Node) SuspendedAttempt(id pki.Identity, what string) {
	key := id.String()
	if id.Party != n.party {
		key = "party " + id.Party
	}
	ok, between := n.attempts.take(key, n.clock())
	if !ok {
		return
	}
	msg := fmt.Sprintf("%s is suspended here and tried to %s: refused", id, what)
	if between > 0 {
		msg += fmt.Sprintf(" (and %d more attempts since the last record)", between)
	}
	partner := ""
	if id.Party != n.party {
		partner = id.Party
	}
	if err := n.securityEvent(n.clock(), &storev1.SecurityEvent{Kind: SecuritySuspendedAttempt, Partner: partner, Rule: string(policy.RuleSuspended), Message: msg}); err != nil {
		n.log.Error("record a suspended caller's attempt", "caller", id.String(), "error", err)
	}
}
