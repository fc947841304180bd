#!/bin/bash
# make lifecycle: the life-cycle checks of tools/bench/host-lifecycle.sh in
# the emulated host (many VMs created and destroyed, CPU hotplug, suspend
# where possible, module unload, kmemleak when the kernel has it), booted
# with kmemleak=on. Writes build/<arch>/results/lifecycle.txt; exits 1 on any
# failure.
# Results: build/<arch>-kmemleak/results/lifecycle.txt, copied to
# build/<arch>/results/ for make check.
#   lifecycle.sh ARCH        (BACKEND=kvm_rs|kvm)
. "$(dirname "$0")/lib.sh"
arch=${1:?usage: lifecycle.sh ARCH}
. "$KVMRS_TOP/tools/bench/arch.sh"
mkdir -p "$out/results" "$out/share"
rm -f "$out/share/lifecycle.txt"
rc=0
DO=lifecycle BOOT_TIMEOUT=${BOOT_TIMEOUT:-600} BOOT_LOG=$out/boot-lifecycle-$backend.log \
	"$KVMRS_TOP/tools/bench/boot.sh" "$arch" kmemleak=on >/dev/null 2>&1 || rc=$?
[ -s "$out/share/lifecycle.txt" ] ||
	die "lifecycle[$arch]: no results (rc=$rc); log $out/boot-lifecycle-$backend.log"
tr -d '\r' <"$out/share/lifecycle.txt" | sed "s/^\(pass\|fail\) lifecycle: /\1 /" >"$out/results/lifecycle.txt"
# make check collects the per-check lines from the arch's own results.
mkdir -p "$KVMRS_TOP/build/$arch/results"
cp "$out/results/lifecycle.txt" "$KVMRS_TOP/build/$arch/results/lifecycle.txt"
grep -h "KVMRS-LIFECYCLE" "$out/boot-lifecycle-$backend.log" | tr -d '\r' | sed 's/^/  /'
[ $rc = 0 ] && ! grep -q '^fail' "$out/results/lifecycle.txt"
