#!/bin/bash
# make selftests-compare: the upstream KVM selftests on upstream KVM and on
# kvm_rs in the same emulated host; prints the test x backend matrix and
# writes build/<arch>/selftests-compare.md. Same env as selftests.sh.
. "$(dirname "$0")/lib.sh"
arch=${1:?usage: selftests-compare.sh ARCH}
B=$KVMRS_TOP/tools/bench
out=$KVMRS_TOP/build/$arch
t0=$(date +%s)
rc=0
BACKEND=kvm "$B/selftests.sh" "$arch" || rc=1
BACKEND=kvm_rs "$B/selftests.sh" "$arch" || rc=1
echo
python3 "$B/selftests-report.py" compare "$arch" "$out/selftests-kvm.json" "$out/selftests-kvm_rs.json" \
	"$out/selftests-compare.md"
echo "selftests-compare[$arch]: $(( $(date +%s) - t0 ))s wall for both backends; matrix: $out/selftests-compare.md"
exit $rc
