#!/usr/bin/env bash
# How long `mtbx arch check arm64` takes against doing the same by hand with
# util-linux and a shell: unshare a user namespace, mount binfmt_misc,
# register qemu-aarch64-static, run an arm64 program. Both in one run, with
# hyperfine; prints the ratio. mtbx also probes the sandbox, searches for and
# ELF-checks the interpreter and writes its program, which the manual way
# skips.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v hyperfine >/dev/null || { apt-get install -y -qq hyperfine >/dev/null; }
bin="$PWD/$(scripts/setup.sh)"
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
cargo run --quiet --release --example write_program -- arm64 "$work/prog"
line=":qemu-aarch64:M::$(printf '\\x%02x' 0x7f 0x45 0x4c 0x46 2 1 1 0 0 0 0 0 0 0 0 0 2 0 0xb7 0):$(printf '\\x%02x' 0xff 0xff 0xff 0xff 0xff 0xff 0xff 0 0xff 0xff 0xff 0xff 0xff 0xff 0xff 0xff 0xfe 0xff 0xff 0xff):/usr/bin/qemu-aarch64-static:F"
manual="unshare --user --map-root-user --mount sh -c 'd=\$(mktemp -d); mount -t binfmt_misc binfmt_misc \$d; echo \"$line\" > \$d/register; $work/prog >/dev/null'"
hyperfine --warmup 3 --runs 30 --export-json "$work/r.json" \
    -n mtbx "$bin arch check arm64" \
    -n manual "$manual"
python3 - "$work/r.json" <<'PY'
import json, sys
r = {x["command"]: x["mean"] for x in json.load(open(sys.argv[1]))["results"]}
print(f"mtbx arch check arm64: {r['mtbx']*1000:.1f} ms; manual unshare+mount+register+run: {r['manual']*1000:.1f} ms; ratio mtbx/manual = {r['mtbx']/r['manual']:.2f}")
PY
