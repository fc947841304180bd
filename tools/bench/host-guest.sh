#!/opt/kvmrs/bin/busybox sh
# Inside the emulated host: boot the nested guest (our kernel Image and a
# tiny initramfs that prints KVMRS-GUEST-UP, sleeps 0.3 s on its timer,
# prints KVMRS-GUEST-TIMER and powers off) with Debian's QEMU and -accel
# kvm, and report the time from QEMU's start to the marker. Both lines must
# come for "ok".
# Env: GUEST_TIMEOUT (s, default 120).
g=/opt/kvmrs/guest
case "$(uname -m)" in
riscv64) set -- qemu-system-riscv64 -M virt -cpu host; con=ttyS0 ;;
aarch64) set -- qemu-system-aarch64 -M virt,gic-version=3 -cpu host; con=ttyAMA0 ;;
esac
up() { cut -d' ' -f1 /proc/uptime; }
echo "KVMRS-GUEST client: $(cat /etc/kvmrs-qemu-version)"
echo "KVMRS-GUEST cmd: $* -accel kvm -smp 1 -m 256 -nographic -nic none -kernel Image -initrd guest.cpio"
t0=$(up)
timeout -s KILL "${GUEST_TIMEOUT:-120}" "$@" -accel kvm -smp 1 -m 256 -nographic -no-reboot -nic none \
	-kernel $g/Image -initrd $g/guest.cpio -append "console=$con panic=-1 quiet" </dev/null 2>&1 |
	while IFS= read -r line; do
		echo "  guest| $line"
		case "$line" in
		*KVMRS-GUEST-UP*) echo "$t0 $(up)" >/tmp/guest-marker ;;
		*KVMRS-GUEST-TIMER*) : >/tmp/guest-timer ;;
		esac
	done
t1=$(up)
if [ -f /tmp/guest-marker ] && [ ! -f /tmp/guest-timer ]; then
	echo "KVMRS-GUEST fail marker but no timer: the guest's sleep did not return ($(awk "BEGIN{printf \"%.2f\", $t1-$t0}")s)"
	exit 1
fi
if [ -f /tmp/guest-marker ]; then
	read -r a b </tmp/guest-marker
	echo "KVMRS-GUEST ok marker=$(awk "BEGIN{printf \"%.2f\", $b-$a}")s total=$(awk "BEGIN{printf \"%.2f\", $t1-$t0}")s"
	exit 0
fi
echo "KVMRS-GUEST fail no marker after $(awk "BEGIN{printf \"%.2f\", $t1-$t0}")s"
exit 1
