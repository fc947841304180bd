#!/opt/kvmrs/bin/busybox sh
# Inside the emulated host: run the upstream KVM selftests listed in
# SHARE/plan.txt ("<test> <timeout-seconds> [arguments]" per line), each
# alone, as the kselftest runner would (cwd = its directory). Writes
# SHARE/selftests/<test with / as __>.log and appends
# "<test> <exit code> <seconds> <timed out 0|1>" to SHARE/selftests/results.txt.
# A failure matching a rule of SHARE/retry.txt runs the test once more.
share=${1:?usage: host-selftests.sh SHARE}
st=/opt/kvmrs/selftests
res=$share/selftests
mkdir -p "$res"
: >"$res/results.txt"
# Reserved 2 MiB hugepages, as a KVM developer's test machine has them:
# arm64/stage2_block_transitions wants 32 MiB (and skips without them).
echo 32 >/proc/sys/vm/nr_hugepages 2>/dev/null
echo "KVMRS-ST hugepages: $(cat /proc/sys/vm/nr_hugepages 2>/dev/null) x 2 MiB reserved"
up() { cut -d' ' -f1 /proc/uptime; }
n=$(grep -c . "$share/plan.txt")
i=0
while read -r t tmo args; do
	[ -n "$t" ] || continue
	i=$((i + 1))
	logf=$res/$(echo "$t" | sed 's#/#__#g').log
	if [ ! -x "$st/$t" ]; then
		echo "no such test: $t" >"$logf"
		echo "$t 127 0 0" >>"$res/results.txt"
		echo "KVMRS-ST [$i/$n] $t rc=127 (not built)"
		continue
	fi
	t0=$(up)
	# KILL: a test stuck in KVM_RUN may ignore TERM; it is timed out anyway.
	(cd "$st/$(dirname "$t")" && exec timeout -s KILL "$tmo" "./$(basename "$t")" $args) >"$logf" 2>&1 </dev/null
	rc=$?
	# SHARE/retry.txt: "<test> <string>": a failure showing a documented race
	# in the test itself is run once more (the first log is kept).
	if [ "$rc" != 0 ] && [ -f "$share/retry.txt" ]; then
		why=$(awk -v t="$t" '$1 == t { $1 = ""; sub(/^ +/, ""); print; exit }' "$share/retry.txt")
		if [ -n "$why" ] && grep -qF "$why" "$logf"; then
			echo "KVMRS-ST [$i/$n] $t rc=$rc: test-side race (\"$why\"), run once more"
			mv "$logf" "${logf%.log}.first.log"
			t0=$(up)
			(cd "$st/$(dirname "$t")" && exec timeout -s KILL "$tmo" "./$(basename "$t")" $args) >"$logf" 2>&1 </dev/null
			rc=$?
		fi
	fi
	t1=$(up)
	secs=$(awk "BEGIN{printf \"%.2f\", $t1-$t0}")
	to=$(awk "BEGIN{print ($t1-$t0 >= $tmo) ? 1 : 0}")
	echo "$t $rc $secs $to" >>"$res/results.txt"
	echo "KVMRS-ST [$i/$n] $t rc=$rc ${secs}s$( [ "$to" = 1 ] && echo " TIMEOUT")"
	sync
done <"$share/plan.txt"
exit 0
