package store

import (
	"bytes"

	bolt "go.etcd.io/bbolt"
)

// The schema: every bucket of a node's bbolt file is named here and nowhere
// else (STYLE 12). Keys are big-endian sequence numbers unless noted, so that
// a cursor walks them in order.
var (
	// bucketReports: report id → storev1.StoredReport.
	bucketReports = []byte("reports")
	// bucketFeed: feed seq → report id. The order in which reports became
	// held here; subscribers read it from a cursor.
	bucketFeed = []byte("feed")
	// bucketProvenance: report id ‖ 0x00 ‖ event seq → storev1.Event. One
	// event may hold the deliveries of the report to several subscribers
	// (Event.recipients, see deliveryGroup); Tx.Events hands out one event
	// per subscriber. Such a shared event is kept in bucketDeliveries, and
	// its key here has an empty value. An event audited as one entry of its
	// own (every kind but the deliveries) is kept only in that entry, and
	// its value here is 0xff ‖ the entry's seq (schema 5).
	bucketProvenance = []byte("provenance")
	// bucketDeliveries: event seq → storev1.Event, the shared delivery
	// events (schema 4). Keyed by seq, a commit's shared events are
	// appended side by side instead of each rewriting a page of its
	// report's events in the provenance bucket.
	bucketDeliveries = []byte("deliveries")
	// bucketReceipts: report id ‖ 0x00 ‖ SHA-256 of the last hop → empty.
	// Makes receipt idempotent: the same report and hop again is a duplicate.
	bucketReceipts = []byte("receipts")
	// bucketOutbox: one nested bucket per partner code; in each,
	// outbox seq → storev1.OutboxItem, removed when the partner acknowledges.
	bucketOutbox = []byte("outbox")
	// bucketCursors: subscriber identity → last feed seq sent to it.
	bucketCursors = []byte("cursors")
	// bucketQuarantine: seq → storev1.QuarantineItem (refused envelopes).
	bucketQuarantine = []byte("quarantine")
	// bucketMeta: small named values ("schema" → version).
	bucketMeta = []byte("meta")
	// bucketConsents: consent request id → storev1.ConsentRecord.
	bucketConsents = []byte("consents")
	// bucketCrises: declaration id → storev1.CrisisRecord.
	bucketCrises = []byte("crises")
	// bucketSecurity: seq → storev1.SecurityEvent.
	bucketSecurity = []byte("security_events")
	// bucketCrisisReleases: declaration id ‖ 0x00 ‖ seq → storev1.CrisisRelease.
	bucketCrisisReleases = []byte("crisis_releases")
	// bucketSuspensions: kind ‖ "/" ‖ name → storev1.Suspension.
	bucketSuspensions = []byte("suspensions")
	// bucketWithdrawals: report id → storev1.WithdrawalRecord (at the originator).
	bucketWithdrawals = []byte("withdrawals")
	// bucketAudit: entry seq → SHA-256(canonical) ‖ canonical, where
	// canonical is the storev1.AuditEntry's bytes (node/audit). The store's
	// head (seq ‖ hash of the last entry) is meta "audit_head".
	bucketAudit = []byte("audit")
	// bucketAuditCheckpoints: entry seq → reportv1.Signed (an
	// AuditCheckpoint this node signed of the head at that seq).
	bucketAuditCheckpoints = []byte("audit_checkpoints")
	// bucketPartnerCheckpoints: party ‖ 0x00 ‖ seq → reportv1.Signed: the
	// checkpoints partners signed and sent here, kept as evidence.
	bucketPartnerCheckpoints = []byte("partner_checkpoints")
)

// schemaVersion is written on creation and checked on open. Version 2 added
// the audit log; a version 1 file is migrated on open (see Open). Version 3
// lets one provenance event hold the deliveries of a report to several
// subscribers (storev1.Event.recipients), which a build reading version 2
// would show without their subscribers; a version 2 file is only marked 3
// on open (nothing in it changes), and one that cannot be written is read
// as it is. Version 4 keeps shared delivery events in bucketDeliveries,
// with an empty value under their provenance key, which a build reading
// version 3 would take for an empty event; a version 2 or 3 file gains the
// bucket and is marked 4 on open (its events stay where they are), and
// one that cannot be written is read as it is. Version 5 keeps an event
// audited as one entry of its own only in that entry, with a reference to
// it under the event's provenance key, which a build reading version 4
// would take for a corrupt event; a version 2 to 4 file is marked 5 on open
// (its events stay as they are), and one that cannot be written is read as
// it is.
const schemaVersion = "5"

// metaAuditHead is the meta key of the audit log's head.
var metaAuditHead = []byte("audit_head")

var allBuckets = [][]byte{
	bucketReports, bucketFeed, bucketProvenance, bucketDeliveries, bucketReceipts,
	bucketOutbox, bucketCursors, bucketQuarantine, bucketMeta,
	bucketConsents, bucketCrises, bucketSecurity, bucketCrisisReleases,
	bucketSuspensions, bucketWithdrawals,
	bucketAudit, bucketAuditCheckpoints, bucketPartnerCheckpoints,
}

// Most keys arrive in ascending order: sequence numbers, and report ids,
// which are UUIDv7 (time-ordered). bbolt splits a full page in half by
// default, which suits random inserts; for appends it leaves every page
// half empty and writes twice the pages. Buckets filled in order pack
// their pages instead: fully where keys are strictly ascending, to 90 %
// where report ids from several clocks interleave and late events (an
// acknowledgement) land among earlier keys.
var packedBuckets = []struct {
	name []byte
	fill float64
}{
	{bucketReports, 0.9},
	{bucketProvenance, 0.9},
	{bucketReceipts, 0.9},
	{bucketFeed, 1},
	{bucketDeliveries, 1},
	{bucketAudit, 1},
	{bucketQuarantine, 1},
	{bucketSecurity, 1},
	{bucketAuditCheckpoints, 1},
	{bucketPartnerCheckpoints, 1},
}

// fillOf is the fill of the top-level bucket name: its packedBuckets
// entry, or bbolt's default. The store sets it on each bucket it opens for
// writing (Tx.w), and 1 on each partner's outbox (wbucket.Sub), whose keys
// are sequence numbers; bbolt keeps a bucket's setting for the rest of the
// transaction. Buckets a commit does not write are not opened for it.
func fillOf(name []byte) float64 {
	for _, p := range packedBuckets {
		if bytes.Equal(p.name, name) {
			return p.fill
		}
	}
	return bolt.DefaultFillPercent
}
