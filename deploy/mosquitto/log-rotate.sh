#!/bin/sh
# Keeps a log the guard follows under LOG_MAX_BYTES: Mosquitto's packet log
# (mosquitto/guard.conf), beside the broker, and the rApp's gRPC access log
# (RAPP_ACCESS_LOG), beside the rApp (compose.guard.yaml; a container of the broker's and
# of the rApp's pod in the Helm chart). Both writers append. The text below says
# Mosquitto; the rApp's log works the same way.
# Every LOG_CHECK_SECONDS, a log larger than LOG_MAX_BYTES is copied to
# LOG_FILE.1 (the previous part, for an operator reading back what the guard saw) and
# truncated in place. Mosquitto appends (O_APPEND), so its next line lands at the start
# of the emptied file, with no signal to the broker; the guard's sensor reopens a file
# that shrinks and reads it from the start. Lines the guard had not read yet when the
# file is truncated (it follows the file as it grows: the last few lines, if any) are in
# LOG_FILE.1 only.
#
# The volume holds at most about twice LOG_MAX_BYTES plus what the broker writes in one
# LOG_CHECK_SECONDS. Runs as the log's owner: the broker's user for its log (mode 0600,
# uid 1883), the rApp's for the access log (uid 10001).
set -eu

LOG_FILE=${LOG_FILE:-/mosquitto/log/mosquitto.log}
LOG_MAX_BYTES=${LOG_MAX_BYTES:-67108864}
LOG_CHECK_SECONDS=${LOG_CHECK_SECONDS:-10}

fail() {
    echo "log-rotate: $*" >&2
    exit 1
}

case "$LOG_MAX_BYTES" in '' | *[!0-9]*) fail "LOG_MAX_BYTES must be a number of bytes" ;; esac
case "$LOG_CHECK_SECONDS" in '' | *[!0-9]*) fail "LOG_CHECK_SECONDS must be whole seconds" ;; esac
[ "$LOG_MAX_BYTES" -gt 0 ] || fail "LOG_MAX_BYTES must be positive"
[ "$LOG_CHECK_SECONDS" -gt 0 ] || fail "LOG_CHECK_SECONDS must be positive"
[ -d "$(dirname "$LOG_FILE")" ] || fail "no directory for $LOG_FILE"

# As PID 1 the shell ignores SIGTERM unless it traps it; sleep in the background so that
# the trap runs at once.
trap 'exit 0' TERM INT
echo "log-rotate: $LOG_FILE kept under $LOG_MAX_BYTES bytes, checked every ${LOG_CHECK_SECONDS}s"
while :; do
    if [ -f "$LOG_FILE" ]; then
        size=$(wc -c <"$LOG_FILE")
        if [ "$size" -gt "$LOG_MAX_BYTES" ]; then
            cp "$LOG_FILE" "$LOG_FILE.1.new"
            : >"$LOG_FILE"
            mv "$LOG_FILE.1.new" "$LOG_FILE.1"
            echo "log-rotate: $LOG_FILE at $size bytes: kept as $LOG_FILE.1, truncated"
        fi
    fi
    sleep "$LOG_CHECK_SECONDS" &
    wait $! || true
done
