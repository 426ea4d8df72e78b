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
#     Each run makes a new secret id; it says how many others are still
#     valid, and --destroy-other-secret-ids destroys them once the new one
#     is written (do that when every node has the new file).
#
# Before it changes anything it checks that Vault accepts VAULT_TOKEN and
# that the folder of --secret-id-file exists and can be written.
#
# Options: --party CODE (required), --domain D (default <party>.tearline.test),
# --mount PATH, --secret-id-file FILE (default ./vault-secret-id-<party>),
# --ca-ttl DURATION (default 87600h), --max-ttl DURATION (default 720h),
# --destroy-other-secret-ids.
# Environment: VAULT_ADDR, VAULT_TOKEN (required), VAULT_CACERT (optional).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

party="" domain="" mount="" secret_file="" ca_ttl="87600h" max_ttl="720h" destroy_others=""
while [[ $# -gt 0 ]]; do
	case "$1" in
	--destroy-other-secret-ids) destroy_others=1; shift ;;
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

# 0. Before anything changes: the token works, and the secret id can be
# written where it is asked for.
secret_dir="$(dirname "$secret_file")"
if [[ ! -d "$secret_dir" || ! -w "$secret_dir" ]]; then
	say "--secret-id-file $secret_file: the folder $secret_dir does not exist or cannot be written; nothing was changed"
	exit 2
fi
if ! why="$(api GET auth/token/lookup-self 2>&1 >/dev/null)"; then
	say "Vault at $VAULT_ADDR did not accept VAULT_TOKEN, or could not be reached ($(tr '\n' ' ' <<<"$why" | cut -c1-200)); nothing was changed"
	exit 1
fi

# 1. The PKI mount.
mounts="$(api GET sys/mounts)" || { say "cannot list Vault's mounts (does the token have the admin policy?)"; exit 1; }
if jq -e --arg m "$mount/" '.data[$m] // .[$m] | select(. != null)' <<<"$mounts" >/dev/null; then
	type="$(jq -r --arg m "$mount/" '(.data[$m] // .[$m]).type' <<<"$mounts")"
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
answer="$(api POST "auth/approle/role/$node_role/secret-id" '{}')"
accessor="$(jq -r .data.secret_id_accessor <<<"$answer")"
# A new file of our own (mktemp: 0600, not a name another user could
# have placed), then renamed over the old one.
tmp="$(mktemp -- "$secret_file.XXXXXX")"
trap 'rm -f -- "$tmp"' EXIT # gone if the script stops before the rename
jq -r .data.secret_id <<<"$answer" >"$tmp" && mv -- "$tmp" "$secret_file" || { say "cannot write $secret_file"; exit 1; }
unset answer
say "approle $node_role: new secret id written to $secret_file (accessor $accessor)"
# The other secret ids of the role (the list holds the new one at least).
if ! listed="$(api LIST "auth/approle/role/$node_role/secret-id")"; then
	if [[ -n "$destroy_others" ]]; then
		say "cannot list the role's secret ids, so none was destroyed"
		exit 1
	fi
	say "cannot list the role's secret ids: older ones may still be valid"
	listed='{"data":{"keys":[]}}'
fi
others="$(jq -r --arg a "$accessor" '.data.keys[] | select(. != $a)' <<<"$listed")"
if [[ -n "$others" ]]; then
	if [[ -n "$destroy_others" ]]; then
		while read -r a; do
			api POST "auth/approle/role/$node_role/secret-id-accessor/destroy" "$(jq -nc --arg a "$a" '{secret_id_accessor:$a}')" >/dev/null
		done <<<"$others"
		say "destroyed the role's $(wc -l <<<"$others") other secret id(s)"
	else
		say "the role has $(wc -l <<<"$others") other secret id(s) still valid; once every node has the new file, run again with --destroy-other-secret-ids"
	fi
fi

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
