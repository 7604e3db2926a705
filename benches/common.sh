# Shared by the bench scripts: tools, the static binary, and a local
# distribution registry in a scratch directory.
#   need_tools TOOL...     install the Debian packages of missing tools
#   start_registry         sets $work (scratch, removed on exit), $port,
#                          $bin (the static mtbx) and starts docker-registry
#   MTBX_BASELINE=FILE     another mtbx build (say, the last release) timed
#                          in the same run as `mtbx-baseline`, so a change's
#                          effect is measured against noise of the same run

need_tools() {
    local need=()
    for t in "$@"; do command -v "$t" >/dev/null || need+=("$t"); done
    [ "${#need[@]}" -eq 0 ] || apt-get install -y -qq "${need[@]}" >/dev/null
}

start_registry() {
    bin="$PWD/$(scripts/setup.sh)"
    work="$(mktemp -d)"
    port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
    cat > "$work/config.yml" <<YML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $work/registry}}
http: {addr: 127.0.0.1:$port, secret: bench}
YML
    docker-registry serve "$work/config.yml" >/dev/null 2>&1 &
    registry_pid=$!
    trap 'kill $registry_pid; umount -l "$work/graph/overlay" 2>/dev/null || true; rm -rf "$work"' EXIT
    for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.05; done
}

# The ratio of mtbx to the baseline build, when one was timed.
baseline_ratio() {
    python3 - "$1" <<'PY'
import json, sys
r = {x["command"]: x["mean"] for x in json.load(open(sys.argv[1]))["results"]}
if "mtbx-baseline" in r:
    print(f"mtbx {r['mtbx']*1000:.1f} ms vs baseline {r['mtbx-baseline']*1000:.1f} ms: ratio {r['mtbx']/r['mtbx-baseline']:.2f}")
PY
}
