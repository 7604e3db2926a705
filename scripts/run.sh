#!/usr/bin/env bash
# Set up (see setup.sh), then run the static mtbx with the given arguments:
#   scripts/run.sh arch check arm64 ppc64le s390x riscv64
set -euo pipefail
bin="$("$(dirname "$0")/setup.sh")"
exec "$(dirname "$0")/../$bin" "$@"
