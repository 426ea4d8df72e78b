# Least-privilege policy of a Tearline node's AppRole, for one party's PKI
# mount. bootstrap.sh writes it with @MOUNT@ replaced by the mount path
# (e.g. pki-usa):
#
#   sed 's/@MOUNT@/pki-usa/g' policy-node.hcl | vault policy write tearline-node-usa -
#
# The node may issue its own certificate (the "node" role only: the role
# allows only spiffe://<domain>/party/<PARTY>/node/* URI SANs), and read its
# party's CA chain and CRL. It may not issue officer or service
# certificates, revoke, read keys, or change the mount.

path "@MOUNT@/issue/node" {
  capabilities = ["create", "update"]
}

path "@MOUNT@/ca_chain" {
  capabilities = ["read"]
}

path "@MOUNT@/crl" {
  capabilities = ["read"]
}

# Token housekeeping of the node's own token.
path "auth/token/lookup-self" {
  capabilities = ["read"]
}
