#!/usr/bin/env bash
# docs/CONFIG.md, the configuration reference, is what the executables' --help says: regenerated
# from the built binaries, it must equal the committed file (a setting added, renamed or given
# another default without the reference following fails here).
source "$(dirname "$0")/lib.sh"

"$CGA_SOURCE_DIR/docs/config-doc.sh" "$CGA_BIN_DIR" >"$T/CONFIG.md" || fail "config-doc.sh failed"
if ! diff -u "$CGA_SOURCE_DIR/docs/CONFIG.md" "$T/CONFIG.md" >"$T/diff.log"; then
    head -n 40 "$T/diff.log" >&2
    fail "docs/CONFIG.md differs from the --help of the binaries: run docs/config-doc.sh build/bin > docs/CONFIG.md"
fi
for v in REDIS_URL CGALPHA_NAMESPACE LAB_LEASE_MS NEXUS_LOCK_TTL_MS OPS_BATCH OPS_BUFFER_PATH; do
    grep -q "^| \`$v\`" "$T/CONFIG.md" || fail "$v missing from the reference"
done
log "PASS: docs/CONFIG.md matches the --help of every executable and command"
