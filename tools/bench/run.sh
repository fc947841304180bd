#!/bin/bash
# make run: boot the emulated host with BACKEND (kvm_rs by default, or kvm =
# upstream KVM), probe /dev/kvm, boot the nested guest with Debian's QEMU
# -accel kvm, and report what happened.
# Env: RUN_MODARGS: parameters for kvm_rs.ko (BACKEND=kvm_rs only; e.g.
# vmid_bits=1), as kvm-diff.sh's KVM_DIFF_MODARGS.
. "$(dirname "$0")/lib.sh"
arch=${1:?usage: run.sh ARCH}
. "$KVMRS_TOP/tools/bench/arch.sh"
rc=0
extra=()
if [ "$backend" = kvm_rs ] && [ -n "${RUN_MODARGS:-}" ]; then
	extra=("kvmrs.modargs=$(echo "$RUN_MODARGS" | tr ' ' :)")
fi
log=$out/boot-run-$backend.log
t0=$(date +%s%N)
BOOT_LOG=$log DO=probe,guest "$KVMRS_TOP/tools/bench/in-root" "$KVMRS_TOP/tools/bench/boot.sh" "$arch" "${extra[@]}" || rc=$?
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
echo
p="kvm-rs: run[$arch/$backend]:"
probe_ok=$(grep -c '^ok ' "$log" || true)
probe_bad=$(grep -c '^not ok ' "$log" || true)
echo "$p /dev/kvm probe: $probe_ok ok, $probe_bad not ok"
grep -E "host (in HS-mode|at EL2)" "$log" | sed "s#^ *#$p #" || true
if [ "$arch" = arm64 ] && ! grep -q "started at EL2" "$log"; then
	echo "$p the host did not report EL2" >&2
	rc=1
fi
if g=$(grep -m1 "KVMRS-GUEST ok" "$log"); then
	echo "$p nested guest (Debian QEMU -accel kvm) reached its marker: ${g#*KVMRS-GUEST ok }"
else
	echo "$p nested guest did NOT reach its marker:" >&2
	grep -E "KVMRS-GUEST fail|guest\| .*(qemu|kvm|KVM|error|Error)" "$log" | head -5 >&2 || true
fi
echo "$p whole emulated-host run: $((ms / 1000)).$(printf %03d $((ms % 1000))) s wall; console log: $log"
[ $rc = 0 ] || { echo "$p FAILED (rc=$rc)" >&2; grep -E "KVMRS-ERROR|^not ok" "$log" >&2 || true; }
exit $rc
