#!/usr/bin/env bash
# A plugin author's path, end to end: install cgalpha into a fresh prefix, check the installed
# cgalpha.pc, build the example plugin (examples/plugin) outside the tree with its own Makefile
# and pkg-config, install it into the plugin folder, then load it - by name, by path, with a
# configuration - from a tiny program compiled against the installed headers and libcgalpha,
# and analyze a few bars. Prints what it checked; exits non-zero on the first failure.
set -euo pipefail

: "${CGA_BUILD_DIR:?CGA_BUILD_DIR must point at the build tree (set by ctest)}"
: "${CGA_SOURCE_DIR:?CGA_SOURCE_DIR must point at the source tree (set by ctest)}"

T=$(mktemp -d /tmp/cga-oot-XXXXXX)
trap 'rm -rf "$T"' EXIT
PREFIX=$T/prefix

step() { printf '== %s\n' "$*"; }
ok() { printf '   ok: %s\n' "$*"; }
fail() {
    echo "FAIL: $*" >&2
    exit 1
}
same_dir() { [ "$(cd "$1" && pwd -P)" = "$(cd "$2" && pwd -P)" ]; }

step "cmake --install $CGA_BUILD_DIR --prefix $PREFIX"
cmake --install "$CGA_BUILD_DIR" --prefix "$PREFIX" >"$T/install.log" 2>&1 ||
    { cat "$T/install.log" >&2; fail "cmake --install failed"; }
PC=$(find "$PREFIX" -name cgalpha.pc -path '*/pkgconfig/*' | head -n 1)
[ -n "$PC" ] || fail "no cgalpha.pc installed under $PREFIX"
ok "installed $PC"

step "the installed cgalpha.pc points into $PREFIX"
export PKG_CONFIG_PATH
PKG_CONFIG_PATH=$(dirname "$PC")
pkg-config --exists cgalpha || fail "pkg-config does not find cgalpha in $PKG_CONFIG_PATH"
want_version=$(sed -n 's/^project(cgalpha VERSION \([0-9.]*\).*/\1/p' \
    "$CGA_SOURCE_DIR/CMakeLists.txt")
got_version=$(pkg-config --modversion cgalpha)
[ "$got_version" = "$want_version" ] || fail "version $got_version, want $want_version"
ok "version $got_version"
prefix=$(pkg-config --variable=prefix cgalpha)
includedir=$(pkg-config --variable=includedir cgalpha)
libdir=$(pkg-config --variable=libdir cgalpha)
plugindir=$(pkg-config --variable=plugindir cgalpha)
same_dir "$prefix" "$PREFIX" || fail "prefix=$prefix is not $PREFIX"
ok "prefix=$prefix"
for h in lab.h types.h plugin.h metrics.h; do
    [ -f "$includedir/cgalpha/$h" ] || fail "includedir=$includedir has no cgalpha/$h"
done
ok "includedir=$includedir holds cgalpha/{lab,types,plugin,metrics}.h"
[ -e "$libdir/libcgalpha.so" ] || fail "libdir=$libdir has no libcgalpha.so"
ok "libdir=$libdir holds libcgalpha.so"
for p in trend volatility momentum noop; do
    [ -f "$plugindir/$p.so" ] || fail "plugindir=$plugindir has no $p.so"
done
ok "plugindir=$plugindir holds the built-in plugins"
cflags=$(pkg-config --cflags cgalpha)
libs=$(pkg-config --libs cgalpha)
case " $cflags " in *" -I$includedir "*) ;; *) fail "--cflags '$cflags' lacks -I$includedir" ;; esac
case " $libs " in *" -lcgalpha "*) ;; *) fail "--libs '$libs' lacks -lcgalpha" ;; esac
ok "--cflags $cflags"
ok "--libs $libs"

step "build examples/plugin out of tree with its Makefile"
cp -R "$CGA_SOURCE_DIR/examples/plugin" "$T/hello"
rm -f "$T/hello/hello.so"
make -C "$T/hello" >"$T/make.log" 2>&1 || { cat "$T/make.log" >&2; fail "make failed"; }
[ -f "$T/hello/hello.so" ] || fail "make built no hello.so"
ok "built $T/hello/hello.so"
exported=$(nm -D --defined-only "$T/hello/hello.so" | awk '$2 == "T" { print $3 }')
[ "$exported" = "cga_lab_plugin_entry" ] ||
    fail "hello.so exports functions '$exported', want only cga_lab_plugin_entry"
ok "hello.so exports only cga_lab_plugin_entry"
if ldd "$T/hello/hello.so" | grep -q cgalpha; then fail "hello.so links libcgalpha"; fi
ok "hello.so does not link libcgalpha"
make -C "$T/hello" install >>"$T/make.log" 2>&1 || { cat "$T/make.log" >&2; fail "make install"; }
[ -f "$plugindir/hello.so" ] || fail "make install put no hello.so in $plugindir"
ok "make install -> $plugindir/hello.so"

step "a loader built against the installed headers and libcgalpha"
cat >"$T/loader.c" <<'EOF'
/* loader PLUGINDIR SPEC [SYMBOL]: loads SPEC (searching PLUGINDIR for a name), analyzes ten
 * bars (seven up, three down), prints the outcome in one line. Exit 0 loaded and analyzed,
 * 2 refused to load (the message on stdout), 1 analyze failed. */
#include <stdio.h>
#include <string.h>
#include <cgalpha/err.h>
#include <cgalpha/plugin.h>

int main(int argc, char **argv) {
    if (argc < 3) return 64;
    const char *dirs[] = {argv[1]};
    char err[512];
    cga_plugin_t *p = NULL;
    int rc = cga_plugin_load(&p, argv[2], dirs, 1, err, sizeof err);
    if (rc != CGA_OK) {
        printf("refused %s: %s\n", cga_errname(rc), err);
        return 2;
    }
    cga_bar_t bars[10];
    double c = 100;
    for (int i = 0; i < 10; i++) {
        double open = c;
        c *= i < 7 ? 1.01 : 0.995;
        bars[i] = (cga_bar_t){.t = 1700000000000LL + i * 60000LL, .open = open,
                              .high = open > c ? open : c, .low = open < c ? open : c,
                              .close = c, .volume = 1};
    }
    cga_lab_input_t in = {.task_id = "OOT/1700000000000/x",
                          .symbol = argc > 3 ? argv[3] : "OOT", .bars = bars, .nbars = 10};
    cga_lab_output_t out;
    rc = cga_plugin_analyze(p, &in, &out);
    printf("name=%s version=%s path=%s rc=%s regime=%d confidence=%.3f", cga_plugin_name(p),
           cga_plugin_desc(p)->version, cga_plugin_path(p), cga_errname(rc), (int)out.regime,
           out.confidence);
    for (size_t i = 0; i < out.nmetrics; i++)
        printf(" %s=%g", out.metrics[i].name, out.metrics[i].value);
    if (rc != CGA_OK) printf(" error=%s", out.error);
    printf("\n");
    cga_plugin_free(p);
    return rc == CGA_OK ? 0 : 1;
}
EOF
extra=()
if grep -q '^CGA_SANITIZE:BOOL=ON' "$CGA_BUILD_DIR/CMakeCache.txt" 2>/dev/null; then
    extra=(-fsanitize=address,undefined) # the installed libcgalpha is a sanitizer build
fi
# shellcheck disable=SC2086 # pkg-config output is a list of flags
cc -std=c11 -Wall -Wextra -Werror "${extra[@]}" $cflags "$T/loader.c" -o "$T/loader" $libs \
    -Wl,-rpath,"$libdir" || fail "the loader does not build against the installed cgalpha"
ok "built with: cc $cflags loader.c $libs"
if ldd "$T/loader" | grep -q "libcgalpha.so.* => $(cd "$libdir" && pwd -P)"; then
    ok "the loader runs on the installed libcgalpha"
elif ldd "$T/loader" | grep -q "libcgalpha.so.* => $libdir"; then
    ok "the loader runs on the installed libcgalpha"
else
    ldd "$T/loader" >&2
    fail "the loader does not use $libdir/libcgalpha.so"
fi

# run SPEC [SYMBOL]: runs the loader, expects exit code $want, output matching the regex $pat
run() {
    local out code=0
    out=$("$T/loader" "$plugindir" "$@" 2>&1) || code=$?
    [ "$code" = "$want" ] || fail "loader $*: exit $code, want $want: $out"
    [[ $out =~ $pat ]] || fail "loader $*: '$out' does not match /$pat/"
    ok "loader $*: $out"
}

step "load and run the example plugin"
# 7 of 10 bars up: share 0.7 >= 0.6 -> bull (1) with confidence 0.7
want=0 pat="^name=hello version=1.0.0 path=$plugindir/hello.so rc=OK regime=1 confidence=0.700"
pat+=" up_share=0.7 n_bars=10$"
run hello
# up=0.9: 0.7 is neither >= 0.9 nor <= 0.1 -> sideways (3), confidence 1 - |0.7 - 0.5| = 0.8
want=0 pat="^name=hello .* rc=OK regime=3 confidence=0.800 up_share=0.7 n_bars=10$"
run hello=up=0.9
want=0 pat="^name=hello version=1.0.0 path=$T/hello/hello.so rc=OK regime=1 "
run "$T/hello/hello.so"
want=2 pat="^refused EPLUGIN: plugin hello: init failed: up: want a share in \(0.5, 1\], got \"2\"$"
run hello=up=2
want=2 pat="^refused ENOTFOUND: plugin nosuch: not found \(no nosuch.so in $plugindir\)$"
run nosuch

step "the installed built-in plugins load the same way"
want=0 pat="^name=trend version=[^ ]+ path=$plugindir/trend.so rc=OK regime=[0-4] .*t_stat="
run trend
want=0 pat="^name=momentum .* rc=OK regime=1 .* z="
run momentum

echo "PASS: installed cgalpha, built examples/plugin out of tree with pkg-config, loaded it"
