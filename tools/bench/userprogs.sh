#!/bin/bash
# Cross-compile the static test programs that run inside the emulated host.
. "$(dirname "$0")/lib.sh"
arch=${1:?usage: userprogs.sh ARCH}
. "$KVMRS_TOP/tools/bench/arch.sh"
mkdir -p "$out/bin"
"${cross}gcc" -static -O2 -Wall -Werror -o "$out/bin/kvm-probe" "$KVMRS_TOP/tools/testing/kvm-probe/kvm-probe.c"
# kvm-diff uses the KVM uapi of our kernel (installed by selftests-build.sh's
# "make headers"; Debian's cross headers may lag behind).
khdr=()
[ ! -f "$kbuild/usr/include/linux/kvm.h" ] || khdr=(-isystem "$kbuild/usr/include")
"${cross}gcc" -static -O2 -Wall -Werror "${khdr[@]}" -o "$out/bin/kvm-diff" "$KVMRS_TOP/tools/testing/kvm-diff/kvm-diff.c"
"${cross}gcc" -static -O2 -Wall -Werror "${khdr[@]}" -o "$out/bin/kvm-lifecycle" "$KVMRS_TOP/tools/testing/kvm-lifecycle/kvm-lifecycle.c"
# kvm-bench: riscv64 guests (on arm64 it only says so; see Documentation/bench.md).
"${cross}gcc" -static -O2 -Wall -Werror "${khdr[@]}" -o "$out/bin/kvm-bench" "$KVMRS_TOP/tools/testing/kvm-bench/kvm-bench.c"
