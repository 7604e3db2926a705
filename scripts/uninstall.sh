#!/usr/bin/env bash
# Remove what scripts/install.sh installed under PREFIX (default
# /usr/local), as its record PREFIX/share/mtbx/installed lists it:
#   scripts/uninstall.sh [PREFIX]
# Files it wrote; the toolbox link only while it is still the link to
# mtbx; the directories it made, when they are empty again.
set -euo pipefail
prefix="${1:-/usr/local}"
case "$prefix" in
-h | --help) sed -n '2,4p' "$0" >&2; exit 0 ;;
/*) ;;
*) prefix="$PWD/$prefix" ;;
esac
manifest="$prefix/share/mtbx/installed"
if [ ! -f "$manifest" ]; then
    echo "uninstall.sh: $manifest not found: scripts/install.sh installed nothing in $prefix" >&2
    exit 1
fi
# Only paths under PREFIX are touched, whatever the record says.
under() { case "$1" in "$prefix"/*) return 0 ;; *) return 1 ;; esac; }
mapfile -t entries <"$manifest"
for ((i = ${#entries[@]} - 1; i >= 0; i--)); do
    kind="${entries[i]%% *}"
    path="${entries[i]#* }"
    under "$path" || continue
    case "$kind" in
    f) [ -L "$path" ] || rm -f "$path" ;;
    l) [ "$(readlink "$path" 2>/dev/null)" = mtbx ] && rm -f "$path" ;;
    esac
done
rm -f "$manifest"
for ((i = ${#entries[@]} - 1; i >= 0; i--)); do
    [ "${entries[i]%% *}" = d ] || continue
    path="${entries[i]#* }"
    if under "$path" || [ "$path" = "$prefix" ]; then
        rmdir "$path" 2>/dev/null || true
    fi
done
echo "removed mtbx from $prefix" >&2
