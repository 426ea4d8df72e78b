// Package pki holds Tearline's certificates and the trust decisions made on
// them: SPIFFE-style identities carried as URI SANs, certificate issuers (the
// embedded development CA and Vault's PKI engine) behind the narrow
// [Issuer] interface, per-party trust anchors ([Trust]) under which a partner's
// CA vouches only for that partner's identities, certificate rotation served
// through TLS callbacks ([CertSource]), TLS 1.3 mutual-TLS configurations that
// fail closed ([ServerTLS], [ClientTLS]), and the on-disk client profile
// ([WriteProfile], [LoadProfile]).
//
// All keys are ed25519. An identity is one of
//
//	spiffe://<party-domain>/party/<CODE>/node/<name>
//	spiffe://<party-domain>/party/<CODE>/svc/<name>
//	spiffe://<party-domain>/party/<CODE>/officer/<name>
//
// and the party of a peer is taken only from its verified certificate chain
// and that single URI SAN, never from anything the peer says.
package pki
