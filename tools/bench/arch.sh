# Per-arch settings for the bench. Sourced after lib.sh; needs $arch.
# shellcheck shell=bash
case "$arch" in
riscv64)
	karch=riscv
	cross=riscv64-linux-gnu-
	qemu=qemu-system-riscv64
	# HS-mode host: the H extension, with Sstc/Svadu as QEMU's rv64 has them.
	# HOST_CPU_OPTS adds CPU properties, e.g. sstc=false for a host whose
	# guests get their timer from an hrtimer instead of vstimecmp.
	qemu_machine=(-M virt -cpu "rv64,h=true,sscofpmf=true${HOST_CPU_OPTS:+,$HOST_CPU_OPTS}")
	console=ttyS0
	# riscv64 upstream KVM is the module kvm.ko: it is simply not loaded
	# when kvm_rs serves /dev/kvm.
	host_append_kvm_rs=""
	;;
arm64)
	karch=arm64
	cross=aarch64-linux-gnu-
	qemu=qemu-system-aarch64
	# EL2 available; the kernel finalises to VHE at EL2. pauth-impdef keeps
	# TCG fast (the architected QARMA is slow to emulate).
	qemu_machine=(-M virt,virtualization=on,gic-version=3 -cpu "max,pauth-impdef=on${HOST_CPU_OPTS:+,$HOST_CPU_OPTS}")
	console=ttyAMA0
	# In-tree KVM is built in: keep it off so EL2 and /dev/kvm are ours.
	host_append_kvm_rs="kvm-arm.mode=none"
	;;
*) die "unknown ARCH '$arch' (riscv64 or arm64)" ;;
esac
# Who serves /dev/kvm in the emulated host: kvm_rs, or upstream KVM ("kvm").
backend=${BACKEND:-kvm_rs}
case "$backend" in
kvm_rs) host_append=$host_append_kvm_rs ;;
kvm) host_append="" ;;
none) host_append=$host_append_kvm_rs ;;
*) die "unknown BACKEND '$backend' (kvm_rs or kvm)" ;;
esac
# KVARIANT=NAME selects the variant kernel (tools/bench/configs/NAME.config
# on top) and its own build directory.
kvariant=${KVARIANT:-}
kbuild=$KVMRS_CACHE/kernel/$arch${kvariant:+-$kvariant}
kimage=$kbuild/arch/$karch/boot/Image
out=$KVMRS_TOP/build/$arch${kvariant:+-$kvariant}
