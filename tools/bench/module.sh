#!/bin/bash
# Build kvm_rs.ko for one arch against the cached kernel (inside the root).
#   module.sh riscv64|arm64 [CLIPPY=1]
. "$(dirname "$0")/lib.sh"
arch=${1:?usage: module.sh ARCH}; shift
. "$KVMRS_TOP/tools/bench/arch.sh"
[ -f "$kbuild/.kvmrs-build-key" ] || die "module[$arch]: kernel not built (make kernel ARCH=$arch)"
# Objects built against another kernel build (another config or patch
# series) can look up to date to make and yet not fit the kernel (a stale
# kvm_rs.mod.o with another struct module size): start afresh when the
# kernel's build key changed.
kkey=$(cat "$kbuild/.kvmrs-build-key")
[ "$(cat "$out/module/.kvmrs-kernel-key" 2>/dev/null)" = "$kkey" ] || rm -rf "$out/module"
mkdir -p "$out/module"
echo "$kkey" >"$out/module/.kvmrs-kernel-key"
make -C "$kbuild" M="$KVMRS_TOP" MO="$out/module" ARCH="$karch" LLVM=1 -j"$(nproc)" "$@" modules
test -f "$out/module/kvm_rs.ko" || die "module[$arch]: kvm_rs.ko was not produced"
