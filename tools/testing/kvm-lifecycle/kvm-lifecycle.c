// SPDX-License-Identifier: GPL-2.0
/*
 * kvm-lifecycle: create and destroy many VMs with many vCPUs, memslots and
 * file descriptors, in varied orders, so that a leak checker (kmemleak) and
 * the module's unload can tell whether anything was left behind.
 *
 *   kvm-lifecycle [ROUNDS [VCPUS [SLOTS]]]    (defaults: 16 64 64)
 *
 * Each round: a VM, SLOTS memslots (every other one logging dirty pages),
 * a dirty-log read, VCPUS vCPUs with their kvm_run mapped and a stats fd
 * each, a VM stats fd, an ioeventfd; then half the slots are deleted, one
 * is moved, part of the guest memory is unmapped while the VM lives (the
 * MMU notifier sees it), and everything is closed, the VM first in odd
 * rounds and last in even ones. Prints "KVM-LIFECYCLE ok" or the failing
 * step, and exits 0 or 1.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE 4096UL
#define SLOT_PAGES 4UL

static int fail(const char *what, int round)
{
	printf("KVM-LIFECYCLE FAIL round %d: %s: %s\n", round, what, strerror(errno));
	return 1;
}

static int one_round(int kvm, int round, int nvcpus, int nslots, long run_size)
{
	int vm, i, efd, vmstats;
	int *vcpu = calloc(nvcpus, sizeof(int));
	int *vstats = calloc(nvcpus, sizeof(int));
	void **run = calloc(nvcpus, sizeof(void *));
	size_t mem_size = (size_t)nslots * SLOT_PAGES * PAGE;
	char *mem;

	if (!vcpu || !vstats || !run)
		return fail("calloc", round);
	vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0)
		return fail("KVM_CREATE_VM", round);
	mem = mmap(NULL, mem_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		return fail("mmap guest memory", round);
	memset(mem, round, mem_size);

	for (i = 0; i < nslots; i++) {
		struct kvm_userspace_memory_region r = {
			.slot = i,
			.flags = (i & 1) ? KVM_MEM_LOG_DIRTY_PAGES : 0,
			.guest_phys_addr = 0x100000UL * (i + 1),
			.memory_size = SLOT_PAGES * PAGE,
			.userspace_addr = (unsigned long)mem + i * SLOT_PAGES * PAGE,
		};
		if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r))
			return fail("KVM_SET_USER_MEMORY_REGION", round);
	}
	if (nslots > 1) {
		unsigned long bitmap[2] = { 0 };
		struct kvm_dirty_log log = { .slot = 1, .dirty_bitmap = bitmap };
		if (ioctl(vm, KVM_GET_DIRTY_LOG, &log))
			return fail("KVM_GET_DIRTY_LOG", round);
	}

	for (i = 0; i < nvcpus; i++) {
		vcpu[i] = ioctl(vm, KVM_CREATE_VCPU, i);
		if (vcpu[i] < 0)
			return fail("KVM_CREATE_VCPU", round);
		run[i] = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu[i], 0);
		if (run[i] == MAP_FAILED)
			return fail("mmap kvm_run", round);
		vstats[i] = ioctl(vcpu[i], KVM_GET_STATS_FD, NULL);
		if (vstats[i] < 0)
			return fail("vCPU KVM_GET_STATS_FD", round);
	}
	vmstats = ioctl(vm, KVM_GET_STATS_FD, NULL);
	if (vmstats < 0)
		return fail("VM KVM_GET_STATS_FD", round);

	efd = eventfd(0, EFD_CLOEXEC);
	if (efd < 0)
		return fail("eventfd", round);
	{
		struct kvm_ioeventfd io = { .addr = 0x10000000, .len = 4, .fd = efd };
		if (ioctl(vm, KVM_IOEVENTFD, &io))
			return fail("KVM_IOEVENTFD", round);
	}

	/* Delete every other slot, move the last one. */
	for (i = 0; i < nslots; i += 2) {
		struct kvm_userspace_memory_region r = { .slot = i };
		if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r))
			return fail("delete memslot", round);
	}
	if (nslots > 1) {
		i = ((nslots - 1) & 1) ? nslots - 1 : nslots - 2;
		struct kvm_userspace_memory_region r = {
			.slot = i,
			.flags = (i & 1) ? KVM_MEM_LOG_DIRTY_PAGES : 0,
			.guest_phys_addr = 0x100000UL * (nslots + 10),
			.memory_size = SLOT_PAGES * PAGE,
			.userspace_addr = (unsigned long)mem + i * SLOT_PAGES * PAGE,
		};
		if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r))
			return fail("move memslot", round);
	}
	/* Unmap half the guest memory under the live VM (MMU notifier). */
	if (munmap(mem, mem_size / 2))
		return fail("munmap half", round);

	if (round & 1)
		close(vm);
	for (i = 0; i < nvcpus; i++) {
		munmap(run[i], run_size);
		close(vstats[i]);
		close(vcpu[i]);
	}
	close(vmstats);
	close(efd);
	if (!(round & 1))
		close(vm);
	munmap(mem + mem_size / 2, mem_size - mem_size / 2);
	free(vcpu);
	free(vstats);
	free(run);
	return 0;
}

int main(int argc, char **argv)
{
	int rounds = argc > 1 ? atoi(argv[1]) : 16;
	int nvcpus = argc > 2 ? atoi(argv[2]) : 64;
	int nslots = argc > 3 ? atoi(argv[3]) : 64;
	int kvm, r;
	long run_size;

	setvbuf(stdout, NULL, _IOLBF, 0);
	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		return fail("open /dev/kvm", -1);
	run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (run_size <= 0)
		return fail("KVM_GET_VCPU_MMAP_SIZE", -1);
	for (r = 0; r < rounds; r++)
		if (one_round(kvm, r, nvcpus, nslots, run_size))
			return 1;
	close(kvm);
	printf("KVM-LIFECYCLE ok rounds=%d vcpus=%d slots=%d\n", rounds, nvcpus, nslots);
	return 0;
}
