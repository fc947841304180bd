#!/bin/bash
# make kvm-diff: run tools/testing/kvm-diff in the emulated host on upstream
# KVM and on kvm_rs (inside the root), then compare the two transcripts step
# by step. Writes build/<arch>/kvm-diff-{kvm,kvm_rs}.txt and
# build/<arch>/results/kvm-diff.txt ("pass|fail <step>"); exits 1 on any
# difference.
#   kvm-diff.sh ARCH
. "$(dirname "$0")/lib.sh"
arch=${1:?usage: kvm-diff.sh ARCH}
. "$KVMRS_TOP/tools/bench/arch.sh"
B=$KVMRS_TOP/tools/bench
mkdir -p "$out/results" "$out/share"
for be in kvm kvm_rs; do
	rm -f "$out/share/kvm-diff.txt"
	rc=0
	BACKEND=$be DO=diff BOOT_TIMEOUT=${BOOT_TIMEOUT:-180} BOOT_LOG=$out/boot-diff-$be.log \
		"$B/boot.sh" "$arch" >/dev/null 2>&1 || rc=$?
	[ -s "$out/share/kvm-diff.txt" ] ||
		die "kvm-diff[$arch]: no transcript from backend $be (rc=$rc); log $out/boot-diff-$be.log"
	tr -d '\r' <"$out/share/kvm-diff.txt" >"$out/kvm-diff-$be.txt"
	grep -q '^# done' "$out/kvm-diff-$be.txt" ||
		echo "kvm-diff[$arch]: the $be run stopped early (rc=$rc)" >&2
done
# Step by step: the upstream line is the reference; a step missing on
# kvm_rs, or answered differently, fails. Informational '#' lines are skipped.
awk -F': ' '
	FNR == NR { if ($0 !~ /^#/) { ref[++n] = $0 }; next }
	$0 !~ /^#/ { got[$0] = 1 }
	END {
		for (i = 1; i <= n; i++) {
			split(ref[i], p, ": ")
			print (ref[i] in got ? "pass " : "fail ") ref[i]
		}
	}' "$out/kvm-diff-kvm.txt" "$out/kvm-diff-kvm_rs.txt" >"$out/results/kvm-diff.txt"
if diff -u <(grep -v '^#' "$out/kvm-diff-kvm.txt") <(grep -v '^#' "$out/kvm-diff-kvm_rs.txt") >"$out/kvm-diff.patch"; then
	echo "kvm-diff[$arch]: $(grep -c '^pass' "$out/results/kvm-diff.txt") steps, transcripts identical"
	rm -f "$out/kvm-diff.patch"
else
	echo "kvm-diff[$arch]: transcripts differ (upstream kvm = -, kvm_rs = +):" >&2
	grep '^[-+][^-+]' "$out/kvm-diff.patch" >&2 || true
	exit 1
fi
