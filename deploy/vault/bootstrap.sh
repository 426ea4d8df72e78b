#!/usr/bin/env bash
# Sets up one party's Tearline PKI in Vault, through Vault's HTTP API (curl
# and jq; the vault CLI is not needed). It can run again: what exists is kept
# (the CA above all), roles and policies are rewritten.
#
#   VAULT_ADDR=https://vault:8200 VAULT_TOKEN=<admin token> \
#     deploy/vault/bootstrap.sh --party USA --secret-id-file /etc/tearline/vault-secret-id
#
# It creates:
#   - a PKI secrets engine at pki-<party> (--mount), max lease 10 years;
#   - a self-signed ed25519 root CA "Tearline CA <PARTY>" whose name
#     constraint permits URI SANs in the party's trust domain only
#     (permitted_uri_domains; Vault >= 1.19), issuing and CRL URLs;
#   - roles node, officer and svc, each allowing only
#     spiffe://<domain>/party/<PARTY>/<kind>/* URI SANs, ed25519 keys, no CN,
#     no DNS/IP/e-mail SANs;
#   - policies tearline-node-<party> (policy-node.hcl: issue from the node
#     role, read the CA chain and the CRL) and tearline-pki-admin-<party>
#     (policy-pki-admin.hcl: issue officer and svc certificates, revoke);
#   - an AppRole tearline-node-<party> with the node policy, whose role id it
#     prints and whose new secret id it writes to --secret-id-file (0600).
#
# Options: --party CODE (required), --domain D (default <party>.tearline.test),
# --mount PATH, --secret-id-file FILE (default ./vault-secret-id-<party>),
# --ca-ttl DURATION (default 87600h), --max-ttl DURATION (default 720h).
# Environment: VAULT_ADDR, VAULT_TOKEN (required), VAULT_CACERT (optional).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

party="" domain="" mount="" secret_file="" ca_ttl="87600h" max_ttl="720h"
while [[ $# -gt 0 ]]; do
	case "$1" in
	--party) party="$2"; shift 2 ;;
	--domain) domain="$2"; shift 2 ;;
	--mount) mount="$2"; shift 2 ;;
	--secret-id-file) secret_file="$2"; shift 2 ;;
	--ca-ttl) ca_ttl="$2"; shift 2 ;;
	--max-ttl) max_ttl="$2"; shift 2 ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "bootstrap.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
done
[[ "$party" =~ ^[A-Z0-9-]{2,16}$ ]] || { echo "bootstrap.sh: --party CODE is required ([A-Z0-9-]{2,16})" >&2; exit 2; }
: "${VAULT_ADDR:?bootstrap.sh: set VAULT_ADDR}"
: "${VAULT_TOKEN:?bootstrap.sh: set VAULT_TOKEN (an admin token)}"
lower="$(tr 'A-Z' 'a-z' <<<"$party")"
domain="${domain:-$lower.tearline.test}"
mount="${mount:-pki-$lower}"
secret_file="${secret_file:-./vault-secret-id-$lower}"
node_role="tearline-node-$lower"

curl_opts=(--silent --show-error --fail-with-body --max-time 30 -H "X-Vault-Request: true")
[[ -n "${VAULT_CACERT:-}" ]] && curl_opts+=(--cacert "$VAULT_CACERT")

# api METHOD PATH [JSON]: the token reaches curl as a config on stdin, never
# on its command line (where ps would show it).
api() {
	local method="$1" path="$2" body="${3:-}"
	local args=("${curl_opts[@]}" -X "$method" -K -)
	[[ -n "$body" ]] && args+=(-H "Content-Type: application/json" --data-binary "$body")
	printf 'header = "X-Vault-Token: %s"\n' "$VAULT_TOKEN" | curl "${args[@]}" "$VAULT_ADDR/v1/$path"
}
say() { echo "bootstrap.sh: $*" >&2; }

# 1. The PKI mount.
if api GET sys/mounts | jq -e --arg m "$mount/" '.data[$m] // .[$m] | select(. != null)' >/dev/null; then
	type="$(api GET sys/mounts | jq -r --arg m "$mount/" '(.data[$m] // .[$m]).type')"
	[[ "$type" == pki ]] || { say "$mount is mounted as $type, not pki"; exit 1; }
	say "mount $mount exists"
else
	api POST "sys/mounts/$mount" "$(jq -nc --arg d "Tearline PKI of $party" --arg t "$ca_ttl" \
		'{type:"pki", description:$d, config:{max_lease_ttl:$t}}')" >/dev/null
	say "mount $mount created"
fi

# 2. The root CA, with its URI name constraint; kept if present.
if api GET "$mount/ca_chain" 2>/dev/null | grep -q CERTIFICATE; then
	say "CA of $mount exists; kept"
else
	api POST "$mount/root/generate/internal" "$(jq -nc --arg cn "Tearline CA $party" --arg t "$ca_ttl" --arg d "$domain" \
		'{common_name:$cn, organization:"Tearline", key_type:"ed25519", ttl:$t, issuer_name:"root",
		  max_path_length:0, exclude_cn_from_sans:true, permitted_uri_domains:[$d],
		  not_before_duration:"300s"}')" >/dev/null
	say "root CA generated (URI SANs limited to $domain)"
fi
api POST "$mount/config/urls" "$(jq -nc --arg a "$VAULT_ADDR/v1/$mount" \
	'{issuing_certificates:[$a+"/ca"], crl_distribution_points:[$a+"/crl"]}')" >/dev/null

# 3. One role per kind of identity.
for kind in node officer svc; do
	api POST "$mount/roles/$kind" "$(jq -nc --arg u "spiffe://$domain/party/$party/$kind/*" --arg m "$max_ttl" \
		'{key_type:"ed25519", allowed_uri_sans:[$u], require_cn:false, allow_any_name:false,
		  allow_bare_domains:false, allow_subdomains:false, allow_glob_domains:false, allow_localhost:false,
		  allow_ip_sans:false, allowed_domains:[], enforce_hostnames:true, server_flag:true, client_flag:true,
		  key_usage:["DigitalSignature"], basic_constraints_valid_for_non_ca:true,
		  ttl:"24h", max_ttl:$m, not_before_duration:"60s", no_store:false}')" >/dev/null
done
say "roles node, officer, svc written"

# 4. Policies.
for p in node pki-admin; do
	policy="$(sed "s#@MOUNT@#$mount#g" "$here/policy-$p.hcl")"
	api PUT "sys/policies/acl/tearline-$p-$lower" "$(jq -nc --arg p "$policy" '{policy:$p}')" >/dev/null
done
say "policies tearline-node-$lower, tearline-pki-admin-$lower written"

# 5. The node's AppRole.
if ! api GET sys/auth | jq -e '.data["approle/"] // .["approle/"] | select(. != null)' >/dev/null; then
	api POST sys/auth/approle '{"type":"approle"}' >/dev/null
	say "approle auth enabled"
fi
api POST "auth/approle/role/$node_role" "$(jq -nc --arg p "tearline-node-$lower" \
	'{token_policies:[$p], token_ttl:"1h", token_max_ttl:"4h", token_type:"service", secret_id_ttl:"0", bind_secret_id:true}')" >/dev/null
role_id="$(api GET "auth/approle/role/$node_role/role-id" | jq -r .data.role_id)"
secret_id="$(api POST "auth/approle/role/$node_role/secret-id" '{}' | jq -r .data.secret_id)"
(umask 077 && printf '%s\n' "$secret_id" >"$secret_file.tmp" && mv "$secret_file.tmp" "$secret_file")
unset secret_id
say "approle $node_role: new secret id written to $secret_file"

cat <<YAML
# pki section for $party's node.yaml:
pki:
  mode: vault
  vault:
    address: $VAULT_ADDR
    mount: $mount
    role: node
    auth: approle
    role_id: $role_id
    secret_id_file: $secret_file
YAML
