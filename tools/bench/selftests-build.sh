#!/bin/bash
# Build the upstream KVM selftests of our linux-source-7.3 tree for one arch
# (inside the toolchain root), against the uapi headers of our patched kernel:
#   selftests-build.sh riscv64|arm64
# Output: $KVMRS_CACHE/kselftests/<variant>/<arch>-<key>/ (variant "main" for
# the main kernels, else $KVARIANT) with the stripped test
# binaries and list.txt (one test per line, e.g. "riscv/ebreak_test").
# Prints the output directory.
. "$(dirname "$0")/lib.sh"
arch=${1:?usage: selftests-build.sh ARCH}
. "$KVMRS_TOP/tools/bench/arch.sh"
src=$KVMRS_CACHE/linux/src
case "$arch" in riscv64) starch=riscv ;; arm64) starch=arm64 ;; esac

cache_lock "selftests-$arch"
[ -f "$kbuild/.kvmrs-build-key" ] || die "selftests[$arch]: no kernel build (make kernel ARCH=$arch)"
key=$(hashkey "$0" -- "$(cat "$kbuild/.kvmrs-build-key")")
# (Older checkouts kept theirs in selftests/ and empty it on every build.)
dir=$KVMRS_CACHE/kselftests/${kvariant:-main}
dest=$dir/$arch-$key
if [ -f "$dest/list.txt" ]; then
	echo "$dest"
	exit 0
fi

log "selftests[$arch]: building tools/testing/selftests/kvm ($key)"
rm -rf "$dir/$arch-"*
obj=$dest.obj
mkdir -p "$obj"
make -s -C "$src" O="$kbuild" ARCH="$karch" LLVM=1 headers >&2
# arm64 generates sysreg headers into the source's tools/ tree; that is
# harmless for the kernel build (O= checks only the top of the tree).
make -C "$src/tools/testing/selftests/kvm" ARCH="$starch" CROSS_COMPILE="$cross" \
	OUTPUT="$obj" KHDR_INCLUDES="-isystem $kbuild/usr/include" -j"$(nproc)" \
	>"$obj.log" 2>&1 || { tail -40 "$obj.log" >&2; die "selftests[$arch]: build failed (log $obj.log)"; }

mkdir -p "$dest"
(cd "$obj" && find . -type f -perm -u+x ! -path './lib/*' | sed 's#^\./##' | sort) >"$dest/list.tmp"
[ -s "$dest/list.tmp" ] || die "selftests[$arch]: no test binaries in $obj"
while read -r t; do
	mkdir -p "$dest/$(dirname "$t")"
	"${cross}strip" -o "$dest/$t" "$obj/$t"
done <"$dest/list.tmp"
rm -rf "$obj" "$obj.log"
mv "$dest/list.tmp" "$dest/list.txt"
log "selftests[$arch]: $(wc -l <"$dest/list.txt") tests in $dest"
echo "$dest"
