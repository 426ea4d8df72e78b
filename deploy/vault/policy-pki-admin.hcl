# Policy of a party's PKI administrator (the security team that runs
# `tearline pki issue` and `tearline pki revoke`) for one party's PKI mount.
# bootstrap.sh writes it with @MOUNT@ replaced by the mount path:
#
#   sed 's/@MOUNT@/pki-usa/g' policy-pki-admin.hcl | vault policy write tearline-pki-admin-usa -
#
# It may issue officer and service certificates, revoke any certificate of
# the mount and read its CA chain and CRL. It may not issue node
# certificates (nodes get theirs through their own AppRole), nor change the
# CA, the roles or the mount.

path "@MOUNT@/issue/officer" {
  capabilities = ["create", "update"]
}

path "@MOUNT@/issue/svc" {
  capabilities = ["create", "update"]
}

path "@MOUNT@/revoke" {
  capabilities = ["create", "update"]
}

path "@MOUNT@/ca_chain" {
  capabilities = ["read"]
}

path "@MOUNT@/crl" {
  capabilities = ["read"]
}

path "@MOUNT@/certs" {
  capabilities = ["list"]
}

path "@MOUNT@/cert/*" {
  capabilities = ["read"]
}

path "auth/token/lookup-self" {
  capabilities = ["read"]
}
