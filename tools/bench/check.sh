#!/bin/bash
# make check: every test for both arches; ends with "N passed, N failed".
# Runs outside the root and calls make for each stage, so each stage's
# failure is recorded and the run goes on.
. "$(dirname "$0")/lib.sh"
arches=${ARCHES:-riscv64 arm64}
res=$KVMRS_TOP/build/check-results.txt
mkdir -p "$KVMRS_TOP/build"
: >"$res"
t_start=$(date +%s)

stage() { # stage NAME CMD... : one pass/fail line for a build step
	local name=$1; shift
	local t0 rc=0
	t0=$(date +%s)
	printf '\033[1m[check %4ds] %s\033[0m\n' "$(( $(date +%s) - t_start ))" "$name"
	"$@" || rc=$?
	local dt=$(( $(date +%s) - t0 ))
	if [ $rc = 0 ]; then
		echo "pass $name (${dt}s)" >>"$res"
	else
		echo "fail $name (rc=$rc, ${dt}s)" >>"$res"
		echo "kvm-rs: check: $name FAILED (rc=$rc)" >&2
	fi
	return $rc
}
collect() { # collect FILE PREFIX : per-test lines of a results file
	[ -f "$1" ] || return 0
	sed -E "s#^(pass|fail) #\1 $2#" "$1" >>"$res"
}

stage toolchain make -s toolchain || true
stage host/cargo-test make -s hosttest || true
collect "$KVMRS_TOP/build/host/results.txt" ""

for arch in $arches; do
	out=$KVMRS_TOP/build/$arch
	rm -rf "$out/results" "$out/probe.tap"
	stage "$arch/kernel" make -s kernel ARCH="$arch" || { echo "fail $arch/tests (no kernel)" >>"$res"; continue; }
	stage "$arch/module+clippy" make -s module ARCH="$arch" CLIPPY=1 || { echo "fail $arch/tests (no module)" >>"$res"; continue; }
	stage "$arch/rootfs" make -s rootfs ARCH="$arch" || true
	stage "$arch/boot" make -s boot ARCH="$arch" BOOT_LOG="$out/boot.log" || true
	# Per-check TAP lines of kvm-probe inside the host.
	sed -n 's/^\(not ok\|ok\) [0-9]* - \(.*\)$/\1|\2/p' "$out/boot.log" 2>/dev/null |
		tr -d '\r' | while IFS='|' read -r st what; do
			[ "$st" = ok ] && echo "pass $arch/probe: $what" || echo "fail $arch/probe: $what"
		done >>"$res"
	stage "$arch/kunit" make -s kunit ARCH="$arch" || true
	collect "$out/results/kunit.txt" "$arch/kunit: "
	# The same ioctl sequence on upstream KVM and on kvm_rs must give the
	# same transcript (tools/testing/kvm-diff).
	rm -f "$out/results/kvm-diff.txt"
	stage "$arch/kvm-diff" make -s kvm-diff ARCH="$arch" || true
	collect "$out/results/kvm-diff.txt" "$arch/kvm-diff: "
	# Again with a 1-bit VMID space: the generation rolls over at nearly
	# every guest entry of the run's many VMs (riscv64: also under its
	# 4-vCPU IPI storm), and every answer must still be upstream's.
	if [ "$arch" = arm64 ]; then
		rm -f "$out/results/kvm-diff.txt"
		stage "$arch/kvm-diff(kvm_rs vmid_bits=1)" env KVM_DIFF_MODARGS=vmid_bits=1 make -s kvm-diff ARCH="$arch" || true
		collect "$out/results/kvm-diff.txt" "$arch/kvm-diff(vmid_bits=1): "
	fi
	if [ "$arch" = riscv64 ]; then
		rm -f "$out/results/kvm-diff.txt"
		stage "$arch/kvm-diff(kvm_rs vmid_bits=1)" env KVM_DIFF_MODARGS=vmid_bits=1 make -s kvm-diff ARCH="$arch" || true
		collect "$out/results/kvm-diff.txt" "$arch/kvm-diff(vmid_bits=1): "
		# riscv64 once more on another host CPU: without Sstc (the guest
		# timer is the hrtimer fallback on both backends: kvm-diff's timer
		# guests) and with Zkr (a guest's "csrw seed" becomes
		# KVM_EXIT_RISCV_CSR on both).
		rm -f "$out/results/kvm-diff.txt"
		stage "$arch/kvm-diff(host without Sstc, with Zkr)" env HOST_CPU_OPTS=sstc=false,zkr=true \
			make -s kvm-diff ARCH="$arch" || true
		collect "$out/results/kvm-diff.txt" "$arch/kvm-diff(no Sstc, Zkr): "
	fi
	# Module life: VMs created and destroyed in a loop, CPU hotplug,
	# suspend, unload, kmemleak (tools/bench/host-lifecycle.sh).
	rm -f "$out/results/lifecycle.txt"
	stage "$arch/lifecycle(kvm_rs)" make -s lifecycle ARCH="$arch" BACKEND=kvm_rs || true
	collect "$out/results/lifecycle.txt" "$arch/lifecycle: "
	# The yardstick itself: upstream KVM boots the nested guest through
	# Debian's QEMU in this emulated host.
	stage "$arch/nested-guest(upstream kvm)" make -s run ARCH="$arch" BACKEND=kvm || true
	# The same nested guest on kvm_rs, where kvm_rs has a world switch.
	case " ${NESTED_KVM_RS_ARCHES-riscv64} " in
	*" $arch "*) stage "$arch/nested-guest(kvm_rs)" make -s run ARCH="$arch" BACKEND=kvm_rs || true ;;
	esac
	# riscv64: both again on a host without Sstc (the guest timer is an
	# hrtimer; the nested guest's 0.3 s sleep needs it).
	if [ "$arch" = riscv64 ]; then
		stage "$arch/nested-guest(upstream kvm, host without Sstc)" env HOST_CPU_OPTS=sstc=false \
			make -s run ARCH="$arch" BACKEND=kvm || true
		stage "$arch/nested-guest(kvm_rs, host without Sstc)" env HOST_CPU_OPTS=sstc=false \
			make -s run ARCH="$arch" BACKEND=kvm_rs || true
	fi
	# The upstream selftests on kvm_rs: the host must survive the run; the
	# tests of tools/testing/selftests/expected-<arch>.txt must pass (full
	# timeout); the others run with a short timeout, to report extra passes.
	expect=$KVMRS_TOP/tools/testing/selftests/expected-$arch.txt
	rm -f "$out/selftests-kvm_rs.json"
	stage "$arch/selftests(kvm_rs) host survives" env ST_EXPECT="$expect" \
		ST_OTHER_TIMEOUT="${CHECK_OTHER_TIMEOUT:-30}" make -s selftests ARCH="$arch" BACKEND=kvm_rs || true
	"$KVMRS_TOP/tools/bench/in-root" python3 "$KVMRS_TOP/tools/bench/selftests-report.py" \
		ratchet "$arch" "$expect" "$out/selftests-kvm_rs.json" "$res" || true
done

echo
echo "== results ($(( $(date +%s) - t_start ))s) =="
grep '^fail' "$res" || true
pass=$(grep -c '^pass' "$res" || true)
fail=$(grep -c '^fail' "$res" || true)
echo "full list: $res"
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
