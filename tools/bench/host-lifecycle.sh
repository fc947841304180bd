#!/bin/sh
# Inside the emulated host, backend loaded: the life-cycle checks of the
# generic core. Writes "pass|fail lifecycle: <what>" lines to $1/lifecycle.txt.
#   host-lifecycle.sh SHARE_DIR
out=$1/lifecycle.txt
: >"$out"
rc=0
res() { # res pass|fail WHAT
	echo "$1 lifecycle: $2" >>"$out"
	echo "KVMRS-LIFECYCLE $1 $2"
	[ "$1" = pass ] || rc=1
}
backend=$(cat /sys/module/kvm_rs/initstate 2>/dev/null >/dev/null && echo kvm_rs || echo kvm)

# kmemleak (built in, off unless booted with kmemleak=on): forget what boot
# and the module load allocated, so only the loop's leftovers are reported.
leakcheck=no
if [ -w /sys/kernel/debug/kmemleak ] && echo clear >/sys/kernel/debug/kmemleak 2>/dev/null; then
	leakcheck=yes
fi

# Many VMs with many vCPUs and memslots, created and destroyed.
if kvm-lifecycle 16 64 64; then res pass "create/destroy 16 VMs x 64 vCPUs x 64 memslots"; else res fail "create/destroy 16 VMs x 64 vCPUs x 64 memslots"; fi

# CPU hotplug with the backend loaded: each secondary CPU off and on again,
# then VMs again.
hp=pass
for c in /sys/devices/system/cpu/cpu[1-9]*/online; do
	[ -w "$c" ] || continue
	echo 0 >"$c" && echo 1 >"$c" || hp=fail
done
res $hp "CPU hotplug (secondary CPUs off and on)"
if kvm-lifecycle 2 8 8; then res pass "VMs after CPU hotplug"; else res fail "VMs after CPU hotplug"; fi

# Suspend through the syscore path (pm_test=core stops just before the
# platform suspends), where the platform offers suspend-to-RAM.
# "mem" must mean suspend-to-RAM ("deep"): suspend-to-idle never reaches
# the syscore callbacks.
if grep -qw mem /sys/power/state 2>/dev/null && grep -qw deep /sys/power/mem_sleep 2>/dev/null &&
	[ -w /sys/power/pm_test ]; then
	echo deep >/sys/power/mem_sleep
	echo core >/sys/power/pm_test
	if echo mem >/sys/power/state; then
		res pass "suspend/resume (pm_test=core)"
	else
		dmesg | grep -iE "PM:|suspend|syscore|kvm_rs" | tail -20
		res fail "suspend/resume (pm_test=core)"
	fi
	echo none >/sys/power/pm_test
	if kvm-lifecycle 2 8 8; then res pass "VMs after resume"; else res fail "VMs after resume"; fi
else
	echo "KVMRS-LIFECYCLE info: no suspend-to-RAM here (state: $(cat /sys/power/state 2>/dev/null); mem_sleep: $(cat /sys/power/mem_sleep 2>/dev/null))"
fi

# Everything closed: the module unloads.
if [ "$backend" = kvm_rs ]; then
	if rmmod kvm_rs; then res pass "rmmod kvm_rs"; else res fail "rmmod kvm_rs"; fi
fi

if [ $leakcheck = yes ]; then
	# Two scans: kmemleak reports an object only once it was seen
	# unreferenced twice.
	echo scan >/sys/kernel/debug/kmemleak
	sleep 6
	echo scan >/sys/kernel/debug/kmemleak
	n=$(grep -c '^unreferenced object' /sys/kernel/debug/kmemleak)
	if [ "$n" = 0 ]; then
		res pass "kmemleak: no leak"
	else
		head -60 /sys/kernel/debug/kmemleak
		res fail "kmemleak: $n unreferenced objects"
	fi
else
	echo "KVMRS-LIFECYCLE info: kmemleak off (boot with kmemleak=on to check leaks)"
fi
sync
exit $rc
