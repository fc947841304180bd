#!/bin/bash
# Build the patched kvm-rs host kernel for one arch (run inside the toolchain root).
#   kernel.sh riscv64|arm64       (KVARIANT=NAME: the variant kernel with
#                                  configs/NAME.config on top, in kernel/<arch>-NAME)
# Output: $KVMRS_CACHE/kernel/<arch> (an O= build tree: Image, Module.symvers,
# rust/*.rmeta; the KDIR for kvm_rs.ko). Skipped when its key is unchanged.
# The key is in .kvmrs-build-key and the applied series in the source tree's
# .git/kvmrs-series; older checkouts used .kvmrs-key and .git/kvmrs-patches,
# which are left alone so both can share the cache without rebuilding.
. "$(dirname "$0")/lib.sh"

arch=${1:?usage: kernel.sh riscv64|arm64}
case "$arch" in
riscv64) karch=riscv ;;
arm64) karch=arm64 ;;
*) die "unknown ARCH '$arch' (riscv64 or arm64)" ;;
esac
cfgdir=$KVMRS_TOP/tools/bench/configs
src=$KVMRS_CACHE/linux/src
variant=${KVARIANT:-}
build=$KVMRS_CACHE/kernel/$arch${variant:+-$variant}
fragments=("$cfgdir/common.config" "$cfgdir/$arch.config")
if [ -n "$variant" ]; then
	[ -f "$cfgdir/$variant.config" ] || die "kernel: no config fragment configs/$variant.config"
	fragments+=("$cfgdir/$variant.config")
fi

cache_lock "kernel-$arch${variant:+-$variant}"
# Several checkouts (worktrees, CI clones) share the source tree, and one
# with another patch series switches it (linux-src.sh, holding the
# linux-src-build lock exclusively). Build under that lock shared, so no
# switch happens while files are compiled, and only once the tree carries
# our series.
while :; do
	"$KVMRS_TOP/tools/bench/linux-src.sh"
	cache_lock_shared linux-src-build
	[ "$(cat "$src/.git/kvmrs-series" 2>/dev/null)" = "$(series_key)" ] && break
	cache_unlock_shared
done
# The key names what the build depends on: the config fragments, the
# series, the toolchain and this recipe's version (bump it when a change
# here changes what is built; edits that do not, such as comments, then
# rebuild nothing in the other checkouts sharing the cache).
recipe=kernel-recipe-3
key=$(hashkey "${fragments[@]}" \
	-- "$recipe" "$(series_key)" "$(toolchain_key)")
if [ "$(cat "$build/.kvmrs-build-key" 2>/dev/null)" = "$key" ] && [ -f "$build/arch/$karch/boot/Image" ]; then
	exit 0
fi

log "kernel[$arch${variant:+-$variant}]: configuring ($key)"
mkdir -p "$build"
rm -f "$build/.kvmrs-build-key"
mk() { make -C "$src" O="$build" ARCH="$karch" LLVM=1 -j"$(nproc)" "$@"; }
cat "${fragments[@]}" >"$build/kvmrs.config"
mk -s KCONFIG_ALLCONFIG="$build/kvmrs.config" allnoconfig

# Every option of the fragments must have survived dependency resolution.
bad=0
while IFS= read -r line; do
	case "$line" in
	CONFIG_*=*)
		opt=${line%%=*} val=${line#*=}
		if [ "$val" = n ]; then
			grep -q "^$opt=" "$build/.config" && { echo "  $opt: want n, got $(grep "^$opt=" "$build/.config")"; bad=1; }
		else
			grep -qx "$line" "$build/.config" || { echo "  $opt: want $val, got $(grep "^$opt=" "$build/.config" || echo unset)"; bad=1; }
		fi
		;;
	esac
done <"$build/kvmrs.config"
[ $bad = 0 ] || die "kernel[$arch]: config fragment options were dropped (see above; fix tools/bench/configs)"

[ -z "${KVMRS_CONFIG_ONLY:-}" ] || exit 0
log "kernel[$arch${variant:+-$variant}]: building Image and modules"
mk Image modules
echo "$key" >"$build/.kvmrs-build-key"
log "kernel[$arch${variant:+-$variant}]: ready: $build/arch/$karch/boot/Image"
