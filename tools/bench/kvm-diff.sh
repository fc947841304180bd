#!/bin/bash
# make kvm-diff: run tools/testing/kvm-diff in the emulated host on upstream
# KVM and on kvm_rs (inside the root), then compare the two transcripts step
# by step. Writes build/<arch>/kvm-diff-{kvm,kvm_rs}.txt and
# build/<arch>/results/kvm-diff.txt ("pass|fail <step>"); exits 1 on any
# difference.
#   kvm-diff.sh ARCH
# Env: KVM_DIFF_MODARGS: parameters for kvm_rs.ko in its run (e.g.
# vmid_bits=1: every VM's first entry rolls the VMID generation over, while
# the transcript must still match upstream's).
. "$(dirname "$0")/lib.sh"
arch=${1:?usage: kvm-diff.sh ARCH}
. "$KVMRS_TOP/tools/bench/arch.sh"
B=$KVMRS_TOP/tools/bench
mkdir -p "$out/results" "$out/share"
for be in kvm kvm_rs; do
	rm -f "$out/share/kvm-diff.txt"
	rc=0
	extra=()
	if [ "$be" = kvm_rs ] && [ -n "${KVM_DIFF_MODARGS:-}" ]; then
		extra=("kvmrs.modargs=$(echo "$KVM_DIFF_MODARGS" | tr ' ' :)")
	fi
	BACKEND=$be DO=diff BOOT_TIMEOUT=${BOOT_TIMEOUT:-180} BOOT_LOG=$out/boot-diff-$be.log \
		"$B/boot.sh" "$arch" "${extra[@]}" >/dev/null 2>&1 || rc=$?
	if [ ${#extra[@]} -gt 0 ]; then
		# What the module made of its parameters (riscv64: the VMIDs in use).
		grep -a -m1 'VMIDs:' "$out/boot-diff-$be.log" | tr -d '\r' | sed "s/^/kvm-diff[$arch]: $be with $KVM_DIFF_MODARGS: /" >&2 || true
	fi
	[ -s "$out/share/kvm-diff.txt" ] ||
		die "kvm-diff[$arch]: no transcript from backend $be (rc=$rc); log $out/boot-diff-$be.log"
	tr -d '\r' <"$out/share/kvm-diff.txt" >"$out/kvm-diff-$be.txt"
	grep -q '^# done' "$out/kvm-diff-$be.txt" ||
		die "kvm-diff[$arch]: the $be run stopped early (rc=$rc); log $out/boot-diff-$be.log"
	# host-init.sh's finish() greps the host's kernel log for
	# BUG/WARNING/Oops after the run (the guests of kvm-diff misbehave on
	# purpose); any hit fails kvm-diff.
	if grep -q 'KVMRS-ERROR the kernel log shows' "$out/boot-diff-$be.log"; then
		grep -A40 'KVMRS-ERROR the kernel log shows' "$out/boot-diff-$be.log" >&2
		die "kvm-diff[$arch]: the host kernel log of the $be run shows a BUG/WARNING/Oops"
	fi
done
# Step by step, keyed by step name: the upstream answer is the reference; a
# step missing on kvm_rs, or answered differently, fails unless the step is
# listed in tools/testing/kvm-diff/known-<arch>.txt (an intended difference,
# with its reason). Informational '#' lines are skipped.
known=$KVMRS_TOP/tools/testing/kvm-diff/known-$arch.txt
[ -f "$known" ] || known=/dev/null
awk '
	function key(line) { i = index(line, ": "); return i ? substr(line, 1, i - 1) : line }
	FILENAME == ARGV[1] { sub(/#.*/, ""); sub(/[ \t]+$/, ""); if ($0 != "") known[$0] = 1; next }
	/^#/ { next }
	FILENAME == ARGV[2] { k = key($0); ref[k] = $0; order[++n] = k; next }
	{ got[key($0)] = $0 }
	END {
		bad = 0
		for (i = 1; i <= n; i++) {
			k = order[i]
			if (got[k] == ref[k]) {
				print "pass " ref[k]
			} else if (k in known) {
				print "pass " ref[k] " (known difference; kvm_rs: " substr(got[k], length(k) + 3) ")"
			} else {
				print "fail " ref[k] " (kvm_rs: " (k in got ? substr(got[k], length(k) + 3) : "missing") ")"
				bad++
			}
		}
		for (k in got) if (!(k in ref)) { print "fail " got[k] " (not in the upstream transcript)"; bad++ }
	}' "$known" "$out/kvm-diff-kvm.txt" "$out/kvm-diff-kvm_rs.txt" >"$out/results/kvm-diff.txt"
npass=$(grep -c '^pass' "$out/results/kvm-diff.txt" || true)
nknown=$(grep -c '(known difference' "$out/results/kvm-diff.txt" || true)
if grep -q '^fail' "$out/results/kvm-diff.txt"; then
	echo "kvm-diff[$arch]: transcripts differ (upstream kvm = -, kvm_rs = +):" >&2
	diff -u <(grep -v '^#' "$out/kvm-diff-kvm.txt") <(grep -v '^#' "$out/kvm-diff-kvm_rs.txt") |
		grep '^[-+][^-+]' >&2 || true
	grep '^fail' "$out/results/kvm-diff.txt" >&2
	exit 1
fi
echo "kvm-diff[$arch]: $npass steps agree with upstream KVM ($nknown known differences, see $known)"
