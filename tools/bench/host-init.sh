#!/bin/busybox sh
# /init of the kvm-rs emulated host (busybox initramfs).
# Kernel command line: kvmrs.backend=kvm_rs|kvm|none  kvmrs.test=<what>
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug
mount -t tmpfs tmpfs /tmp

finish() {
	echo "KVMRS-RESULT rc=$1"
	sync
	poweroff -f
}

backend=kvm_rs
for a in $(cat /proc/cmdline); do
	case "$a" in kvmrs.backend=*) backend=${a#kvmrs.backend=} ;; esac
done

arch=$(uname -m)
echo "KVMRS-HOST arch=$arch kernel=$(uname -r) cpus=$(grep -c ^processor /proc/cpuinfo) backend=$backend"
case "$arch" in
aarch64)
	dmesg | grep -E "CPU: All CPU\(s\) started at EL|kvm \[|VHE" | sed 's/^/  /'
	;;
riscv64)
	grep -m1 '^isa' /proc/cpuinfo | sed 's/^/  /'
	;;
esac

case "$backend" in
kvm_rs)
	if ! insmod /lib/kvmrs/kvm_rs.ko; then
		dmesg | tail -20
		echo "KVMRS-ERROR insmod kvm_rs.ko failed"
		finish 2
	fi
	dmesg | grep -E "kvm_rs" | sed 's/^/  /'
	;;
none) ;;
*)
	echo "KVMRS-ERROR backend '$backend' is not available in this image"
	finish 2
	;;
esac

ls -l /dev/kvm
kvm-probe
rc=$?
bad="BUG:|Oops|WARNING:|Kernel panic"
if dmesg | grep -qE "$bad"; then
	echo "KVMRS-ERROR the kernel log shows a BUG/WARNING/Oops:"
	dmesg | grep -E -A20 "$bad" | head -60
	rc=3
fi
finish $rc
