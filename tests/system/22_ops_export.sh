#!/usr/bin/env bash
# `cgalpha-ops export` / `import`: a live namespace (queues with pending entries of a dead lab
# and a dead nexus, delivery counts, a dead letter, heartbeats, regimes, the regime log, a lock)
# is exported, purged and imported back identical (streams with their groups, pending entries
# and delivery counts, values, TTLs), also into another namespace, without the locks; then a lab
# and nexus on the restored namespace reclaim the pending entries and finish every task.
# Refusals: an existing FILE without --force, existing keys without --replace (nothing
# changed), a truncated, corrupted or foreign file (exit 5, one line, nothing written), a
# payload Redis rejects (exit 1, what was restored deleted again).
source "$(dirname "$0")/lib.sh"

NS=cgalpha
Q=$NS:queue:analysis
R=$NS:queue:reports
F=$T/ns.cgx
TASKS=144 # 2 symbols x 24 windows (400 bars, window 32, step 16) x 3 labs

keys_of() { # keys_of NS: the namespace's keys, sorted, without "NS:"
    rcli --scan --pattern "$1:*" | sed "s/^$1://" | LC_ALL=C sort
}

# snapshot NS: everything a user relies on, key by key (relative names; locks, which are not
# exported, left out), TTLs as none/yes: a stream's entries, groups, consumers, pending entries
# with delivery times and counts (XINFO STREAM FULL), a string's bytes.
snapshot() {
    local ns=$1 k
    for k in $(keys_of "$ns" | grep -v '^lock:'); do
        printf '== %s %s ttl:%s\n' "$k" "$(rcli TYPE "$ns:$k")" \
            "$( [ "$(rcli PTTL "$ns:$k")" = -1 ] && echo none || echo yes)"
        case $(rcli TYPE "$ns:$k") in
        stream) rcli XINFO STREAM "$ns:$k" FULL COUNT 0 ;;
        string) rcli GET "$ns:$k" | od -An -tx1 ;;
        *) rcli DUMP "$ns:$k" | od -An -tx1 ;;
        esac
    done
}

ns_count() { keys_of "$1" | grep -c . || true; }

summary_get() { # summary_get FIELD: the lab's --summary of namespace cgalpha
    CGALPHA_LOG_LEVEL=warn "$LAB" --summary | awk -v k="$1" '$1 == k { print $2 }'
}

# one_line FILE: exactly one line on stderr
one_line() { [ "$(wc -l <"$1")" = 1 ] || fail "expected one line, got: $(cat "$1")"; }

# ---- a live namespace ------------------------------------------------------------------------
start_redis
"$OPS" enqueue --symbols 2 --bars 400 --batch 4 >"$T/enqueue.log" 2>&1 || fail "enqueue"
[ "$(rcli XLEN $Q)" = 36 ] || fail "expected 36 entries, got $(rcli XLEN $Q)"
# A lab that died holding 6 entries, two of them delivered twice.
rcli XREADGROUP GROUP labs lab-ghost COUNT 6 STREAMS $Q '>' >/dev/null
mapfile -t GHOST < <(rcli XPENDING $Q labs - + 10 | awk 'NR % 4 == 1')
[ "${#GHOST[@]}" = 6 ] || fail "ghost claim: ${#GHOST[@]} entries"
rcli XCLAIM $Q labs lab-ghost 0 "${GHOST[0]}" "${GHOST[1]}" >/dev/null # counts a delivery
rcli XADD $Q '*' m 'not msgpack' >/dev/null # dead-lettered at once by the lab

spawn lab "$LAB" --id lab-a --plugin trend --plugin volatility --plugin momentum --claim-count 1
LB=$LAST_PID
dead_is_1() { [ "$(rcli XLEN $Q:dead)" = 1 ]; }
analysis_settled() { [ "$(group_lag analysis labs)" = 0 ] && [ "$(group_pending analysis labs)" = 6 ]; }
wait_for 30 "the garbage dead-lettered" dead_is_1
wait_for 30 "every entry but the ghost's done" analysis_settled
# A nexus that died holding 2 report entries.
rcli XGROUP CREATE $R nexus 0 MKSTREAM >/dev/null 2>&1 || true
rcli XREADGROUP GROUP nexus nexus-ghost COUNT 2 STREAMS $R '>' >/dev/null
spawn nexus "$NEXUS" --id nexus-a
NX=$LAST_PID
reports_settled() {
    [ "$(group_lag reports nexus)" = 0 ] && [ "$(group_pending reports nexus)" = 2 ] &&
        [ "$(rcli XLEN $NS:state:regime_log)" -gt 0 ] && [ "$(rcli EXISTS $NS:lock:nexus)" = 1 ]
}
wait_for 30 "nexus folded every report but the ghost's" reports_settled
kill -9 "$LB" "$NX"
wait "$LB" "$NX" 2>/dev/null || true
# The heartbeat of the dead lab and the dead nexus's lock would expire within 10 s: make them
# last the test (the TTLs checked below are these).
rcli PEXPIRE $NS:state:worker:lab-a 120000 >/dev/null
rcli PEXPIRE $NS:lock:nexus 120000 >/dev/null
[ "$(rcli EXISTS $NS:state:worker:lab-a)" = 1 ] || fail "no heartbeat of lab-a"
rcli SET unrelated:key keep >/dev/null
keys_of $NS | grep -v '^lock:' >"$T/keys.before"
N=$(grep -c . "$T/keys.before")
grep -q '^state:regime:SYN' "$T/keys.before" || fail "no regime state: $(cat "$T/keys.before")"
snapshot $NS >"$T/before.snap"
[ "$(rcli EXISTS $NS:lock:nexus)" = 1 ] || fail "the nexus lock is not there"
log "live namespace: $N keys (+ the nexus lock), 6+2 entries pending, 1 dead letter"

# ---- export ----------------------------------------------------------------------------------
"$OPS" export "$F" >"$T/export.out" 2>"$T/export.err" || fail "export exited $?: $(cat "$T/export.err")"
SIZE=$(stat -c %s "$F")
grep -qx "exported $N keys ($SIZE bytes) of namespace $NS to $F" "$T/export.out" ||
    fail "export said: $(cat "$T/export.out")"
[ "$(head -c 17 "$F")" = "CGALPHA-EXPORT 1" ] || fail "magic"
ls "$T"/*.tmp-* >/dev/null 2>&1 && fail "a temporary file was left"
SUM=$(md5sum <"$F")

rc=0; "$OPS" export "$F" >"$T/ex2.out" 2>"$T/ex2.err" || rc=$?
[ $rc = 2 ] || fail "export over an existing file exited $rc"
one_line "$T/ex2.err"
grep -q "exists; nothing written (--force overwrites it)" "$T/ex2.err" || fail "$(cat "$T/ex2.err")"
[ "$(md5sum <"$F")" = "$SUM" ] || fail "the existing file was changed"
"$OPS" export "$F" --force >"$T/ex3.out" 2>&1 || fail "export --force exited $?"
grep -q "^exported $N keys" "$T/ex3.out" || fail "export --force said: $(cat "$T/ex3.out")"
rc=0; "$OPS" export >/dev/null 2>"$T/ex4.err" || rc=$?
[ $rc = 2 ] && one_line "$T/ex4.err" && grep -q "missing FILE" "$T/ex4.err" || fail "no FILE: $rc"
rc=0; "$OPS" export "$T/no/such/dir/f" >/dev/null 2>"$T/ex5.err" || rc=$?
[ $rc = 1 ] && one_line "$T/ex5.err" && grep -q "cannot create" "$T/ex5.err" ||
    fail "unwritable folder: $rc $(cat "$T/ex5.err")"
"$OPS" export - >"$T/stdout.cgx" 2>"$T/ex6.err" || fail "export - exited $?"
grep -q "^exported $N keys .* to stdout" "$T/ex6.err" || fail "export -: $(cat "$T/ex6.err")"

# ---- import refuses existing keys, changing nothing --------------------------------------------
rc=0; "$OPS" import "$F" >"$T/im1.out" 2>"$T/im1.err" || rc=$?
[ $rc = 1 ] || fail "import over existing keys exited $rc"
one_line "$T/im1.err"
grep -Eq "$N of the $N keys to restore exist already in namespace $NS \(first: $NS:[^)]+\); nothing changed \(--replace overwrites them\)" \
    "$T/im1.err" || fail "import refusal: $(cat "$T/im1.err")"
[ "$(rcli EXISTS $NS:lock:nexus)" = 1 ] || fail "the refused import touched the lock"
snapshot $NS | cmp -s - "$T/before.snap" || fail "the refused import changed something"

# ---- purge, import: identical ----------------------------------------------------------------
"$OPS" purge --yes >/dev/null 2>&1 || fail "purge"
[ "$(ns_count $NS)" = 0 ] || fail "purge left keys"
"$OPS" import "$F" >"$T/im2.out" 2>"$T/im2.err" || fail "import exited $?: $(cat "$T/im2.err")"
grep -qx "imported $N keys into namespace $NS" "$T/im2.out" || fail "import said: $(cat "$T/im2.out")"
snapshot $NS >"$T/after.snap"
cmp -s "$T/before.snap" "$T/after.snap" ||
    fail "restored namespace differs: $(diff "$T/before.snap" "$T/after.snap" | head -20)"
keys_of $NS | grep -q '^lock:' && fail "a lock was exported"
ttl=$(rcli PTTL $NS:state:worker:lab-a)
[ "$ttl" -gt 100000 ] && [ "$ttl" -le 120000 ] || fail "heartbeat TTL after import: $ttl"
for k in $(grep '^state:regime:' "$T/keys.before"); do
    ttl=$(rcli PTTL "$NS:$k")
    [ "$ttl" -gt 0 ] && [ "$ttl" -le 300000 ] || fail "$k TTL after import: $ttl"
done
# The at-least-once state, spelled out: who holds what, delivered how often.
[ "$(group_pending analysis labs)" = 6 ] || fail "analysis pending after import"
rcli XPENDING $Q labs - + 10 >"$T/pel.txt"
[ "$(awk 'NR % 4 == 2' "$T/pel.txt" | sort -u)" = lab-ghost ] || fail "PEL owner: $(cat "$T/pel.txt")"
[ "$(awk 'NR % 4 == 0' "$T/pel.txt" | sort | uniq -c | awk '{print $1 "x" $2}' | xargs)" = "4x1 2x2" ] ||
    fail "delivery counts after import: $(cat "$T/pel.txt")"
[ "$(group_pending reports nexus)" = 2 ] || fail "reports pending after import"
[ "$(rcli XLEN $Q:dead)" = 1 ] || fail "dead letter after import"
[ "$(rcli GET unrelated:key)" = keep ] || fail "a key outside the namespace changed"

"$OPS" import "$F" --replace >"$T/im3.out" 2>"$T/im3.err" || fail "import --replace exited $?"
grep -qx "imported $N keys into namespace $NS" "$T/im3.out" || fail "--replace said: $(cat "$T/im3.out")"
snapshot $NS | cmp -s - "$T/before.snap" || fail "namespace differs after --replace"

# ---- into another namespace (a move), from stdin ------------------------------------------------
"$OPS" import - --namespace moved <"$T/stdout.cgx" >"$T/im4.out" 2>"$T/im4.err" ||
    fail "import into moved exited $?: $(cat "$T/im4.err")"
grep -qx "imported $N keys into namespace moved" "$T/im4.out" || fail "moved: $(cat "$T/im4.out")"
snapshot moved | cmp -s - "$T/before.snap" || fail "the moved namespace differs"

# ---- bad files: exit 5, one line, nothing written ------------------------------------------
bad_file() { # bad_file FILE EXPECTED_TEXT
    local rc=0
    "$OPS" import "$1" --namespace scratch >/dev/null 2>"$T/bad.err" || rc=$?
    [ $rc = 5 ] || fail "import of $1 exited $rc: $(cat "$T/bad.err")"
    one_line "$T/bad.err"
    grep -q -- "$2" "$T/bad.err" || fail "import of $1 said: $(cat "$T/bad.err")"
    grep -q "nothing imported" "$T/bad.err" || fail "no 'nothing imported': $(cat "$T/bad.err")"
    [ "$(ns_count scratch)" = 0 ] || fail "import of $1 wrote keys"
}
head -c $((SIZE / 2)) "$F" >"$T/half.cgx"
bad_file "$T/half.cgx" "is truncated"
head -c $((SIZE - 3)) "$F" >"$T/cut.cgx"
bad_file "$T/cut.cgx" "truncated"
head -c 60 /dev/urandom >"$T/random.cgx"
bad_file "$T/random.cgx" "not a cgalpha export"
: >"$T/empty.cgx"
bad_file "$T/empty.cgx" "not a cgalpha export"
printf 'CGALPHA-EXPORT 2\nxx' >"$T/v2.cgx"
bad_file "$T/v2.cgx" "format version 2 is not supported"
{ cat "$F"; printf 'x'; } >"$T/extra.cgx"
bad_file "$T/extra.cgx" "1 unexpected bytes after the trailer"
cp "$F" "$T/flip.cgx" # one byte changed in the middle of the biggest payload
off=$((SIZE / 2))
printf "\\x$(printf %02x $(( ($(od -An -tu1 -j $off -N1 "$F") + 1) % 256 )))" |
    dd of="$T/flip.cgx" bs=1 seek=$off conv=notrunc status=none
bad_file "$T/flip.cgx" "checksum mismatch"
rc=0; "$OPS" import "$T/nonexistent.cgx" >/dev/null 2>"$T/nx.err" || rc=$?
[ $rc = 2 ] && one_line "$T/nx.err" && grep -q "cannot read" "$T/nx.err" || fail "missing file: $rc"
rc=0; "$OPS" import "$F" "$F" >/dev/null 2>"$T/two.err" || rc=$?
[ $rc = 2 ] && one_line "$T/two.err" && grep -q "exactly one FILE" "$T/two.err" || fail "2 files: $rc"

# ---- a payload Redis rejects: exit 1, one line, what was restored deleted again ----------------
# (python3 rewrites the file with a damaged DUMP payload in the last record and a trailer that
# matches, as an export from an incompatible Redis would look; it also checks the CRC with zlib)
if command -v python3 >/dev/null 2>&1; then
    python3 - "$F" "$T/damaged.cgx" <<'EOF' || fail "python check of the format"
import struct, sys, zlib
data = open(sys.argv[1], 'rb').read()
magic = b'CGALPHA-EXPORT 1\n'
assert data.startswith(magic)
def rd(p):
    t = data[p]
    if t <= 0x7f: return t, p + 1
    if t >= 0xe0: return t - 256, p + 1
    if t == 0xc0: return None, p + 1
    if 0x90 <= t <= 0x9f: return ('array', t & 15), p + 1
    if 0xa0 <= t <= 0xbf: n = t & 31; return (p + 1, n), p + 1 + n
    w = {0xc4: 1, 0xc5: 2, 0xc6: 4, 0xd9: 1, 0xda: 2, 0xdb: 4}.get(t)
    if w:
        n = int.from_bytes(data[p + 1:p + 1 + w], 'big')
        return (p + 1 + w, n), p + 1 + w + n
    w = {0xcc: 1, 0xcd: 2, 0xce: 4, 0xcf: 8, 0xd0: 1, 0xd1: 2, 0xd2: 4, 0xd3: 8}[t]
    return int.from_bytes(data[p + 1:p + 1 + w], 'big', signed=t >= 0xd0), p + 1 + w
p = len(magic)
hdr, p = rd(p); assert hdr == ('array', 3)
ns, p = rd(p); ver, p = rd(p); created, p = rd(p)
assert data[ns[0]:ns[0] + ns[1]] == b'cgalpha'
recs = []
while True:
    start = p
    a, p = rd(p)
    if a == ('array', 4):
        nil, p = rd(p); count, p = rd(p); nbytes, p = rd(p); crc, p = rd(p)
        assert nil is None and count == len(recs) and nbytes == start and p == len(data)
        assert crc == zlib.crc32(data[:start]), 'CRC'
        break
    assert a == ('array', 3)
    name, p = rd(p); pttl, p = rd(p); dump, p = rd(p)
    n = data[name[0]:name[0] + name[1]]
    assert not n.startswith(b'lock:'), n
    recs.append(dump)
# damage the last record's payload (its RDB checksum no longer matches), fix the trailer
off, n = recs[-1]
body = bytearray(data[:start])
body[off + n // 2] ^= 0x55
body += b'\x94\xc0' + b'\xce' + struct.pack('>I', len(recs)) + b'\xcf' + \
    struct.pack('>Q', len(body)) + b'\xce' + struct.pack('>I', zlib.crc32(bytes(body)))
open(sys.argv[2], 'wb').write(bytes(body))
EOF
    rc=0; "$OPS" import "$T/damaged.cgx" --namespace broken >/dev/null 2>"$T/dmg.err" || rc=$?
    [ $rc = 1 ] || fail "damaged payload: exit $rc: $(cat "$T/dmg.err")"
    one_line "$T/dmg.err"
    grep -q "cannot restore broken:.*DUMP payload version or checksum are wrong" "$T/dmg.err" ||
        fail "damaged payload said: $(cat "$T/dmg.err")"
    grep -Eq "the $((N - 1)) keys restored before it were deleted again: nothing changed" \
        "$T/dmg.err" || fail "no rollback: $(cat "$T/dmg.err")"
    [ "$(ns_count broken)" = 0 ] || fail "the failed import left keys: $(keys_of broken)"
else
    log "python3 missing: the damaged-payload case is skipped"
fi

# ---- the restored namespace works: pending entries reclaimed, every task done ---------------
spawn lab2 "$LAB" --id lab-b --plugin trend --plugin volatility --plugin momentum --lease-ms 1000
LB=$LAST_PID
spawn nexus2 "$NEXUS" --id nexus-b --lease-ms 1000
NX=$LAST_PID
all_done() {
    [ "$(group_pending analysis labs)" = 0 ] && [ "$(group_lag analysis labs)" = 0 ] &&
        [ "$(group_pending reports nexus)" = 0 ] && [ "$(group_lag reports nexus)" = 0 ] &&
        [ "$(summary_get report_tasks)" = $TASKS ]
}
wait_for 60 "every task reported and every report folded after the import" all_done
[ "$(summary_get analysis_dead)" = 1 ] || fail "dead letters after the run"
stop_proc "$LB" || fail "lab exit $?"
stop_proc "$NX" || fail "nexus exit $?"
log "PASS: $N keys ($SIZE bytes) exported and imported identical (6+2 pending, delivery counts," \
    "dead letter, TTLs, no lock), refusals changed nothing, bad files exit 5;" \
    "all $TASKS tasks done after the import"
