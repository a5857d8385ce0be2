#!/bin/sh
# The certificates of one LAMeTA-RIC deployment, made with openssl (ECDSA P-256, SHA-256).
#
#   deploy/tls/make-certs.sh OUT
#
# OUT gets, each component in the layout of a kubernetes.io/tls Secret (ca.crt, tls.crt,
# tls.key) so that compose mounts the directory and Kubernetes takes it as a Secret:
#
#   OUT/broker/    the broker's server certificate (CN broker; names: BROKER_NAMES)
#   OUT/rapp/      the rApp's certificate (CN rapp-intent; names: RAPP_NAMES), for serving
#                  and as a client (its own health probe; not an identity that may report
#                  outcomes)
#   OUT/xapp/      the xApp's client certificate (CN xapp-composer: the identity the rApp's
#                  RAPP_REPORT_IDENTITIES allows to write its memory)
#   OUT/operator/  a client certificate for a person's tools (CN operator)
#   OUT/ca.crt     the CA certificate every component trusts
#   OUT/ca/        the CA (ca.crt, ca.key): only needed to issue; keep the key offline
#
# Environment:
#   BROKER_NAMES  DNS names and IP addresses of the broker, comma-separated
#                 (default: mosquitto,localhost,127.0.0.1, the compose service)
#   RAPP_NAMES    the same for the rApp (default: rapp,localhost,127.0.0.1)
#   CA_CERT, CA_KEY  sign with this CA instead of making one (for instance pki/ca.pem and
#                 pki/ca.key of a `lameta-stack up` directory, or your organisation's)
#   DAYS          lifetime of the leaf certificates (default 825)
#
# What exists is kept: delete a component's directory and run again to issue it anew
# (rotation, deploy/TRUST.md). Private keys are written with mode 0600.
set -eu

usage() {
    echo "usage: $0 OUT   (BROKER_NAMES, RAPP_NAMES, CA_CERT, CA_KEY, DAYS: see the header)" >&2
    exit 2
}
fail() {
    echo "make-certs: $*" >&2
    exit 1
}
[ $# -eq 1 ] || usage
command -v openssl >/dev/null || fail "openssl is not installed"

OUT=$1
BROKER_NAMES=${BROKER_NAMES:-mosquitto,localhost,127.0.0.1}
RAPP_NAMES=${RAPP_NAMES:-rapp,localhost,127.0.0.1}
DAYS=${DAYS:-825}
case "$DAYS" in '' | *[!0-9]*) fail "DAYS must be a whole number of days" ;; esac

umask 077
mkdir -p "$OUT"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# ---- the CA --------------------------------------------------------------------------
if [ -n "${CA_CERT:-}${CA_KEY:-}" ]; then
    [ -r "${CA_CERT:-}" ] && [ -r "${CA_KEY:-}" ] || fail "CA_CERT and CA_KEY: both readable files"
    ca_crt=$CA_CERT
    ca_key=$CA_KEY
else
    ca_crt=$OUT/ca/ca.crt
    ca_key=$OUT/ca/ca.key
    if [ ! -f "$ca_crt" ]; then
        mkdir -p "$OUT/ca"
        cat >"$work/ca.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
O = LAMeTA-RIC
CN = LAMeTA-RIC deployment CA
[ca]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
EOF
        openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$ca_key" 2>/dev/null
        openssl req -x509 -new -sha256 -days 3650 -config "$work/ca.cnf" -extensions ca \
            -key "$ca_key" -out "$ca_crt"
        echo "make-certs: made the CA $ca_crt"
    fi
fi
openssl x509 -in "$ca_crt" -noout 2>/dev/null || fail "$ca_crt is not a PEM certificate"
cp "$ca_crt" "$OUT/ca.crt"
chmod 0644 "$OUT/ca.crt"

# ---- leaf certificates ---------------------------------------------------------------
# issue DIR CN USAGES [NAMES]: DIR/tls.key, DIR/tls.crt (signed by the CA), DIR/ca.crt
issue() {
    dir=$OUT/$1 cn=$2 usages=$3 names=${4:-}
    if [ -f "$dir/tls.crt" ] && [ -f "$dir/tls.key" ]; then
        echo "make-certs: kept $dir ($cn)"
        return
    fi
    mkdir -p "$dir"
    {
        echo "basicConstraints = critical, CA:FALSE"
        echo "keyUsage = critical, digitalSignature"
        echo "extendedKeyUsage = $usages"
        echo "subjectKeyIdentifier = hash"
        echo "authorityKeyIdentifier = keyid, issuer"
        if [ -n "$names" ]; then
            alt=""
            for n in $(echo "$names" | tr ',' ' '); do
                case "$n" in
                *:*) kind=IP ;;       # IPv6
                *[!0-9.]*) kind=DNS ;;
                *) kind=IP ;;         # IPv4
                esac
                alt="$alt${alt:+, }$kind:$n"
            done
            echo "subjectAltName = $alt"
        fi
    } >"$work/$1.ext"
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/tls.key" 2>/dev/null
    openssl req -new -key "$dir/tls.key" -subj "/O=LAMeTA-RIC/CN=$cn" -out "$work/$1.csr"
    openssl x509 -req -sha256 -days "$DAYS" -in "$work/$1.csr" -CA "$ca_crt" -CAkey "$ca_key" \
        -set_serial "0x$(openssl rand -hex 16)" -extfile "$work/$1.ext" -out "$dir/tls.crt" \
        2>"$work/error" || fail "signing $cn failed: $(tail -n 3 "$work/error")"
    cp "$ca_crt" "$dir/ca.crt"
    chmod 0600 "$dir/tls.key"
    chmod 0644 "$dir/tls.crt" "$dir/ca.crt"
    echo "make-certs: issued $dir ($cn${names:+; $names})"
}

issue broker broker serverAuth "$BROKER_NAMES"
issue rapp rapp-intent "serverAuth, clientAuth" "$RAPP_NAMES"
issue xapp xapp-composer clientAuth
issue operator operator clientAuth
