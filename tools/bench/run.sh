#!/bin/bash
# make run: boot the emulated host with kvm_rs.ko and report what it showed.
. "$(dirname "$0")/lib.sh"
arch=${1:?usage: run.sh ARCH}
. "$KVMRS_TOP/tools/bench/arch.sh"
rc=0
"$KVMRS_TOP/tools/bench/in-root" "$KVMRS_TOP/tools/bench/boot.sh" "$arch" || rc=$?
log=$out/boot.log
echo
if [ $rc = 0 ]; then
	api=$(sed -n 's/.*KVM_GET_API_VERSION is 12.*/12/p' "$log" | head -1)
	echo "kvm-rs: run[$arch]: OK: kvm_rs.ko loaded, /dev/kvm answered API version ${api:-?}"
	grep -E "host (in HS-mode|at EL2)" "$log" | sed 's/^ */kvm-rs: run['"$arch"']: /'
	[ "$arch" != arm64 ] || grep -q "started at EL2" "$log" ||
		{ echo "kvm-rs: run[$arch]: the host did not report EL2" >&2; exit 1; }
else
	echo "kvm-rs: run[$arch]: FAILED (rc=$rc); console log: $log" >&2
	grep -E "KVMRS-ERROR|not ok" "$log" >&2 || true
fi
exit $rc
