#!/usr/bin/env bash
# The whole test suite: set up, check formatting and lints, build the
# static binary, and run every test (unit, integration, vendor-tests).
# Tests that need user namespaces or QEMU print SKIPPED lines where the
# machine lacks them; with MTBX_TEST_REQUIRE_ALL=1 (as CI runs) they fail.
#
# Two systems: this machine (Debian 12, podman 4.3) runs everything; then,
# as root where its tree can be built, Debian 13 (podman 5.4, rootless
# overlay, QEMU 10; scripts/debian13.sh) runs the vendor tests that touch
# podman again. Each gets a header and its time; the last line adds up
# both systems' test results in libtest's words.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
bin="$(scripts/setup.sh)"
cargo fmt --check
cargo clippy --quiet --all-targets --locked -- -D warnings

logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT
status=0
summary=()
header() { printf '\n======== %s ========\n' "$*"; }
took() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }
started=$SECONDS

header "debian12: this machine ($(podman --version 2>/dev/null || echo 'no podman')): the whole suite"
t=$SECONDS
result=ok
MTBX_STATIC_BIN="$PWD/$bin" cargo test --locked 2>&1 | tee "$logs/debian12" || { status=1; result=FAILED; }
summary+=("debian12 (this machine): $(took $((SECONDS - t))), $result")

header "debian13: podman 5.4 in scripts/debian13.sh's tree: the podman vendor tests"
skip13() {
    echo "SKIPPED debian13: $1" >&2
    if [ "${MTBX_TEST_REQUIRE_ALL:-}" = 1 ]; then
        echo "debian13: cannot run here but MTBX_TEST_REQUIRE_ALL=1" >&2
        status=1
        summary+=("debian13: FAILED (cannot run: $1)")
    else
        summary+=("debian13: SKIPPED ($1)")
    fi
}
t=$SECONDS
if ! reason="$(scripts/debian13.sh check)"; then
    skip13 "$reason"
elif ! scripts/debian13.sh build >/dev/null; then
    skip13 "its tree could not be built (scripts/debian13.sh build; see its build.log)"
else
    result=ok
    MTBX_STATIC_BIN="$PWD/$bin" scripts/debian13.sh test 2>&1 | tee "$logs/debian13" || { status=1; result=FAILED; }
    summary+=("debian13 (podman 5.4): $(took $((SECONDS - t))) including the tree, $result")
fi

header "both systems"
printf '%s\n' "${summary[@]}"
# Every "test result:" line of both runs, added up, as the last line.
cat "$logs"/* | awk -v status="$status" -v secs="$((SECONDS - started))" '
    /^test result: / {
        for (i = 1; i <= NF; i++) {
            n = $(i - 1) + 0
            if ($i ~ /^passed/) p += n
            else if ($i ~ /^failed/) f += n
            else if ($i ~ /^ignored/) ig += n
            else if ($i ~ /^measured/) m += n
            else if ($i == "out;" && $(i - 1) == "filtered") fo += $(i - 2)
        }
    }
    END {
        r = (status == 0 && f == 0) ? "ok" : "FAILED"
        printf "test result: %s. %d passed; %d failed; %d ignored; %d measured; %d filtered out; finished in %d.00s\n", r, p, f, ig, m, fo, secs
    }'
exit "$status"
