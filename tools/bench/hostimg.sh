#!/bin/bash
# Pack the emulated host's initramfs (inside the root):
#   hostimg.sh ARCH   -> build/<arch>/host.cpio
# = the cached Debian root with QEMU (hostroot.sh) followed by a small cpio
# with our files under /opt/kvmrs: init, static busybox, kvm_rs.ko, the
# upstream kvm.ko (riscv64), test programs, the upstream KVM selftests and
# the nested guest (our kernel Image + a tiny initramfs). The kernel unpacks
# concatenated cpio archives in order.
. "$(dirname "$0")/lib.sh"
arch=${1:?usage: hostimg.sh ARCH}
. "$KVMRS_TOP/tools/bench/arch.sh"
B=$KVMRS_TOP/tools/bench
base=$("$B/hostroot.sh" "$arch")
selftests=$("$B/selftests-build.sh" "$arch")

# The nested guest's initramfs: busybox and an init printing the marker.
g=$out/guest-initramfs
rm -rf "$g"
mkdir -p "$g"/{bin,dev,proc}
cp /opt/kvmrs/busybox-"$arch"/usr/bin/busybox "$g/bin/busybox"
cp "$B/guest-init.sh" "$g/init"
chmod +x "$g/init"
(cd "$g" && find . | cpio -o -H newc --quiet) >"$out/guest.cpio"

stage=$out/initramfs
rm -rf "$stage"
o=$stage/opt/kvmrs
mkdir -p "$stage"/{dev,proc,sys,tmp,run,mnt,root} "$o"/{bin,guest,selftests}
cp /opt/kvmrs/busybox-"$arch"/usr/bin/busybox "$o/bin/busybox"
cp "$B/host-init.sh" "$stage/init"
cp "$B/host-guest.sh" "$B/host-selftests.sh" "$B/host-lifecycle.sh" "$o/"
chmod +x "$stage/init" "$o"/*.sh
cp "$out/module/kvm_rs.ko" "$o/"
# Upstream KVM: a module on riscv64, built in on arm64.
[ "$arch" != riscv64 ] || cp "$kbuild/arch/riscv/kvm/kvm.ko" "$o/"
cp "$out/bin/"* "$o/bin/"
cp "$kimage" "$o/guest/Image"
cp "$out/guest.cpio" "$o/guest/guest.cpio"
cp -a "$selftests"/. "$o/selftests/"
(cd "$stage" && find . | cpio -o -H newc --quiet) >"$out/overlay.cpio"
cat "$base" "$out/overlay.cpio" >"$out/host.cpio"
rm -f "$out/overlay.cpio"
