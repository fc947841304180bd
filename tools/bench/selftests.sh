#!/bin/bash
# make selftests: run the upstream KVM selftests in the emulated host on one
# backend (inside the root).
#   selftests.sh ARCH
# Env: BACKEND=kvm|kvm_rs (default kvm_rs), TEST=name[,name...] (default: all
# built tests), ST_TIMEOUT (s per test, default 120 as upstream's kvm/settings),
# ST_EXPECT=file + ST_OTHER_TIMEOUT=s: tests not in the file get that timeout
# (make check uses it to bound the run while still seeing extra passes),
# ST_DEFAULT_ARGS=1: ignore tools/testing/selftests/args.txt and run every
# test without arguments, exactly as upstream's kselftest runner.
# tools/testing/selftests/retry.txt: tests run once more after a failure
# whose output shows a documented race in the test itself.
# ST_MODARGS: parameters for kvm_rs.ko (BACKEND=kvm_rs only; e.g.
# vmid_bits=1), passed as kvm-diff.sh's KVM_DIFF_MODARGS.
# Writes build/<arch>/selftests-<backend>.json and prints a table.
. "$(dirname "$0")/lib.sh"
arch=${1:?usage: selftests.sh ARCH}
. "$KVMRS_TOP/tools/bench/arch.sh"
B=$KVMRS_TOP/tools/bench
dir=$("$B/selftests-build.sh" "$arch")
tmo=${ST_TIMEOUT:-120}

share=$out/share
rm -rf "$share"
mkdir -p "$share"
plan=$share/plan.txt
if [ -n "${TEST:-}" ]; then
	tr ',' '\n' <<<"$TEST" | sed '/^$/d' >"$share/names"
	while read -r t; do
		grep -qx "$t" "$dir/list.txt" || die "selftests[$arch]: no test '$t' (see $dir/list.txt)"
	done <"$share/names"
else
	cp "$dir/list.txt" "$share/names"
fi
expect=()
if [ -n "${ST_EXPECT:-}" ]; then
	mapfile -t expect < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' "$ST_EXPECT")
fi
total=0
while read -r t; do
	tt=$tmo
	if [ -n "${ST_EXPECT:-}" ] && ! printf '%s\n' "${expect[@]}" | grep -qx "$t"; then
		tt=${ST_OTHER_TIMEOUT:-$tmo}
	fi
	a=""
	if [ -z "${ST_DEFAULT_ARGS:-}" ]; then
		a=$(awk -v t="$t" '$1 == t { $1 = ""; sub(/^ +/, ""); print; exit }' \
			"$KVMRS_TOP/tools/testing/selftests/args.txt")
		# "timeout=N" first: this test's full timeout (not ST_OTHER_TIMEOUT's).
		if [[ $a == timeout=* ]]; then
			own=${a%% *}; own=${own#timeout=}
			[ "$tt" != "$tmo" ] || tt=$own
			[[ $a == *" "* ]] && a=${a#* } || a=""
		fi
	fi
	echo "$t $tt $a"
	total=$((total + tt + 5))
	# A test with a retry rule may run twice.
	if awk -v t="$t" '$1 == t { f = 1 } END { exit !f }' "$KVMRS_TOP/tools/testing/selftests/retry.txt"; then
		total=$((total + tt + 5))
	fi
done <"$share/names" >"$plan"
sed -e '/^#/d' -e '/^[[:space:]]*$/d' "$KVMRS_TOP/tools/testing/selftests/retry.txt" >"$share/retry.txt"

extra=()
if [ "$backend" = kvm_rs ] && [ -n "${ST_MODARGS:-}" ]; then
	extra=("kvmrs.modargs=$(echo "$ST_MODARGS" | tr ' ' :)")
fi
json=$out/selftests-$backend.json
t0=$(date +%s)
rc=0
BOOT_TIMEOUT=$((total + 180)) BOOT_LOG=$out/boot-selftests-$backend.log DO=selftests \
	"$B/boot.sh" "$arch" "${extra[@]}" >"$out/selftests-$backend.console" 2>&1 || rc=$?
grep -E "KVMRS-(ST|ERROR|HOST)|kvm-rs:" "$out/selftests-$backend.console" || true
echo "selftests[$arch/$backend]: emulated host run took $(( $(date +%s) - t0 ))s (rc=$rc)"
python3 "$B/selftests-report.py" run "$arch" "$backend" "$share" "$plan" "$json"
# The host itself must have survived and come back cleanly.
[ "$rc" = 0 ] || die "selftests[$arch/$backend]: the emulated host failed (rc=$rc); log $out/boot-selftests-$backend.log"
