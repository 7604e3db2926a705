#!/usr/bin/env bash
# Install mtbx under PREFIX (default /usr/local), for distributions without
# the Debian package (scripts/deb.sh):
#   scripts/install.sh [--bin PATH] [--toolbox [--force]] [PREFIX]
# The static binary (default: this repository's release build), its manual
# pages, and bash, zsh and fish completions in their usual places under
# PREFIX. With --toolbox also PREFIX/bin/toolbox, a link to mtbx (its
# Toolbx mode), with toolbox's pages and completions; an existing toolbox
# there (Toolbx's own, say) is never replaced unless --force is given,
# and then it is gone for good. What is written is recorded in
# PREFIX/share/mtbx/installed, which scripts/uninstall.sh reads.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"

bin="$here/target/$(uname -m)-unknown-linux-musl/release/mtbx"
toolbox=0
force=0
prefix=/usr/local
while [ $# -gt 0 ]; do
    case "$1" in
    --bin) bin="$2"; shift 2 ;;
    --toolbox) toolbox=1; shift ;;
    --force) force=1; shift ;;
    -h | --help) sed -n '2,4p' "$0" >&2; exit 0 ;;
    -*) echo "install.sh: unknown option $1 (scripts/install.sh [--bin PATH] [--toolbox [--force]] [PREFIX])" >&2; exit 2 ;;
    *) prefix="$1"; shift ;;
    esac
done
if [ ! -x "$bin" ]; then
    echo "install.sh: no mtbx binary at $bin: build it with scripts/setup.sh, or name one with --bin PATH" >&2
    exit 2
fi
case "$prefix" in
/*) ;;
*) prefix="$PWD/$prefix" ;;
esac
if [ "$force" = 1 ] && [ "$toolbox" = 0 ]; then
    echo "install.sh: --force only says to replace an existing toolbox: give it with --toolbox" >&2
    exit 2
fi

# Refusals first: nothing is written when the toolbox link cannot be.
link="$prefix/bin/toolbox"
if [ "$toolbox" = 1 ] && { [ -e "$link" ] || [ -L "$link" ]; } &&
    [ "$(readlink "$link" 2>/dev/null)" != mtbx ] && [ "$force" = 0 ]; then
    echo "install.sh: $link exists and is not mtbx's link: it is left alone; run mtbx's Toolbx mode through another link, or give --force to replace it" >&2
    exit 1
fi

manifest="$prefix/share/mtbx/installed"
record=()
# Each directory made here is recorded, so uninstall.sh can remove it again.
dir() {
    local d="$1" missing=()
    while [ ! -d "$d" ]; do
        missing=("$d" "${missing[@]}")
        d="$(dirname "$d")"
    done
    for d in "${missing[@]}"; do
        mkdir -m 0755 "$d"
        record+=("d $d")
    done
}
file() { # MODE DEST (content on stdin)
    dir "$(dirname "$2")"
    local tmp
    tmp="$(mktemp "$(dirname "$2")/.mtbx-install.XXXXXX")"
    cat >"$tmp"
    chmod "$1" "$tmp"
    mv -f "$tmp" "$2"
    record+=("f $2")
}

file 0755 "$prefix/bin/mtbx" <"$bin"
mtbx="$prefix/bin/mtbx"
if [ "$toolbox" = 1 ]; then
    rm -f "$link"
    ln -s mtbx "$link"
    record+=("l $link")
fi

pages="$(mktemp -d)"
trap 'rm -rf "$pages"' EXIT
"$mtbx" man-pages "$pages" 2>/dev/null
for page in "$pages"/*.1; do
    name="$(basename "$page")"
    case "$name" in
    toolbox*) [ "$toolbox" = 1 ] || continue ;;
    esac
    file 0644 "$prefix/share/man/man1/$name" <"$page"
done

# The completions name the program by its installed path (the path it is
# run by here). zsh autoloads _NAME as the function: it ends by calling it.
names=(mtbx)
[ "$toolbox" = 1 ] && names+=(toolbox)
for n in "${names[@]}"; do
    # (Not piped into `file`: its record would be lost in the pipe's subshell.)
    "$prefix/bin/$n" completion bash >"$pages/bash"
    { "$prefix/bin/$n" completion zsh; printf '%s "$@"\n' "_clap_dynamic_completer_$n"; } >"$pages/zsh"
    "$prefix/bin/$n" completion fish >"$pages/fish"
    file 0644 "$prefix/share/bash-completion/completions/$n" <"$pages/bash"
    file 0644 "$prefix/share/zsh/site-functions/_$n" <"$pages/zsh"
    file 0644 "$prefix/share/fish/vendor_completions.d/$n.fish" <"$pages/fish"
done

# The record: the earlier one's entries too (an install over an install),
# each once, in the order made.
dir "$(dirname "$manifest")"
{
    [ -f "$manifest" ] && cat "$manifest"
    printf '%s\n' "${record[@]}"
} | awk '!seen[$0]++' >"$manifest.new"
mv -f "$manifest.new" "$manifest"
echo "installed mtbx in $prefix$([ "$toolbox" = 1 ] && echo " (with $link)")" >&2
