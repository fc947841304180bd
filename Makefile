# SPDX-License-Identifier: GPL-2.0
#
# kvm-rs bench. Everything is built from Debian packages into a cache outside
# the clone ($(KVMRS_CACHE)), keyed by what it depends on, so a warm run
# rebuilds nothing. Run as root (see README, "Without root").
#
#   make run   [ARCH=riscv64|arm64] [BACKEND=kvm_rs|kvm]
#                                     build what is missing, boot the emulated
#                                     host, bring up the backend, probe
#                                     /dev/kvm, boot a nested guest with QEMU
#   make check                        every test for both arches
#   make help                         everything else

ARCH ?= riscv64
CLIPPY ?=
KVMRS_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/kvm-rs
BACKEND ?= kvm_rs
export KVMRS_CACHE BOOT_TIMEOUT BOOT_LOG KUNIT_TIMEOUT BACKEND TEST ST_TIMEOUT DO KVARIANT BENCH_ARGS BENCH_RUNS

ifeq ($(filter $(ARCH),riscv64 arm64),)
$(error ARCH must be riscv64 or arm64, not '$(ARCH)')
endif
ifeq ($(filter $(BACKEND),kvm_rs kvm),)
$(error BACKEND must be kvm_rs or kvm (upstream KVM), not '$(BACKEND)')
endif

B := tools/bench
IN_ROOT := $(B)/in-root

.PHONY: help toolchain linux-src kernel kernels module clippy userprogs rootfs \
	boot run hosttest kunit selftests selftests-build selftests-compare kvm-diff lifecycle bench check \
	clean distclean

help:
	@echo 'kvm-rs bench targets (ARCH=riscv64|arm64, default riscv64):'
	@echo '  run        build what is missing, boot the $(ARCH) emulated host, bring up'
	@echo '             BACKEND (kvm_rs|kvm), check /dev/kvm from userspace and boot a'
	@echo '             nested guest with Debian QEMU -accel kvm (time to its marker)'
	@echo '  check      every test for both arches; last line "N passed, N failed"'
	@echo
	@echo '  toolchain  Debian trixie + backports root with rustc, clang, qemu (cached)'
	@echo '  linux-src  linux-source-7.3 + rust/linux-7.3-patches (cached git tree)'
	@echo '  kernel     the patched host kernel for ARCH (cached, incremental)'
	@echo '  module     kvm_rs.ko for ARCH (CLIPPY=1 to lint)'
	@echo '  clippy     same as module CLIPPY=1'
	@echo '  userprogs  static test programs for the emulated host'
	@echo '  rootfs     the emulated host initramfs (build/ARCH/host.cpio)'
	@echo '  boot       boot the emulated host (BOOT_TIMEOUT, BOOT_LOG)'
	@echo '  kunit      KUnit suites of kvm_rs in virtme-ng'
	@echo '  hosttest   cargo test of the pure-logic files'
	@echo '  selftests  upstream KVM selftests on BACKEND (TEST=a,b; ST_TIMEOUT=s)'
	@echo '             -> build/ARCH/selftests-BACKEND.json'
	@echo '  selftests-compare  both backends, test x backend matrix'
	@echo '  kvm-diff   the same ioctl sequence on upstream KVM and kvm_rs, transcripts compared'
	@echo '  bench      guest-exit micro-benchmarks, upstream KVM vs kvm_rs, twice each'
	@echo '             (riscv64 only; BENCH_ARGS="-n N", BENCH_RUNS) -> build/ARCH/bench.md'
	@echo '  lifecycle  VM create/destroy loop, CPU hotplug, suspend, unload, kmemleak (BACKEND)'
	@echo '  clean      remove build/   distclean: also the cache $(KVMRS_CACHE)'

toolchain:
	@$(B)/mkroot.sh

linux-src: toolchain
	@$(IN_ROOT) $(B)/linux-src.sh

kernel: toolchain
	@$(IN_ROOT) $(B)/kernel.sh $(ARCH)

kernels: toolchain
	@$(IN_ROOT) $(B)/kernel.sh riscv64
	@$(IN_ROOT) $(B)/kernel.sh arm64

module: kernel
	@$(IN_ROOT) $(B)/module.sh $(ARCH) $(if $(CLIPPY),CLIPPY=1)

clippy:
	@$(MAKE) -s module CLIPPY=1

userprogs: toolchain
	@$(IN_ROOT) $(B)/userprogs.sh $(ARCH)

rootfs: module userprogs
	@$(IN_ROOT) $(B)/hostimg.sh $(ARCH)

boot: rootfs
	@$(IN_ROOT) $(B)/boot.sh $(ARCH) $(BOOT_ARGS)

run: rootfs
	@$(B)/run.sh $(ARCH)

selftests-build: kernel
	@$(IN_ROOT) $(B)/selftests-build.sh $(ARCH) >/dev/null

selftests: rootfs
	@$(IN_ROOT) $(B)/selftests.sh $(ARCH)

selftests-compare: rootfs
	@$(IN_ROOT) $(B)/selftests-compare.sh $(ARCH)

kvm-diff: rootfs
	@$(IN_ROOT) $(B)/kvm-diff.sh $(ARCH)

# Not part of check: minutes of TCG time, and it measures, it does not test.
bench: rootfs
	@$(IN_ROOT) env BENCH_COMMIT="$$(git describe --always --dirty 2>/dev/null)" $(B)/bench.sh $(ARCH)

# On the kmemleak variant of the kernel (configs/kmemleak.config).
lifecycle: toolchain
	@$(MAKE) -s rootfs ARCH=$(ARCH) KVARIANT=kmemleak
	@$(IN_ROOT) env KVARIANT=kmemleak $(B)/lifecycle.sh $(ARCH)

hosttest: toolchain
	@$(IN_ROOT) $(B)/hosttest.sh

kunit: module
	@$(IN_ROOT) $(B)/kunit.sh $(ARCH)

check:
	@$(B)/check.sh

clean:
	rm -rf build

distclean: clean
	rm -rf $(KVMRS_CACHE)
