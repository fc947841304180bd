#!/bin/bash
# Pack the emulated host's initramfs (inside the root): static busybox, the
# init script, kvm_rs.ko and the test programs. Output: build/<arch>/host.cpio
. "$(dirname "$0")/lib.sh"
arch=${1:?usage: hostimg.sh ARCH}
. "$KVMRS_TOP/tools/bench/arch.sh"
stage=$out/initramfs
rm -rf "$stage"
mkdir -p "$stage"/{bin,sbin,proc,sys,dev,tmp,root,etc,lib/kvmrs}
cp /opt/kvmrs/busybox-"$arch"/usr/bin/busybox "$stage/bin/busybox"
cp "$KVMRS_TOP/tools/bench/host-init.sh" "$stage/init"
chmod +x "$stage/init"
cp "$out/module/kvm_rs.ko" "$stage/lib/kvmrs/"
cp "$out/bin/"* "$stage/bin/"
(cd "$stage" && find . | cpio -o -H newc --quiet) >"$out/host.cpio"
