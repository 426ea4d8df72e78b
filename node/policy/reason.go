package policy

import "fmt"

// Rule names the rule of DESIGN §3 that decided. The values are stable: they
// are written to the audit log and carried in gRPC error details.
type Rule string

// The rules. Release, Deliver and Receipt return only these.
const (
	RuleOrigin          Rule = "origin"           // allow: the originator releases inside REL TO
	RuleRelay           Rule = "relay"            // allow: the originator's signed route names the holder as relay
	RuleRelTo           Rule = "rel-to"           // allow: non-ORCON re-share inside REL TO; deny: recipient outside REL TO
	RuleConsent         Rule = "consent"          // allow: a consent grant of the originator
	RuleCrisis          Rule = "crisis"           // allow: a crisis declaration of the originator
	RuleSuspended       Rule = "suspended"        // deny: the partner or subscriber is suspended
	RuleNoAgreement     Rule = "no-agreement"     // deny: no active agreement with the partner
	RuleAgreementScope  Rule = "agreement-scope"  // deny: the portion is above or outside the agreement
	RuleNoForn          Rule = "noforn"           // deny: NOFORN never leaves the originator
	RuleThirdParty      Rule = "third-party-rule" // deny: ORCON and no consent of the originator
	RuleOriginatorHolds Rule = "originator-holds" // deny: back to the report's originator, which already holds it
	RuleClearance       Rule = "clearance"        // deny: the subscriber's clearance is below the portion
	RuleNeedToKnow      Rule = "need-to-know"     // deny: a topic of the portion is outside the subscriber's need-to-know
	RuleBadSignature    Rule = "bad-signature"    // deny: reserved for the caller, who checks signatures and digests
	RuleBadChain        Rule = "bad-chain"        // deny: a hop of the chain has no basis the recipient can check
	RuleDeliver         Rule = "deliver"          // allow: delivery to a local subscriber
	RuleBadInput        Rule = "bad-input"        // deny: the input is malformed (a fault of the caller)
)

// Reason is the outcome of one decision for one portion, allow or deny.
type Reason struct {
	Allowed bool
	Rule    Rule
	Index   uint32 // portion index
	Banner  string // portion marking banner (empty when the marking is not valid)
	// Party is the other party of the decision: the recipient for Release,
	// the subscriber name for Deliver, the sender (the TLS peer, whom a
	// rejection names in its security event) for Receipt.
	Party string
	// Authority is the grant id (RuleConsent) or crisis declaration id
	// (RuleCrisis) that allowed it; empty otherwise.
	Authority string
	// Message is one plain sentence; it never contains portion content.
	Message string
	// Next says, for a denial, what would make it allowed (or what to do
	// when nothing would); it is empty when allowed.
	Next string
}

// String returns the reason in one line, for logs and errors.
func (r Reason) String() string {
	verdict := "deny"
	if r.Allowed {
		verdict = "allow"
	}
	if r.Next == "" {
		return fmt.Sprintf("%s %s: %s", verdict, r.Rule, r.Message)
	}
	return fmt.Sprintf("%s %s: %s (next: %s)", verdict, r.Rule, r.Message, r.Next)
}

func (r Reason) allow(rule Rule, authority, msg string) Reason {
	r.Allowed = true
	r.Rule = rule
	r.Authority = authority
	r.Message = msg
	r.Next = ""
	return r
}

func (r Reason) deny(rule Rule, msg, next string) Reason {
	r.Allowed = false
	r.Rule = rule
	r.Authority = ""
	r.Message = msg
	r.Next = next
	return r
}
