// Package policy implements the release rules of DESIGN §3, once, as pure
// functions: [Release] (from a holder to a partner), [Deliver] (to a local
// subscriber) and [Receipt] (at a recipient, of what a partner sent). Each
// takes values and returns a [Reason]: the rule that decided, whether it
// allowed, the marking involved, the authority (grant or crisis declaration)
// that allowed it, a plain message, and for a denial what would make it
// allowed. The package does no I/O, reads no clock (the caller passes Now)
// and has no mutable state; signatures and digests are checked by the
// caller, who passes the verified facts.
//
// Messages are fixed sentences built only from party codes, report and
// authority ids, portion indexes, banners, level names, need-to-know topics
// and rule names. They never include portion content, purposes or any
// other free text of the inputs, and ids or codes that are not well formed
// are not echoed.
//
// Before applying any rule, each function checks that its input is well
// formed (valid party and report ids, a portion marking that validates under
// the scheme, a recipient other than the holder, a non-zero Now) and denies
// with [RuleBadInput] otherwise: a malformed input is a fault of the caller
// and must not be decided as if it meant something. A nil Scheme means
// [marking.Default].
//
// Choices made where DESIGN §3 is silent:
//
//   - An [Agreement] is active when ValidFrom <= now < ValidUntil; a zero
//     ValidFrom has no lower bound, a zero ValidUntil is never active (an
//     agreement must end). ReviewDate and Purpose do not affect decisions.
//     The agreement passed must name the recipient as Partner, or it counts
//     as no agreement. A portion with no topics is within any agreement; an
//     agreement with no topics admits any topic.
//   - A [Consent] covers (report R, portion p, holder H → X) at time t when
//     it has a well-formed ID, was signed by the originator, names exactly
//     R, H and X, lists p (or lists no portions, meaning all), is not
//     withdrawn and t < Expires. Purpose is recorded, not checked. When
//     several grants cover, the first in the input order is the authority.
//   - A [Crisis] declaration covers portion p and party X at time t when it
//     has a well-formed ID, was signed by the originator, is not Ended
//     (an ended declaration covers nothing, even for times before it
//     ended), t < Expires, X is in Parties, p is not NOFORN, p's
//     classification is at or below MaxClassification (which must be a
//     level of the scheme), and p has at least one topic and every topic
//     of p is in Topics: a crisis is about named topics, so an untopiced
//     portion is never swept in. The 72-hour cap on a declaration's life is
//     enforced where declarations are made, not here (a Crisis carries no
//     declaration time).
//   - Receipt also applies rule 2 (agreement-scope) to the recipient's own
//     agreement with the sender: a node does not store what is outside its
//     agreement with the partner that sent it.
//   - Receipt denies any NOFORN portion, even at the originator: a NOFORN
//     portion on the wire is a spill.
//   - Rule 5's final denial, when the recipient is the report's originator,
//     is [RuleOriginatorHolds] rather than third-party-rule or rel-to: the
//     originator already holds the report and cannot consent to itself,
//     so nothing would allow it and no consent or re-marking is advised.
//     (What rule 5 allows back to the originator, Release still allows;
//     a node refuses a share back to the originator as a whole, with
//     [BackToOriginator], before deciding any portion.)
package policy
