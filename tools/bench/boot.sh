#!/bin/bash
# Boot the emulated host (inside the root) and return the in-host result.
#   boot.sh ARCH [extra kernel args...]
# Env: BACKEND (kvm_rs|kvm, default kvm_rs), DO (in-host steps, default
# "probe"; see host-init.sh), BOOT_TIMEOUT (s, default 180), BOOT_LOG
# (default build/<arch>/boot.log), HOST_MEM (default 4G).
# build/<arch>/share is the host's 9p share "kvmrs" (selftest plan/results).
. "$(dirname "$0")/lib.sh"
arch=${1:?usage: boot.sh ARCH [args]}; shift
. "$KVMRS_TOP/tools/bench/arch.sh"
log=${BOOT_LOG:-$out/boot.log}
timeout_s=${BOOT_TIMEOUT:-180}
todo=${DO:-probe}
mem=${HOST_MEM:-4G}
[ -f "$kimage" ] || die "boot[$arch]: no kernel image $kimage (make kernel ARCH=$arch)"
[ -f "$out/host.cpio" ] || die "boot[$arch]: no initramfs (make rootfs ARCH=$arch)"
mkdir -p "$out/share"
log "boot[$arch]: backend=$backend do=$todo: $qemu ${qemu_machine[*]} -smp 2 -m $mem (timeout ${timeout_s}s, log $log)"
set +e
timeout --kill-after=5 "$timeout_s" "$qemu" "${qemu_machine[@]}" -smp 2 -m "$mem" \
	-nographic -no-reboot -nic none \
	-virtfs "local,path=$out/share,mount_tag=kvmrs,security_model=none,id=kvmrs" \
	-kernel "$kimage" -initrd "$out/host.cpio" \
	-append "console=$console panic=-1 quiet $host_append kvmrs.backend=$backend kvmrs.do=$todo $*" \
	</dev/null 2>&1 | tee "$log"
qrc=${PIPESTATUS[0]}
set -e
rc=$(sed -n 's/.*KVMRS-RESULT rc=\([0-9]*\).*/\1/p' "$log" | tail -1)
if [ -z "$rc" ]; then
	if [ "$qrc" = 124 ]; then
		echo "kvm-rs: boot[$arch]: TIMEOUT after ${timeout_s}s without a result; log: $log" >&2
		exit 124
	fi
	echo "kvm-rs: boot[$arch]: the host stopped without a result (qemu rc=$qrc); log: $log" >&2
	exit 125
fi
exit "$rc"
