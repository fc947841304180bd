#!/bin/bash
# Build kvm_rs.ko for one arch against the cached kernel (inside the root).
#   module.sh riscv64|arm64 [CLIPPY=1]
. "$(dirname "$0")/lib.sh"
arch=${1:?usage: module.sh ARCH}; shift
. "$KVMRS_TOP/tools/bench/arch.sh"
[ -f "$kbuild/.kvmrs-key" ] || die "module[$arch]: kernel not built (make kernel ARCH=$arch)"
mkdir -p "$out/module"
make -C "$kbuild" M="$KVMRS_TOP" MO="$out/module" ARCH="$karch" LLVM=1 -j"$(nproc)" "$@" modules
test -f "$out/module/kvm_rs.ko" || die "module[$arch]: kvm_rs.ko was not produced"
