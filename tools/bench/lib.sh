# Shared shell helpers for the kvm-rs bench scripts. Sourced, not executed.
# shellcheck shell=bash

set -euo pipefail

KVMRS_TOP=${KVMRS_TOP:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
# Build cache, outside the clone, shared by every clone on this machine.
KVMRS_CACHE=${KVMRS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kvm-rs}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# Debian suite the toolchain root follows (and its backports).
KVMRS_SUITE=${KVMRS_SUITE:-trixie}

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'kvm-rs: error: %s\n' "$*" >&2; exit 1; }

# Stable short hash of files and strings: hashkey FILE... -- STRING...
hashkey() {
	local files=() strs=()
	while [ $# -gt 0 ]; do
		[ "$1" = -- ] && { shift; strs=("$@"); break; }
		files+=("$1"); shift
	done
	{ [ ${#files[@]} -eq 0 ] || cat "${files[@]}"; printf '%s\n' "${strs[@]}"; } |
		sha256sum | cut -c1-16
}

# Packages from packages.txt without comments.
toolchain_packages() {
	sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$KVMRS_TOP/tools/bench/packages.txt"
}

toolchain_key() { hashkey "$KVMRS_TOP/tools/bench/packages.txt" "$KVMRS_TOP/tools/bench/mkroot.sh" -- "$KVMRS_SUITE"; }
toolchain_root() { echo "$KVMRS_CACHE/toolchain/$(toolchain_key)"; }

# Serialise work on a shared cache entry between concurrent runs (several
# clones or worktrees share one cache): cache_lock NAME holds
# $KVMRS_CACHE/.lock-NAME until the calling script exits.
cache_lock() {
	mkdir -p "$KVMRS_CACHE"
	exec {_kvmrs_lock_fd}>"$KVMRS_CACHE/.lock-$1"
	flock "$_kvmrs_lock_fd"
}

# cache_lock_shared NAME holds $KVMRS_CACHE/.lock-NAME shared (many holders,
# no exclusive one) until cache_unlock_shared or the script exits.
cache_lock_shared() {
	mkdir -p "$KVMRS_CACHE"
	exec {_kvmrs_shlock_fd}>"$KVMRS_CACHE/.lock-$1"
	flock -s "$_kvmrs_shlock_fd"
}
cache_unlock_shared() {
	exec {_kvmrs_shlock_fd}>&-
}

# The key of this checkout's kernel patch series (what linux-src.sh applies).
series_key() {
	(cd "$KVMRS_TOP/rust/linux-7.3-patches" &&
		hashkey series $(grep -v '^#' series) -- "$(cat "$KVMRS_CACHE/linux/src/.git/kvmrs-version")")
}
