#!/bin/sh
# The broker's password file and ACL, written before Mosquitto starts (the init container
# of compose and of the Helm chart runs this with the eclipse-mosquitto image's
# mosquitto_passwd).
#
# Users are the ones the ACL names (ACL_SRC, the committed mosquitto/acl); each user's
# password comes from MQTT_PASSWORD_<USER>, the user name upper-cased with '-' as '_'
# (MQTT_PASSWORD_SIM_RIC, MQTT_PASSWORD_XAPP_COMPOSER, ...). A user without a password
# cannot log in; the users in REQUIRED_USERS (space-separated; default: every user of the
# ACL) must have one. Passwords go into mqtts:// URLs as they are, so they must be
# URL-safe (A-Z a-z 0-9 . _ ~ -) and at least 16 characters: `openssl rand -hex 16`.
#
# Writes AUTH_DIR/passwd and AUTH_DIR/acl, mode 0600, owned by the broker's user (uid
# 1883 in the eclipse-mosquitto image) when run as root.
set -eu

AUTH_DIR=${AUTH_DIR:-/mosquitto/auth}
ACL_SRC=${ACL_SRC:-/init/acl}
BROKER_UID=${BROKER_UID:-1883}

fail() {
    echo "mosquitto init: $*" >&2
    exit 1
}

[ -r "$ACL_SRC" ] || fail "no ACL at $ACL_SRC"
users=$(sed -n 's/^user  *//p' "$ACL_SRC")
[ -n "$users" ] || fail "$ACL_SRC names no user"
required=${REQUIRED_USERS-$users}

umask 077
mkdir -p "$AUTH_DIR"
tmp="$AUTH_DIR/passwd.new"
: >"$tmp"
enabled=""
for user in $users; do
    var="MQTT_PASSWORD_$(printf '%s' "$user" | tr 'a-z-' 'A-Z_')"
    password=$(printenv "$var" || true)
    if [ -z "$password" ]; then
        case " $(echo $required) " in
        *" $user "*) fail "$var is not set: user $user needs a password" ;;
        esac
        echo "mosquitto init: $var is not set: user $user cannot log in"
        continue
    fi
    case "$password" in
    *[!A-Za-z0-9._~-]*) fail "$var: use only A-Z a-z 0-9 . _ ~ - (it goes into an mqtts:// URL)" ;;
    esac
    [ "${#password}" -ge 16 ] || fail "$var: at least 16 characters (openssl rand -hex 16)"
    mosquitto_passwd -b "$tmp" "$user" "$password" || fail "mosquitto_passwd failed for $user"
    enabled="$enabled $user"
done
[ -n "$enabled" ] || fail "no user has a password"

cp "$ACL_SRC" "$AUTH_DIR/acl.new"
chmod 0600 "$tmp" "$AUTH_DIR/acl.new"
if [ "$(id -u)" = 0 ]; then
    chown "$BROKER_UID:$BROKER_UID" "$tmp" "$AUTH_DIR/acl.new"
fi
mv "$tmp" "$AUTH_DIR/passwd"
mv "$AUTH_DIR/acl.new" "$AUTH_DIR/acl"
echo "mosquitto init: users:$enabled"
