#!/bin/bash
# Prepare the patched Linux 7.3 source tree (run inside the toolchain root).
#
# $KVMRS_CACHE/linux/src is a git repository: tag 'base' is the pristine
# Debian linux-source-7.3, branch 'kvm-rs' is base plus our patch series
# (rust/linux-7.3-patches/series). Switching between series versions with
# git keeps the mtimes of unchanged files, so kernel rebuilds after a patch
# change are incremental.
. "$(dirname "$0")/lib.sh"

src=$KVMRS_CACHE/linux/src
patchdir=$KVMRS_TOP/rust/linux-7.3-patches
# Fast path, no lock: the tree carries this checkout's series already
# (kernel.sh checks again under the build lock).
if [ -f "$src/.kvmrs-base" ] && [ "$(cat "$src/.git/kvmrs-series" 2>/dev/null)" = "$(series_key)" ]; then
	exit 0
fi
# "linux-src" serializes the fetch and the switches (older checkouts take it
# too); "linux-src-build" is held shared by every kernel build: taking it
# exclusively waits until no build compiles from the tree.
cache_lock "linux-src"
cache_lock "linux-src-build"

if [ ! -f "$src/.kvmrs-base" ]; then
	log "linux-src: fetching Debian linux-source-7.3"
	rm -rf "$src" "$KVMRS_CACHE/linux/dl"
	mkdir -p "$KVMRS_CACHE/linux/dl"
	cd "$KVMRS_CACHE/linux/dl"
	apt-get update -qq
	apt-get download -t "$KVMRS_SUITE-backports" linux-source-7.3
	dpkg-deb -x linux-source-7.3_*.deb x
	mkdir -p "$src"
	tar -C "$src" --strip-components=1 -xf x/usr/src/linux-source-7.3.tar.xz
	ver=$(dpkg-deb -f linux-source-7.3_*.deb Version)
	rm -rf "$KVMRS_CACHE/linux/dl"
	cd "$src"
	git init -q -b kvm-rs
	git -c user.name=kvm-rs -c user.email=kvm-rs@localhost add -f -A .
	git -c user.name=kvm-rs -c user.email=kvm-rs@localhost commit -q --no-verify -m "Debian linux-source-7.3 $ver"
	git tag base
	echo "$ver" >"$src/.git/kvmrs-version"
	touch "$src/.kvmrs-base"
fi

key=$(series_key)
if [ "$(cat "$src/.git/kvmrs-series" 2>/dev/null)" = "$key" ]; then
	exit 0
fi
log "linux-src: applying patch series ($key)"
cd "$src"
git am --abort >/dev/null 2>&1 || true
git checkout -q -f -B kvm-rs base
git clean -q -fdx -e .kvmrs-base
while read -r p; do
	case "$p" in ''|'#'*) continue ;; esac
	git -c user.name=kvm-rs -c user.email=kvm-rs@localhost am -q --keep-cr "$patchdir/$p" ||
		die "linux-src: patch $p does not apply"
done <"$patchdir/series"
echo "$key" >"$src/.git/kvmrs-series"
