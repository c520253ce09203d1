#!/usr/bin/env bash
# The whole test suite, from a fresh checkout: installs the Debian packages it needs, builds
# (normal build, then AddressSanitizer + UndefinedBehaviorSanitizer), runs every test against
# real redis-servers that the tests start themselves on free loopback ports in temp folders,
# then runs each libFuzzer target briefly. Exits non-zero if anything failed.
#
#   tests/run.sh              everything
#   tests/run.sh --quick      normal build only (no sanitizer build, no fuzzing)
#   FUZZ_SECONDS=600 tests/run.sh   longer fuzzing
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
JOBS=$(nproc 2>/dev/null || echo 2)
QUICK=0
[ "${1:-}" = "--quick" ] && QUICK=1
FUZZ_SECONDS=${FUZZ_SECONDS:-12}

deploy/install-deps.sh --test

step() { printf '\n==== %s\n' "$*"; }
build() { # dir, cmake args...
    local dir=$1; shift
    cmake -S "$ROOT" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
    cmake --build "$dir" -j "$JOBS"
}

step "build (RelWithDebInfo)"
build build
step "tests"
(cd build && ctest --output-on-failure -j "$JOBS")

if [ "$QUICK" = 0 ]; then
    step "build (ASan + UBSan)"
    build build-asan -DCGA_SANITIZE=ON
    step "tests under ASan + UBSan"
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
    export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    (cd build-asan && ctest --output-on-failure -j "$JOBS")

    step "fuzz (${FUZZ_SECONDS}s per target)"
    CC=clang cmake -S "$ROOT" -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCGA_FUZZ=ON \
        -DCGA_FUZZ_SECONDS="$FUZZ_SECONDS" >/dev/null
    cmake --build build-fuzz -j "$JOBS" --target fuzz_tasks fuzz_reports fuzz_small
    (cd build-fuzz && ctest --output-on-failure -L fuzz)
fi
step "all tests passed"
