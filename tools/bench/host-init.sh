#!/opt/kvmrs/bin/busybox sh
# /init of the kvm-rs emulated host. Its root is a Debian minbase with QEMU
# (hostroot.sh) plus our files in /opt/kvmrs (hostimg.sh).
#
# Kernel command line:
#   kvmrs.backend=kvm_rs|kvm|none   who serves /dev/kvm (kvm = upstream KVM:
#                                   riscv64 loads the in-tree kvm.ko; arm64's
#                                   is built in, on unless kvm-arm.mode=none)
#   kvmrs.do=probe,guest,selftests,diff,lifecycle,bench  what to run (comma separated, in order)
#   kvmrs.bench=ARGS                arguments of kvm-bench, ':' for spaces (e.g. -n:5000)
#   kvmrs.modargs=ARGS              parameters of kvm_rs.ko, ':' for spaces (e.g. vmid_bits=1)
# With "selftests", the plan (test name and timeout per line) is read from
# the 9p share "kvmrs" (build/<arch>/share), where the results go too.
# "diff" runs kvm-diff and writes its transcript to the share (kvm-diff.txt).
# "bench" runs kvm-bench (guest-exit micro-benchmarks) into the share (bench.txt).
/opt/kvmrs/bin/busybox --install -s /opt/kvmrs/bin
export PATH=/opt/kvmrs/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mkdir -p /dev/shm /dev/hugepages /sys/fs/cgroup
mount -t tmpfs tmpfs /dev/shm
mount -t hugetlbfs hugetlbfs /dev/hugepages 2>/dev/null
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
hostname kvmrs-host

finish() {
	bad="BUG:|Oops|WARNING:|Kernel panic|Call trace:"
	if dmesg | grep -qE "$bad"; then
		echo "KVMRS-ERROR the kernel log shows a BUG/WARNING/Oops:"
		dmesg | grep -E -B5 -A25 "$bad" | head -80
		[ "$1" != 0 ] || set -- 3
	fi
	if [ -d /mnt/share ]; then
		dmesg >/mnt/share/dmesg.txt
		umount /mnt/share
	fi
	echo "KVMRS-RESULT rc=$1"
	sync
	poweroff -f
}

backend=kvm_rs
todo=probe
benchargs=
modargs=
for a in $(cat /proc/cmdline); do
	case "$a" in
	kvmrs.backend=*) backend=${a#kvmrs.backend=} ;;
	kvmrs.do=*) todo=${a#kvmrs.do=} ;;
	kvmrs.bench=*) benchargs=$(echo "${a#kvmrs.bench=}" | tr : ' ') ;;
	kvmrs.modargs=*) modargs=$(echo "${a#kvmrs.modargs=}" | tr : ' ') ;;
	esac
done

arch=$(uname -m)
echo "KVMRS-HOST arch=$arch kernel=$(uname -r) cpus=$(grep -c ^processor /proc/cpuinfo) backend=$backend do=$todo"
case "$arch" in
aarch64) dmesg | grep -E "CPU: All CPU\(s\) started at EL|kvm \[|VHE" | sed 's/^/  /' ;;
riscv64) grep -m1 '^isa' /proc/cpuinfo | sed 's/^/  /' ;;
esac

if mkdir -p /mnt/share && mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 kvmrs /mnt/share 2>/dev/null; then
	:
else
	rmdir /mnt/share
fi

case "$backend" in
kvm_rs)
	# shellcheck disable=SC2086 # one word per module parameter
	if ! insmod /opt/kvmrs/kvm_rs.ko $modargs; then
		dmesg | tail -20
		echo "KVMRS-ERROR insmod kvm_rs.ko failed"
		finish 2
	fi
	dmesg | grep -E "kvm_rs" | sed 's/^/  /'
	;;
kvm)
	case "$arch" in
	riscv64)
		if ! insmod /opt/kvmrs/kvm.ko; then
			dmesg | tail -20
			echo "KVMRS-ERROR insmod kvm.ko (upstream) failed"
			finish 2
		fi
		;;
	esac
	dmesg | grep -E "kvm( \[[0-9]+\])?:" | sed 's/^/  /'
	;;
none) ;;
*)
	echo "KVMRS-ERROR unknown backend '$backend'"
	finish 2
	;;
esac
[ "$backend" = none ] || [ -c /dev/kvm ] || { echo "KVMRS-ERROR no /dev/kvm with backend $backend"; finish 2; }
ls -l /dev/kvm 2>/dev/null

rc=0
for step in $(echo "$todo" | tr , ' '); do
	case "$step" in
	probe) kvm-probe || rc=1 ;;
	guest) /opt/kvmrs/host-guest.sh || rc=1 ;;
	selftests)
		if [ ! -d /mnt/share ]; then
			echo "KVMRS-ERROR selftests need the 9p share 'kvmrs'"
			rc=2
		else
			/opt/kvmrs/host-selftests.sh /mnt/share || rc=1
		fi
		;;
	lifecycle)
		if [ ! -d /mnt/share ]; then
			echo "KVMRS-ERROR the lifecycle checks need the 9p share 'kvmrs'"
			rc=2
		else
			/opt/kvmrs/host-lifecycle.sh /mnt/share || rc=1
		fi
		;;
	diff)
		if [ ! -d /mnt/share ]; then
			echo "KVMRS-ERROR kvm-diff needs the 9p share 'kvmrs'"
			rc=2
		else
			kvm-diff >/mnt/share/kvm-diff.txt 2>&1 || rc=1
			# Everything closed: kvm_rs must unload (informational line).
			if [ "$backend" = kvm_rs ]; then
				if rmmod kvm_rs 2>/dev/null; then r=ok; else r=failed; rc=1; fi
				echo "# rmmod kvm_rs after kvm-diff: $r" >>/mnt/share/kvm-diff.txt
			fi
			echo "KVMRS-DIFF $(grep -vc '^#' /mnt/share/kvm-diff.txt) steps, rc=$rc"
			sync
		fi
		;;
	bench)
		if [ ! -d /mnt/share ]; then
			echo "KVMRS-ERROR kvm-bench needs the 9p share 'kvmrs'"
			rc=2
		else
			# shellcheck disable=SC2086
			kvm-bench $benchargs >/mnt/share/bench.txt 2>&1 || rc=1
			sed 's/^/  /' /mnt/share/bench.txt
			echo "KVMRS-BENCH rc=$rc"
			sync
		fi
		;;
	*) echo "KVMRS-ERROR unknown step '$step'"; rc=2 ;;
	esac
done
finish $rc
