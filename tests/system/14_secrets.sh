#!/usr/bin/env bash
# The Redis password never shows: not in the process title (/proc/<pid>/cmdline: a password
# given as a flag is overwritten once read), not in any log line, not in status output, not in
# /health. Given as a flag, in the URL, through the environment and through a file.
source "$(dirname "$0")/lib.sh"

PW='Sekr1t-Pw-42'
start_redis --requirepass "$PW"
echo "$PW" >"$T/pw"
SOCK=$T/redis.sock

spawn nexus_flag "$NEXUS" --redis-url "unix://$SOCK" --redis-password "$PW"
A=$LAST_PID
spawn nexus_url "$NEXUS" --redis-url="unix://:$PW@$SOCK"
B=$LAST_PID
REDIS_PASSWORD_FILE=$T/pw spawn lab "$LAB" --plugin trend --redis-url "unix://$SOCK" \
    --log-level debug
L=$LAST_PID
wait_for 10 "nexus active" grep -q "active:" "$T/nexus_flag.log" "$T/nexus_url.log"
wait_for 10 "lab consuming" grep -q "consuming" "$T/lab.log"
for p in $A $B $L; do
    tr '\0' ' ' <"/proc/$p/cmdline" >"$T/cmdline.$p"
    grep -q "$PW" "$T/cmdline.$p" && fail "password in the process title of $p: $(cat "$T/cmdline.$p")"
done
grep -q '\*\*\*\*' "$T/cmdline.$A" || fail "the flag was not masked: $(cat "$T/cmdline.$A")"

REDIS_PASSWORD=$PW "$OPS" status --redis-url "unix://$SOCK" >"$T/status.out" 2>&1 || fail "status"
REDIS_PASSWORD=$PW "$OPS" status --json --redis-url "unix://$SOCK" >>"$T/status.out" 2>&1
"$OPS" status --redis-url "unix://:wrong-$PW@$SOCK" >"$T/wrong.out" 2>&1 && fail "wrong password accepted"
for f in "$T"/*.log "$T"/*.out; do
    [ "$f" = "$T/redis.log" ] && continue
    if grep -q "$PW" "$f"; then fail "password in $(basename "$f")"; fi
done
log "PASS: the password is in no process title, log line or status output"
