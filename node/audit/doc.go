// Package audit defines a node's audit log: what one entry is, how the
// entries are chained and checkpointed, how a log (in the store or in an
// exported file) is verified, and the reports made from it (the sharing
// summary, anomaly alerts). It is pure: the store keeps the bytes, the node
// signs and serves; this package only takes values and returns values.
//
// # Entries and their canonical bytes
//
// An entry is a tearline.store.v1.AuditEntry. Its canonical bytes are its
// deterministic protobuf encoding (proto.MarshalOptions{Deterministic:
// true}), made once, when the entry is appended, and kept as they are: a
// verifier hashes the bytes it holds and never re-encodes an entry, so the
// chain does not depend on the encoder of whoever checks it.
//
// The hash of an entry is SHA-256 of its canonical bytes. Every entry
// carries in its prev field the hash of the entry before it (32 zero bytes
// for sequence number 1) and its own sequence number, so that a changed,
// removed or moved entry breaks the chain at that entry.
//
// The store keeps each entry under its big-endian sequence number as
//
//	value = SHA-256(canonical) ‖ canonical
//
// The leading hash is redundant with the chain; it lets a verifier name the
// entry whose bytes changed (rather than the one after it, whose prev no
// longer matches).
//
// # What is one entry
//
// One entry per recorded fact, written in the same bbolt transaction as the
// fact itself: every provenance event (a publication, each release or
// refusal with the decision and rule of every portion, a receipt or a
// rejection, a consent request or decision, a withdrawal, an
// acknowledgement), every security event, every suspension and
// reinstatement, every crisis declaration or end notice recorded, and the
// node's own certificate and administrative events. Deliveries to a
// subscriber, which may be many per second, are one entry per recorded
// batch and subscriber (kind "deliveries"), listing each report with the
// portions delivered or withheld.
//
// # Checkpoints
//
// A node signs a tearline.report.v1.AuditCheckpoint {party, seq, head hash,
// time} with its node key (statement kind "audit-checkpoint", domain
// separated like every signed statement of node/report), carrying its
// certificate chain so that anyone holding only the party's CA bundle can
// check it. It does so at intervals, on shutdown and at each export, and
// sends each checkpoint to its partners, who keep them: a log rewritten
// after a checkpoint was sent no longer matches the checkpoint a partner
// holds, even when the rewriter re-signed its own copies.
//
// # Exports
//
// An export (export.go) ends with the node's signed statement of the export
// itself, a tearline.report.v1.AuditExport {party, time of export, since,
// first and last sequence numbers, head hash at the last}, signed with the
// same key and machinery as a checkpoint but as its own statement kind
// ("audit-export"), so that neither ever verifies as the other. A
// checkpoint alone cannot say where an export ends: a file cut just after a
// periodic checkpoint, or just before the entries that follow one, is a
// well-chained, checkpointed run of entries. The signed end can: a verifier
// fails a file whose entries or header start or end elsewhere than it says,
// and a file that has none.
package audit
