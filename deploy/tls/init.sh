#!/bin/sh
# Hands each compose service its own certificates: copies the deployment's certificates
# (SRC, made by tls/make-certs.sh) into one volume per component, owned by the user that
# component runs as, private keys 0400. A service mounts only its own volume, so no
# container can read another one's key, whatever the permissions on the host.
#
#   SRC/broker -> OUT/broker  (uid 1883, the eclipse-mosquitto image's user)
#   SRC/rapp   -> OUT/rapp    (uid 10001, deploy/Dockerfile's user)
#   SRC/xapp   -> OUT/xapp    (uid 10001)
#   SRC/ca.crt -> OUT/ca      (the emulator trusts the CA and has no certificate)
set -eu

SRC=${SRC:-/pki}
OUT=${OUT:-/out}
BROKER_UID=${BROKER_UID:-1883}
APP_UID=${APP_UID:-10001}

fail() {
    echo "tls init: $*" >&2
    exit 1
}

[ -f "$SRC/ca.crt" ] || fail "$SRC/ca.crt is missing: make the certificates first (deploy/tls/make-certs.sh; deploy/TRUST.md)"

# place FILE DEST MODE UID
place() {
    cp "$1" "$2.new"
    chmod "$3" "$2.new"
    if [ "$(id -u)" = 0 ]; then
        chown "$4" "$2.new"
    fi
    mv "$2.new" "$2"
}

for spec in "broker $BROKER_UID" "rapp $APP_UID" "xapp $APP_UID"; do
    set -- $spec
    for f in ca.crt tls.crt tls.key; do
        [ -f "$SRC/$1/$f" ] || fail "$SRC/$1/$f is missing (deploy/tls/make-certs.sh)"
    done
    mkdir -p "$OUT/$1"
    place "$SRC/$1/ca.crt" "$OUT/$1/ca.crt" 0444 "$2"
    place "$SRC/$1/tls.crt" "$OUT/$1/tls.crt" 0444 "$2"
    place "$SRC/$1/tls.key" "$OUT/$1/tls.key" 0400 "$2"
    echo "tls init: $1 (uid $2)"
done
mkdir -p "$OUT/ca"
place "$SRC/ca.crt" "$OUT/ca/ca.crt" 0444 0
