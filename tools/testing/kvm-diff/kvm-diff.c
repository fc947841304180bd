// SPDX-License-Identifier: GPL-2.0
/*
 * kvm-diff: drive a fixed sequence of valid and invalid VM, vCPU and memslot
 * ioctls and print a canonical transcript, one line per step:
 *
 *   <step>: ok [value]      the call succeeded (value when it is not an fd)
 *   <step>: -EXXX           the call failed with that errno
 *
 * The same binary runs in the emulated host on upstream KVM and on kvm_rs;
 * tools/bench/kvm-diff.sh compares the two transcripts. Lines starting with
 * '#' are informational and not compared. Capabilities are only asked for
 * those kvm_rs claims (and the transcript then checks that upstream answers
 * the same); the steps exercise only features kvm_rs implements.
 */
#define _GNU_SOURCE /* pthread_timedjoin_np() */
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <fcntl.h>
#include <pthread.h>
#include <time.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <linux/kvm.h>

/* Internal to the kernel (kvm_host.h); the stats header carries it too. */
#ifndef KVM_STATS_NAME_SIZE
#define KVM_STATS_NAME_SIZE 48
#endif

/* Informational: the module's reference count (kvm_rs, or upstream kvm.ko). */
static void refcnt(const char *when)
{
	const char *mods[] = { "/sys/module/kvm_rs/refcnt", "/sys/module/kvm/refcnt" };
	char buf[32];
	unsigned int i;

	for (i = 0; i < 2; i++) {
		FILE *f = fopen(mods[i], "r");

		if (!f)
			continue;
		if (fgets(buf, sizeof(buf), f))
			printf("# %s refcnt %s: %s", mods[i], when, buf);
		fclose(f);
	}
}

static const char *errname(int e)
{
	switch (e) {
	case EPERM: return "EPERM";
	case ENOENT: return "ENOENT";
	case EINTR: return "EINTR";
	case EIO: return "EIO";
	case ENXIO: return "ENXIO";
	case E2BIG: return "E2BIG";
	case ENOEXEC: return "ENOEXEC";
	case EBADF: return "EBADF";
	case EAGAIN: return "EAGAIN";
	case ENOMEM: return "ENOMEM";
	case EFAULT: return "EFAULT";
	case EBUSY: return "EBUSY";
	case EEXIST: return "EEXIST";
	case ENODEV: return "ENODEV";
	case EINVAL: return "EINVAL";
	case ENOTTY: return "ENOTTY";
	case ENOSPC: return "ENOSPC";
	case EOPNOTSUPP: return "EOPNOTSUPP";
	default: return NULL;
	}
}

/* Prints one step; returns the call's result. "fd" steps hide the number. */
static long step(const char *what, long r, int is_fd)
{
	if (r < 0) {
		const char *n = errname(errno);

		if (n)
			printf("%s: -%s\n", what, n);
		else
			printf("%s: -E%d\n", what, errno);
	} else if (is_fd) {
		printf("%s: ok\n", what);
	} else {
		printf("%s: ok %ld\n", what, r);
	}
	fflush(stdout);
	return r;
}

#define IOCTL(what, fd, req, arg) step(what, ioctl(fd, req, arg), 0)
#define IOCTL_FD(what, fd, req, arg) step(what, ioctl(fd, req, arg), 1)

static const struct { const char *name; long cap; } caps[] = {
	{ "USER_MEMORY", KVM_CAP_USER_MEMORY },
	{ "USER_MEMORY2", KVM_CAP_USER_MEMORY2 },
	{ "DESTROY_MEMORY_REGION_WORKS", KVM_CAP_DESTROY_MEMORY_REGION_WORKS },
	{ "JOIN_MEMORY_REGIONS_WORKS", KVM_CAP_JOIN_MEMORY_REGIONS_WORKS },
	{ "NR_MEMSLOTS", KVM_CAP_NR_MEMSLOTS },
	{ "CHECK_EXTENSION_VM", KVM_CAP_CHECK_EXTENSION_VM },
	{ "ENABLE_CAP_VM", KVM_CAP_ENABLE_CAP_VM },
	{ "BINARY_STATS_FD", KVM_CAP_BINARY_STATS_FD },
	{ "MANUAL_DIRTY_LOG_PROTECT2", KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 },
	{ "DEVICE_CTRL", KVM_CAP_DEVICE_CTRL },
	{ "COALESCED_MMIO", KVM_CAP_COALESCED_MMIO },
	{ "COALESCED_PIO", KVM_CAP_COALESCED_PIO },
	{ "NR_VCPUS", KVM_CAP_NR_VCPUS },
	{ "MAX_VCPUS", KVM_CAP_MAX_VCPUS },
	{ "MAX_VCPU_ID", KVM_CAP_MAX_VCPU_ID },
	{ "READONLY_MEM", KVM_CAP_READONLY_MEM },
	{ "IMMEDIATE_EXIT", KVM_CAP_IMMEDIATE_EXIT },
#ifdef __riscv
	{ "VM_GPA_BITS", KVM_CAP_VM_GPA_BITS },
	{ "ONE_REG", KVM_CAP_ONE_REG },
#endif
#ifdef __aarch64__
	{ "ARM_VM_IPA_SIZE", KVM_CAP_ARM_VM_IPA_SIZE },
	{ "ONE_REG", KVM_CAP_ONE_REG },
	{ "ARM_SUPPORTED_REG_MASK_RANGES", KVM_CAP_ARM_SUPPORTED_REG_MASK_RANGES },
	{ "ARM_WRITABLE_IMP_ID_REGS", KVM_CAP_ARM_WRITABLE_IMP_ID_REGS },
#endif
};

static void check_caps(const char *where, int fd)
{
	char what[96];
	unsigned int i;

	for (i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
		snprintf(what, sizeof(what), "%s CHECK_EXTENSION(%s)", where, caps[i].name);
		IOCTL(what, fd, KVM_CHECK_EXTENSION, caps[i].cap);
	}
}

static int set_region(int vm, unsigned long req, uint32_t slot, uint32_t flags,
		      uint64_t gpa, uint64_t size, void *hva)
{
	struct kvm_userspace_memory_region2 r;

	memset(&r, 0, sizeof(r));
	r.slot = slot;
	r.flags = flags;
	r.guest_phys_addr = gpa;
	r.memory_size = size;
	r.userspace_addr = (uint64_t)(uintptr_t)hva;
	return ioctl(vm, req, &r);
}

#define REGION(what, vm, slot, flags, gpa, size, hva) \
	step(what, set_region(vm, KVM_SET_USER_MEMORY_REGION, slot, flags, gpa, size, hva), 0)
#define REGION2(what, vm, slot, flags, gpa, size, hva) \
	step(what, set_region(vm, KVM_SET_USER_MEMORY_REGION2, slot, flags, gpa, size, hva), 0)

/* The layout of a stats fd: header, id prefix, every descriptor. */
static void stats(const char *where, int fd)
{
	struct kvm_stats_header h;
	char id[KVM_STATS_NAME_SIZE + 1], what[160];
	size_t dsz;
	char *descs;
	uint32_t i;

	if (fd < 0)
		return;
	if (pread(fd, &h, sizeof(h), 0) != sizeof(h)) {
		printf("%s stats header: -E%d\n", where, errno);
		return;
	}
	printf("%s stats: flags %u name_size %u num_desc %u\n", where, h.flags, h.name_size,
	       h.num_desc);
	memset(id, 0, sizeof(id));
	if (h.name_size > KVM_STATS_NAME_SIZE ||
	    pread(fd, id, h.name_size, h.id_offset) != (ssize_t)h.name_size) {
		printf("%s stats id: unreadable\n", where);
		return;
	}
	/* The id has the creator's pid: keep only its shape. */
	printf("%s stats id: %s\n", where, strncmp(id, "kvm-", 4) ? "bad" : "kvm-<pid>...");
	dsz = sizeof(struct kvm_stats_desc) + h.name_size;
	descs = calloc(h.num_desc, dsz);
	if (!descs || pread(fd, descs, h.num_desc * dsz, h.desc_offset) != (ssize_t)(h.num_desc * dsz)) {
		printf("%s stats descriptors: unreadable\n", where);
		free(descs);
		return;
	}
	for (i = 0; i < h.num_desc; i++) {
		struct kvm_stats_desc *d = (void *)(descs + i * dsz);

		snprintf(what, sizeof(what), "%s stat %s", where, d->name);
		printf("%s: flags %#x exponent %d size %u bucket %u\n", what, d->flags, d->exponent,
		       d->size, d->bucket_size);
	}
	free(descs);
	close(fd);
}


static int ioeventfd(int vm, uint64_t addr, uint32_t len, uint32_t flags, uint64_t datamatch, int fd)
{
	struct kvm_ioeventfd a;

	memset(&a, 0, sizeof(a));
	a.addr = addr;
	a.len = len;
	a.flags = flags;
	a.datamatch = datamatch;
	a.fd = fd;
	return ioctl(vm, KVM_IOEVENTFD, &a);
}

#define IOEVENTFD(what, vm, addr, len, flags, dm, fd) \
	step(what, ioeventfd(vm, addr, len, flags, dm, fd), 0)

static int coalesced(int vm, unsigned long req, uint64_t addr, uint32_t size, uint32_t pio)
{
	struct kvm_coalesced_mmio_zone z;

	memset(&z, 0, sizeof(z));
	z.addr = addr;
	z.size = size;
	z.pio = pio;
	return ioctl(vm, req, &z);
}

#define COALESCED(what, vm, req, addr, size, pio) \
	step(what, coalesced(vm, req, addr, size, pio), 0)

/*
 * KVM_(UN)REGISTER_COALESCED_MMIO: pio must be 0 or 1, no size or overlap
 * check, 1000 zones per bus (ENOSPC), unregister removes every zone of the
 * bus that contains the whole range and always answers 0.
 */
static void coalesced_zones(int vm)
{
	const unsigned long reg = KVM_REGISTER_COALESCED_MMIO, unreg = KVM_UNREGISTER_COALESCED_MMIO;
	uint64_t base = 0x20000000;
	char what[96];
	int i, e, r = 0;

	COALESCED("REGISTER_COALESCED_MMIO pio 2", vm, reg, base, 8, 2);
	COALESCED("REGISTER_COALESCED_MMIO pio -1", vm, reg, base, 8, -1U);
	COALESCED("UNREGISTER_COALESCED_MMIO pio 2", vm, unreg, base, 8, 2);
	IOCTL("REGISTER_COALESCED_MMIO bad address", vm, reg, (void *)8);
	IOCTL("UNREGISTER_COALESCED_MMIO bad address", vm, unreg, (void *)8);
	COALESCED("REGISTER_COALESCED_MMIO size 0", vm, reg, base, 0, 0);
	COALESCED("REGISTER_COALESCED_MMIO size 4G-1", vm, reg, base, -1U, 0);
	COALESCED("REGISTER_COALESCED_MMIO wrapping", vm, reg, -8ULL, 0x100, 0);
	COALESCED("REGISTER_COALESCED_MMIO big", vm, reg, base, 0x1000, 0);
	COALESCED("REGISTER_COALESCED_MMIO overlapping", vm, reg, base + 0x800, 0x1000, 0);
	COALESCED("REGISTER_COALESCED_MMIO same again", vm, reg, base, 0x1000, 0);
	COALESCED("REGISTER_COALESCED_MMIO pio", vm, reg, 0x3f8, 8, 1);
	COALESCED("UNREGISTER_COALESCED_MMIO unknown", vm, unreg, base + 0x100000, 8, 0);
	COALESCED("UNREGISTER_COALESCED_MMIO middle", vm, unreg, base + 0x100, 8, 0);
	COALESCED("UNREGISTER_COALESCED_MMIO all", vm, unreg, 0, -1U, 0);
	COALESCED("UNREGISTER_COALESCED_MMIO pio", vm, unreg, 0x3f8, 8, 1);
	/* Fill the MMIO bus; the count registered is part of the step name. */
	for (i = 0; i < 2000; i++) {
		r = coalesced(vm, reg, base + 0x10000 + 16 * i, 16, 0);
		if (r)
			break;
	}
	e = errno;
	snprintf(what, sizeof(what), "REGISTER_COALESCED_MMIO until full (%d more)", i);
	errno = e;
	step(what, r, 0);
	COALESCED("REGISTER_COALESCED_MMIO bus full", vm, reg, base, 8, 0);
	COALESCED("REGISTER_COALESCED_MMIO pio bus not full", vm, reg, 0x3f8, 8, 1);
	/* Straddles two zones: contained in neither, nothing is removed. */
	COALESCED("UNREGISTER_COALESCED_MMIO straddling", vm, unreg, base + 0x10008, 16, 0);
	COALESCED("REGISTER_COALESCED_MMIO after straddling", vm, reg, base, 8, 0);
	COALESCED("UNREGISTER_COALESCED_MMIO one small zone", vm, unreg, base + 0x10010, 4, 0);
	COALESCED("REGISTER_COALESCED_MMIO after one", vm, reg, base + 0x10010, 16, 0);
	COALESCED("REGISTER_COALESCED_MMIO full once more", vm, reg, base, 8, 0);
}

/* KVM_IOEVENTFD: registration rules (nothing signals yet on kvm_rs). */
static void ioeventfds(int vm, int kvm)
{
	const uint32_t dm = KVM_IOEVENTFD_FLAG_DATAMATCH, de = KVM_IOEVENTFD_FLAG_DEASSIGN;
	int e1 = eventfd(0, EFD_CLOEXEC), e2 = eventfd(0, EFD_CLOEXEC);
	uint64_t base = 0x10000000;

	if (e1 < 0 || e2 < 0) {
		printf("eventfd: -E%d\n", errno);
		return;
	}
	IOEVENTFD("IOEVENTFD mmio len 4", vm, base, 4, 0, 0, e1);
	IOEVENTFD("IOEVENTFD mmio len 4 again", vm, base, 4, 0, 0, e1);
	IOEVENTFD("IOEVENTFD mmio len 4 other eventfd", vm, base, 4, 0, 0, e2);
	IOEVENTFD("IOEVENTFD mmio len 4 datamatch over wildcard", vm, base, 4, dm, 1, e2);
	IOEVENTFD("IOEVENTFD mmio len 2 same addr", vm, base, 2, 0, 0, e2);
	IOEVENTFD("IOEVENTFD mmio len 0 same addr", vm, base, 0, 0, 0, e2);
	IOEVENTFD("IOEVENTFD datamatch 1", vm, base + 0x100, 8, dm, 1, e1);
	IOEVENTFD("IOEVENTFD datamatch 2", vm, base + 0x100, 8, dm, 2, e1);
	IOEVENTFD("IOEVENTFD datamatch 2 again", vm, base + 0x100, 8, dm, 2, e2);
	IOEVENTFD("IOEVENTFD wildcard over datamatch", vm, base + 0x100, 8, 0, 0, e2);
	IOEVENTFD("IOEVENTFD len 0", vm, base + 0x200, 0, 0, 0, e1);
	IOEVENTFD("IOEVENTFD len 4 over len 0", vm, base + 0x200, 4, dm, 7, e2);
	IOEVENTFD("IOEVENTFD len 0 datamatch", vm, base + 0x300, 0, dm, 1, e1);
	IOEVENTFD("IOEVENTFD len 3", vm, base + 0x300, 3, 0, 0, e1);
	IOEVENTFD("IOEVENTFD len 16", vm, base + 0x300, 16, 0, 0, e1);
	IOEVENTFD("IOEVENTFD unknown flag", vm, base + 0x300, 4, 1 << 5, 0, e1);
	IOEVENTFD("IOEVENTFD fast_mmio flag", vm, base + 0x300, 4, 1 << 4, 0, e1);
	IOEVENTFD("IOEVENTFD wrapping", vm, -4ULL, 8, 0, 0, e1);
	IOEVENTFD("IOEVENTFD top of space", vm, -8ULL, 8, 0, 0, e1);
	IOEVENTFD("IOEVENTFD fd -1", vm, base + 0x400, 4, 0, 0, -1);
	IOEVENTFD("IOEVENTFD fd not an eventfd", vm, base + 0x400, 4, 0, 0, kvm);
	IOEVENTFD("IOEVENTFD len 3 fd -1", vm, base + 0x400, 3, 0, 0, -1);
	IOEVENTFD("IOEVENTFD pio", vm, 0x3f8, 1, KVM_IOEVENTFD_FLAG_PIO, 0, e1);
	IOEVENTFD("IOEVENTFD pio again", vm, 0x3f8, 1, KVM_IOEVENTFD_FLAG_PIO, 0, e1);
	IOEVENTFD("IOEVENTFD mmio at the pio addr", vm, 0x3f8, 1, 0, 0, e1);
	IOEVENTFD("IOEVENTFD virtio-ccw", vm, 0x3f8, 1, KVM_IOEVENTFD_FLAG_VIRTIO_CCW_NOTIFY, 0, e1);
	IOEVENTFD("IOEVENTFD deassign unknown", vm, base + 0x800, 4, de, 0, e1);
	IOEVENTFD("IOEVENTFD deassign other eventfd", vm, base, 4, de, 0, e2);
	IOEVENTFD("IOEVENTFD deassign other len", vm, base, 8, de, 0, e1);
	IOEVENTFD("IOEVENTFD deassign with datamatch", vm, base, 4, de | dm, 0, e1);
	IOEVENTFD("IOEVENTFD deassign fd -1", vm, base, 4, de, 0, -1);
	IOEVENTFD("IOEVENTFD deassign odd len, unknown", vm, base, 3, de | (1 << 9), 0, e1);
	IOEVENTFD("IOEVENTFD deassign", vm, base, 4, de, 0, e1);
	IOEVENTFD("IOEVENTFD deassign again", vm, base, 4, de, 0, e1);
	IOEVENTFD("IOEVENTFD deassign datamatch 2", vm, base + 0x100, 8, de | dm, 2, e1);
	IOEVENTFD("IOEVENTFD datamatch 2 after deassign", vm, base + 0x100, 8, dm, 2, e2);
	IOEVENTFD("IOEVENTFD deassign len 0 (wildcard, datamatch ignored)", vm, base + 0x200, 0, de, 5, e1);
	IOEVENTFD("IOEVENTFD deassign pio", vm, 0x3f8, 1, de | KVM_IOEVENTFD_FLAG_PIO, 0, e1);
	IOEVENTFD("IOEVENTFD mmio len 4 reassigned", vm, base, 4, 0, 0, e2);
	step("IOEVENTFD bad pointer", ioctl(vm, KVM_IOEVENTFD, (void *)8), 0);
	/* The VM keeps its references: closing ours is fine. */
	close(e1);
	close(e2);
}

static int irqfd(int vm, int fd, uint32_t gsi, uint32_t flags, int resamplefd)
{
	struct kvm_irqfd a;

	memset(&a, 0, sizeof(a));
	a.fd = fd;
	a.gsi = gsi;
	a.flags = flags;
	a.resamplefd = resamplefd;
	return ioctl(vm, KVM_IRQFD, &a);
}

#define IRQFD(what, vm, fd, gsi, flags, rfd) step(what, irqfd(vm, fd, gsi, flags, rfd), 0)

/*
 * KVM_IRQFD: registration rules. arm64 refuses every assignment with
 * EAGAIN until a vGIC is initialized (none is here); riscv64 accepts them
 * without an in-kernel irqchip. Nothing is signalled: what a signal does
 * (drain the counter, inject) is not compared.
 */
static void irqfds(int vm, int kvm)
{
	const uint32_t de = KVM_IRQFD_FLAG_DEASSIGN, rs = KVM_IRQFD_FLAG_RESAMPLE;
	int e[8], vm2, i;

	for (i = 0; i < 8; i++) {
		e[i] = eventfd(0, EFD_CLOEXEC);
		if (e[i] < 0) {
			printf("eventfd: -E%d\n", errno);
			return;
		}
	}
	IRQFD("IRQFD flag bit 2", vm, e[0], 5, 1 << 2, 0);
	IRQFD("IRQFD flag bit 31, fd -1", vm, -1, 5, 1u << 31, 0);
	IRQFD("IRQFD deassign flag bit 2", vm, e[0], 5, de | (1 << 2), 0);
	IRQFD("IRQFD deassign fd -1", vm, -1, 5, de, 0);
	IRQFD("IRQFD deassign not an eventfd", vm, kvm, 5, de, 0);
	IRQFD("IRQFD deassign unknown", vm, e[0], 5, de, 0);
	IRQFD("IRQFD assign fd -1", vm, -1, 5, 0, 0);
	IRQFD("IRQFD assign fd 1000000", vm, 1000000, 5, 0, 0);
	IRQFD("IRQFD assign not an eventfd", vm, kvm, 5, 0, 0);
	IRQFD("IRQFD assign", vm, e[0], 5, 0, 0);
	IRQFD("IRQFD assign again, same gsi", vm, e[0], 5, 0, 0);
	IRQFD("IRQFD assign again, other gsi", vm, e[0], 6, 0, 0);
	IRQFD("IRQFD resample, resamplefd -1", vm, e[1], 6, rs, -1);
	IRQFD("IRQFD resample, resamplefd not an eventfd", vm, e[1], 6, rs, kvm);
	IRQFD("IRQFD resample, fd -1 and resamplefd -1", vm, -1, 6, rs, -1);
	IRQFD("IRQFD resample, fd not an eventfd, resamplefd -1", vm, kvm, 6, rs, -1);
	IRQFD("IRQFD resample, eventfd taken, resamplefd -1", vm, e[0], 6, rs, -1);
	IRQFD("IRQFD resample, eventfd taken", vm, e[0], 6, rs, e[2]);
	IRQFD("IRQFD resample", vm, e[1], 6, rs, e[2]);
	IRQFD("IRQFD resample, shared resamplefd", vm, e[3], 6, rs, e[2]);
	IRQFD("IRQFD resample, own eventfd as resamplefd", vm, e[4], 7, rs, e[4]);
	IRQFD("IRQFD assign a resamplefd", vm, e[2], 8, 0, 0);
	IRQFD("IRQFD assign gsi ~0", vm, e[5], 0xffffffff, 0, 0);
	IRQFD("IRQFD no resample flag, resamplefd -1", vm, e[6], 9, 0, -1);
	vm2 = IOCTL_FD("IRQFD: second VM", kvm, KVM_CREATE_VM, 0);
	if (vm2 >= 0) {
		IRQFD("IRQFD second VM, eventfd of the first", vm2, e[0], 5, 0, 0);
		IRQFD("IRQFD second VM, resamplefd of the first", vm2, e[7], 5, rs, e[2]);
		IRQFD("IRQFD second VM deassign, eventfd of the first", vm2, e[0], 5, de, 0);
		close(vm2);
	}
	IRQFD("IRQFD after the second VM, its eventfd", vm, e[7], 10, 0, 0);
	IRQFD("IRQFD deassign other gsi", vm, e[0], 6, de, 0);
	IRQFD("IRQFD still assigned", vm, e[0], 11, 0, 0);
	IRQFD("IRQFD deassign", vm, e[0], 5, de, 0);
	IRQFD("IRQFD deassign again", vm, e[0], 5, de, 0);
	IRQFD("IRQFD assign after deassign", vm, e[0], 11, 0, 0);
	IRQFD("IRQFD deassign resample (flag and resamplefd ignored)", vm, e[1], 6, de | rs, -1);
	IRQFD("IRQFD resample again after deassign", vm, e[1], 6, rs, e[2]);
	IRQFD("IRQFD deassign gsi ~0", vm, e[5], 0xffffffff, de, 0);
	step("IRQFD bad pointer", ioctl(vm, KVM_IRQFD, (void *)8), 0);
	/* The VM keeps its references: closing ours is fine. */
	for (i = 0; i < 8; i++)
		close(e[i]);
	e[0] = eventfd(0, EFD_CLOEXEC);
	IRQFD("IRQFD new eventfd after closing the others", vm, e[0], 5, 0, 0);
	close(e[0]);
}

/*
 * KVM_CREATE_DEVICE on a VM of its own (upstream creates real devices for
 * the types it has, e.g. the arm64 vGIC, which would change the main VM).
 */
static void devices(int kvm)
{
	struct kvm_create_device cd;
	struct kvm_device_attr attr;
	char what[96];
	void *ro;
	uint32_t t;
	int vm;

	vm = IOCTL_FD("CREATE_DEVICE: VM", kvm, KVM_CREATE_VM, 0);
	if (vm < 0)
		return;
	for (t = 0; t <= KVM_DEV_TYPE_MAX + 1; t++) {
		memset(&cd, 0, sizeof(cd));
		cd.type = t;
		cd.flags = KVM_CREATE_DEVICE_TEST;
		cd.fd = 0xdead;
		snprintf(what, sizeof(what), "CREATE_DEVICE(type %u, TEST)", t);
		if (IOCTL(what, vm, KVM_CREATE_DEVICE, &cd) == 0)
			printf("# %s fd field: %#x\n", what, cd.fd);
	}
	for (t = 0; t <= KVM_DEV_TYPE_MAX + 1; t++) {
		memset(&cd, 0, sizeof(cd));
		cd.type = t;
		snprintf(what, sizeof(what), "CREATE_DEVICE(type %u)", t);
		if (IOCTL(what, vm, KVM_CREATE_DEVICE, &cd) == 0) {
			/* Informational: device fds of types kvm_rs lacks. */
			memset(&attr, 0, sizeof(attr));
			attr.group = 0xffff;
			printf("# type %u device HAS_DEVICE_ATTR(group 0xffff): %d errno %d\n", t,
			       ioctl(cd.fd, KVM_HAS_DEVICE_ATTR, &attr), errno);
			printf("# type %u device unknown ioctl: %d errno %d\n", t,
			       ioctl(cd.fd, _IO(KVMIO, 0xff), 0), errno);
			close(cd.fd);
		}
	}
	memset(&cd, 0, sizeof(cd));
	cd.type = 0xffffffff;
	IOCTL("CREATE_DEVICE(type ~0)", vm, KVM_CREATE_DEVICE, &cd);
	cd.flags = KVM_CREATE_DEVICE_TEST;
	IOCTL("CREATE_DEVICE(type ~0, TEST)", vm, KVM_CREATE_DEVICE, &cd);
	cd.type = 0;
	cd.flags = 2;
	IOCTL("CREATE_DEVICE(type 0, flags 2)", vm, KVM_CREATE_DEVICE, &cd);
	cd.flags = 0xffffffff;
	IOCTL("CREATE_DEVICE(type 0, flags ~0)", vm, KVM_CREATE_DEVICE, &cd);
	IOCTL("CREATE_DEVICE bad pointer", vm, KVM_CREATE_DEVICE, (void *)8);
	/* TEST writes the argument back: a read-only one is EFAULT for a known type. */
	for (t = 0; t < KVM_DEV_TYPE_MAX; t++) {
		long page = sysconf(_SC_PAGESIZE);
		struct kvm_create_device *p;

		ro = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (ro == MAP_FAILED)
			break;
		p = ro;
		p->type = t;
		p->flags = KVM_CREATE_DEVICE_TEST;
		mprotect(ro, page, PROT_READ);
		snprintf(what, sizeof(what), "CREATE_DEVICE(type %u, TEST) read-only argument", t);
		IOCTL(what, vm, KVM_CREATE_DEVICE, p);
		munmap(ro, page);
	}
	close(vm);
}

static int dev_attr(int fd, unsigned long req, uint32_t group, uint64_t a, void *addr)
{
	struct kvm_device_attr attr;

	memset(&attr, 0, sizeof(attr));
	attr.group = group;
	attr.attr = a;
	attr.addr = (uint64_t)(uintptr_t)addr;
	return ioctl(fd, req, &attr);
}

/* KVM_{SET,GET,HAS}_DEVICE_ATTR on a VM or vCPU fd, groups 0..3, attr 0..1. */
static void fd_attrs(const char *where, int fd)
{
	static const struct { const char *name; unsigned long req; } ops[] = {
		{ "SET", KVM_SET_DEVICE_ATTR },
		{ "GET", KVM_GET_DEVICE_ATTR },
		{ "HAS", KVM_HAS_DEVICE_ATTR },
	};
	uint64_t val[8];
	char what[96];
	unsigned int o, g, a;

	for (o = 0; o < 3; o++) {
		for (g = 0; g <= 3; g++) {
			for (a = 0; a <= 1; a++) {
				/* Zeroes: an invalid IRQ, an unaligned-free IPA 0, an empty filter. */
				memset(val, 0, sizeof(val));
				snprintf(what, sizeof(what), "%s %s_DEVICE_ATTR(group %u, attr %u)", where,
					 ops[o].name, g, a);
				step(what, dev_attr(fd, ops[o].req, g, a, val), 0);
			}
		}
		snprintf(what, sizeof(what), "%s %s_DEVICE_ATTR bad pointer", where, ops[o].name);
		IOCTL(what, fd, ops[o].req, (void *)8);
	}
}

static void mp_states(const char *where, int vcpu)
{
	struct kvm_mp_state mp;
	char what[96];
	unsigned int s;

	mp.mp_state = 0xdead;
	snprintf(what, sizeof(what), "%s GET_MP_STATE", where);
	IOCTL(what, vcpu, KVM_GET_MP_STATE, &mp);
	printf("%s mp_state: %u\n", where, mp.mp_state);
	for (s = 0; s <= 11; s++) {
		mp.mp_state = s;
		snprintf(what, sizeof(what), "%s SET_MP_STATE(%u)", where, s);
		if (IOCTL(what, vcpu, KVM_SET_MP_STATE, &mp) == 0) {
			mp.mp_state = 0xdead;
			ioctl(vcpu, KVM_GET_MP_STATE, &mp);
			printf("%s mp_state after SET(%u): %u\n", where, s, mp.mp_state);
		}
	}
	mp.mp_state = 0xffffffff;
	snprintf(what, sizeof(what), "%s SET_MP_STATE(~0)", where);
	IOCTL(what, vcpu, KVM_SET_MP_STATE, &mp);
	snprintf(what, sizeof(what), "%s GET_MP_STATE bad pointer", where);
	IOCTL(what, vcpu, KVM_GET_MP_STATE, (void *)8);
	snprintf(what, sizeof(what), "%s SET_MP_STATE bad pointer", where);
	IOCTL(what, vcpu, KVM_SET_MP_STATE, (void *)8);
	mp.mp_state = KVM_MP_STATE_RUNNABLE;
	snprintf(what, sizeof(what), "%s SET_MP_STATE(RUNNABLE)", where);
	IOCTL(what, vcpu, KVM_SET_MP_STATE, &mp);
}

static void guest_debug(int vcpu)
{
	struct kvm_guest_debug dbg;
	static const struct { const char *name; uint32_t control; } cases[] = {
		{ "0", 0 },
		{ "ENABLE", KVM_GUESTDBG_ENABLE },
		{ "ENABLE|SINGLESTEP", KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP },
		{ "SINGLESTEP only", KVM_GUESTDBG_SINGLESTEP },
		{ "ENABLE|bit 2", KVM_GUESTDBG_ENABLE | (1 << 2) },
		{ "ENABLE|bit 16", KVM_GUESTDBG_ENABLE | (1 << 16) },
		{ "ENABLE|bit 17", KVM_GUESTDBG_ENABLE | (1 << 17) },
		{ "ENABLE|bit 31", KVM_GUESTDBG_ENABLE | (1u << 31) },
		{ "~0", 0xffffffff },
		{ "0 again", 0 },
	};
	char what[96];
	unsigned int i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(&dbg, 0, sizeof(dbg));
		dbg.control = cases[i].control;
		snprintf(what, sizeof(what), "SET_GUEST_DEBUG(%s)", cases[i].name);
		IOCTL(what, vcpu, KVM_SET_GUEST_DEBUG, &dbg);
	}
	IOCTL("SET_GUEST_DEBUG bad pointer", vcpu, KVM_SET_GUEST_DEBUG, (void *)8);
}

static void signal_mask(int vcpu)
{
	struct { struct kvm_signal_mask m; uint8_t set[8]; } sm;

	memset(&sm, 0, sizeof(sm));
	sm.m.len = 4;
	IOCTL("SET_SIGNAL_MASK(len 4)", vcpu, KVM_SET_SIGNAL_MASK, &sm);
	sm.m.len = 128;
	IOCTL("SET_SIGNAL_MASK(len 128)", vcpu, KVM_SET_SIGNAL_MASK, &sm);
	sm.m.len = 8;
	IOCTL("SET_SIGNAL_MASK(len 8)", vcpu, KVM_SET_SIGNAL_MASK, &sm);
	IOCTL("SET_SIGNAL_MASK(NULL)", vcpu, KVM_SET_SIGNAL_MASK, NULL);
	IOCTL("SET_SIGNAL_MASK bad pointer", vcpu, KVM_SET_SIGNAL_MASK, (void *)8);
}

/*
 * A signal blocked in the thread but pending, and a vCPU signal mask that
 * unblocks it: KVM_RUN applies the vCPU's mask, sees the signal and returns
 * EINTR with KVM_EXIT_INTR before entering the guest, then restores the
 * thread's mask (the signal stays pending and blocked, and is consumed).
 */
static void run_with_pending_signal(int vcpu, long mmap_size)
{
	struct { struct kvm_signal_mask m; uint8_t set[8]; } sm;
	struct timespec zero = { 0, 0 };
	sigset_t usr1, old, now;
	struct kvm_run *run;

	run = mmap(NULL, mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	if (run == MAP_FAILED)
		return;
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	sigprocmask(SIG_BLOCK, &usr1, &old);
	raise(SIGUSR1);
	memset(&sm, 0, sizeof(sm));
	sm.m.len = 8;
	IOCTL("SET_SIGNAL_MASK(empty)", vcpu, KVM_SET_SIGNAL_MASK, &sm);
	run->immediate_exit = 0;
	run->exit_reason = 0xdead;
	IOCTL("vcpu KVM_RUN(signal pending, unblocked by the vCPU mask)", vcpu, KVM_RUN, 0);
	printf("exit_reason after the signal: %u\n", run->exit_reason);
	sigprocmask(SIG_BLOCK, NULL, &now);
	printf("SIGUSR1 still blocked after KVM_RUN: %d\n", sigismember(&now, SIGUSR1));
	printf("SIGUSR1 consumed: %d\n", sigtimedwait(&usr1, NULL, &zero) == SIGUSR1);
	IOCTL("SET_SIGNAL_MASK(NULL) after", vcpu, KVM_SET_SIGNAL_MASK, NULL);
	sigprocmask(SIG_SETMASK, &old, NULL);
	munmap(run, mmap_size);
}

#ifdef __aarch64__
/* arm64 register ids. */
#define CORE(off, size) (KVM_REG_ARM64 | (size) | KVM_REG_ARM_CORE | (off))
#define CORE_OFF(field) (offsetof(struct kvm_regs, field) / sizeof(uint32_t))
#define SYSREG(op0, op1, crn, crm, op2) ARM64_SYS_REG(op0, op1, crn, crm, op2)

static const char *feature_names[] = {
	"POWER_OFF", "EL1_32BIT", "PSCI_0_2", "PMU_V3", "SVE", "PTRAUTH_ADDRESS",
	"PTRAUTH_GENERIC", "HAS_EL2", "HAS_EL2_E2H0", "PMU_V3_STRICT",
};

static int one_reg(int vcpu, unsigned long req, uint64_t id, void *addr)
{
	struct kvm_one_reg reg = { .id = id, .addr = (uint64_t)(uintptr_t)addr };

	return ioctl(vcpu, req, &reg);
}

#define GET(what, vcpu, id, addr) step(what, one_reg(vcpu, KVM_GET_ONE_REG, id, addr), 0)
#define SET(what, vcpu, id, addr) step(what, one_reg(vcpu, KVM_SET_ONE_REG, id, addr), 0)

/* Gets a 64-bit register and prints its value under "<what> value". */
static void get64(const char *what, int vcpu, uint64_t id)
{
	uint64_t v = 0xdeadbeef;

	if (GET(what, vcpu, id, &v) == 0)
		printf("%s value: %#llx\n", what, (unsigned long long)v);
}

/* Whether a register's value depends on time (the counters). */
static int varies(uint64_t id)
{
	return id == SYSREG(3, 3, 14, 0, 1) || id == KVM_REG_ARM_TIMER_CNT;
}

/*
 * KVM_GET_REG_LIST, then every listed register: its value, and a write of
 * the same value back (as the upstream get-reg-list selftest does).
 */
static void reg_list_all(const char *where, int vcpu, int values)
{
	struct kvm_reg_list small = { .n = 0 }, *list;
	char what[160];
	uint64_t i, n;

	snprintf(what, sizeof(what), "%s GET_REG_LIST(n 0)", where);
	IOCTL(what, vcpu, KVM_GET_REG_LIST, &small);
	printf("%s reg list n: %llu\n", where, (unsigned long long)small.n);
	snprintf(what, sizeof(what), "%s GET_REG_LIST(bad pointer)", where);
	IOCTL(what, vcpu, KVM_GET_REG_LIST, (void *)8);
	n = small.n;
	if (n > 4096)
		return;
	list = calloc(1, sizeof(*list) + (n + 2) * sizeof(uint64_t));
	if (!list)
		return;
	list->n = n - 1;
	snprintf(what, sizeof(what), "%s GET_REG_LIST(n - 1)", where);
	IOCTL(what, vcpu, KVM_GET_REG_LIST, list);
	printf("%s reg list n after n - 1: %llu, reg[0] %#llx\n", where,
	       (unsigned long long)list->n, (unsigned long long)list->reg[0]);
	list->n = n + 2;
	snprintf(what, sizeof(what), "%s GET_REG_LIST(n + 2)", where);
	IOCTL(what, vcpu, KVM_GET_REG_LIST, list);
	printf("%s reg list n after n + 2: %llu\n", where, (unsigned long long)list->n);
	for (i = 0; i < n; i++) {
		uint64_t id = list->reg[i], v[32];
		size_t size = 1ULL << ((id & KVM_REG_SIZE_MASK) >> KVM_REG_SIZE_SHIFT);

		printf("%s reg[%llu]: %#llx\n", where, (unsigned long long)i, (unsigned long long)id);
		if (size > sizeof(v) || !values)
			continue;
		memset(v, 0, sizeof(v));
		snprintf(what, sizeof(what), "%s GET %#llx", where, (unsigned long long)id);
		if (GET(what, vcpu, id, v) != 0)
			continue;
		if (varies(id))
			printf("%s value: (a counter)\n", what);
		else if (size == 16)
			printf("%s value: %#llx %#llx\n", what, (unsigned long long)v[0],
			       (unsigned long long)v[1]);
		else
			printf("%s value: %#llx\n", what, (unsigned long long)v[0]);
		snprintf(what, sizeof(what), "%s SET same %#llx", where, (unsigned long long)id);
		SET(what, vcpu, id, v);
	}
	free(list);
}

/* KVM_REG_ARM_CORE: offsets, sizes, PSTATE modes and round trips. */
static void core_regs(int vcpu)
{
	uint64_t v[4], nr = sizeof(struct kvm_regs) / sizeof(uint32_t);
	static const struct { const char *name; uint64_t mode; } modes[] = {
		{ "EL0t", 0x0 }, { "EL1t", 0x4 }, { "EL1h", 0x5 }, { "EL2t", 0x8 },
		{ "EL2h", 0x9 }, { "EL3h", 0xd }, { "mode 0x3", 0x3 },
		{ "AArch32 USR", 0x10 }, { "AArch32 FIQ", 0x11 }, { "AArch32 SVC", 0x13 },
		{ "AArch32 SYS", 0x1f }, { "AArch32 0x1a", 0x1a }, { "AArch32 0x15", 0x15 },
	};
	char what[128];
	unsigned int i;

	printf("kvm_regs words: %llu\n", (unsigned long long)nr);
	get64("GET core pstate after init", vcpu, CORE(CORE_OFF(regs.pstate), KVM_REG_SIZE_U64));
	get64("GET core pc after init", vcpu, CORE(CORE_OFF(regs.pc), KVM_REG_SIZE_U64));
	get64("GET core x0 U32", vcpu, CORE(CORE_OFF(regs.regs[0]), KVM_REG_SIZE_U32));
	get64("GET core x0 U128", vcpu, CORE(CORE_OFF(regs.regs[0]), KVM_REG_SIZE_U128));
	get64("GET core x0 U2048", vcpu, CORE(CORE_OFF(regs.regs[0]), KVM_REG_SIZE_U2048));
	get64("GET core odd offset 1", vcpu, CORE(1, KVM_REG_SIZE_U64));
	get64("GET core odd offset 1 U32", vcpu, CORE(1, KVM_REG_SIZE_U32));
	get64("GET core last word", vcpu, CORE(nr - 1, KVM_REG_SIZE_U32));
	get64("GET core last word - 1 U64", vcpu, CORE(nr - 2, KVM_REG_SIZE_U64));
	get64("GET core past the end", vcpu, CORE(nr, KVM_REG_SIZE_U64));
	get64("GET core offset 0xffff", vcpu, CORE(0xffff, KVM_REG_SIZE_U64));
	get64("GET core padding before fp_regs", vcpu, CORE(CORE_OFF(fp_regs) - 2, KVM_REG_SIZE_U64));
	get64("GET core vregs[0] U64", vcpu, CORE(CORE_OFF(fp_regs.vregs[0]), KVM_REG_SIZE_U64));
	get64("GET core vregs[0] + 2 U64", vcpu, CORE(CORE_OFF(fp_regs.vregs[0]) + 2, KVM_REG_SIZE_U64));
	get64("GET core fpsr U64", vcpu, CORE(CORE_OFF(fp_regs.fpsr), KVM_REG_SIZE_U64));
	get64("GET core fpcr U32", vcpu, CORE(CORE_OFF(fp_regs.fpcr), KVM_REG_SIZE_U32));
	get64("GET core spsr[4]", vcpu, CORE(CORE_OFF(spsr[4]), KVM_REG_SIZE_U64));
	get64("GET core sp_el1", vcpu, CORE(CORE_OFF(sp_el1), KVM_REG_SIZE_U64));
	get64("GET core stray bit 28", vcpu, CORE(CORE_OFF(regs.pc), KVM_REG_SIZE_U64) | (1ULL << 28));
	get64("GET core stray bit 32", vcpu, CORE(CORE_OFF(regs.pc), KVM_REG_SIZE_U64) | (1ULL << 32));
	GET("GET core x0 bad buffer", vcpu, CORE(0, KVM_REG_SIZE_U64), (void *)8);
	SET("SET core x0 bad buffer", vcpu, CORE(0, KVM_REG_SIZE_U64), (void *)8);
	SET("SET core past the end bad buffer", vcpu, CORE(nr, KVM_REG_SIZE_U64), (void *)8);
	SET("SET core x0 U32 bad buffer", vcpu, CORE(0, KVM_REG_SIZE_U32), (void *)8);
	SET("SET core x0 U2048", vcpu, CORE(0, KVM_REG_SIZE_U2048), v);

	v[0] = 0x1122334455667788ULL;
	SET("SET core x5", vcpu, CORE(CORE_OFF(regs.regs[5]), KVM_REG_SIZE_U64), v);
	get64("GET core x5", vcpu, CORE(CORE_OFF(regs.regs[5]), KVM_REG_SIZE_U64));
	v[0] = 0xfffffffffffffff0ULL;
	SET("SET core pc", vcpu, CORE(CORE_OFF(regs.pc), KVM_REG_SIZE_U64), v);
	v[0] = 0x0123456789abcdefULL;
	v[1] = 0xfedcba9876543210ULL;
	SET("SET core vregs[3]", vcpu, CORE(CORE_OFF(fp_regs.vregs[3]), KVM_REG_SIZE_U128), v);
	v[0] = v[1] = 0;
	if (GET("GET core vregs[3]", vcpu, CORE(CORE_OFF(fp_regs.vregs[3]), KVM_REG_SIZE_U128), v) == 0)
		printf("GET core vregs[3] value: %#llx %#llx\n", (unsigned long long)v[0],
		       (unsigned long long)v[1]);
	v[0] = 0xffffffffffffffffULL;
	SET("SET core fpsr", vcpu, CORE(CORE_OFF(fp_regs.fpsr), KVM_REG_SIZE_U32), v);
	get64("GET core fpsr", vcpu, CORE(CORE_OFF(fp_regs.fpsr), KVM_REG_SIZE_U32));
	v[0] = 0xaaaa;
	SET("SET core spsr[2]", vcpu, CORE(CORE_OFF(spsr[2]), KVM_REG_SIZE_U64), v);
	SET("SET core sp_el1", vcpu, CORE(CORE_OFF(sp_el1), KVM_REG_SIZE_U64), v);
	SET("SET core elr_el1", vcpu, CORE(CORE_OFF(elr_el1), KVM_REG_SIZE_U64), v);
	SET("SET core spsr[0]", vcpu, CORE(CORE_OFF(spsr[0]), KVM_REG_SIZE_U64), v);
	get64("GET sysreg SP_EL1 (not a sysreg id)", vcpu, SYSREG(3, 4, 4, 1, 0));
	get64("GET sysreg SPSR_EL1 (no storage)", vcpu, SYSREG(3, 0, 4, 0, 0));
	for (i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		snprintf(what, sizeof(what), "SET core pstate %s", modes[i].name);
		v[0] = modes[i].mode | 0x3c0;
		SET(what, vcpu, CORE(CORE_OFF(regs.pstate), KVM_REG_SIZE_U64), v);
		snprintf(what, sizeof(what), "GET core pstate after %s", modes[i].name);
		get64(what, vcpu, CORE(CORE_OFF(regs.pstate), KVM_REG_SIZE_U64));
	}
	/* AArch32 USR narrows x0-x14 and pc. */
	get64("GET core x5 after AArch32", vcpu, CORE(CORE_OFF(regs.regs[5]), KVM_REG_SIZE_U64));
	get64("GET core pc after AArch32", vcpu, CORE(CORE_OFF(regs.pc), KVM_REG_SIZE_U64));
	v[0] = 0x1122334455667788ULL;
	SET("SET core x20 in AArch32", vcpu, CORE(CORE_OFF(regs.regs[20]), KVM_REG_SIZE_U64), v);
	get64("GET core x20 in AArch32", vcpu, CORE(CORE_OFF(regs.regs[20]), KVM_REG_SIZE_U64));
	SET("SET core x3 in AArch32", vcpu, CORE(CORE_OFF(regs.regs[3]), KVM_REG_SIZE_U64), v);
	get64("GET core x3 in AArch32", vcpu, CORE(CORE_OFF(regs.regs[3]), KVM_REG_SIZE_U64));
	v[0] = 0x3c5;
	SET("SET core pstate EL1h again", vcpu, CORE(CORE_OFF(regs.pstate), KVM_REG_SIZE_U64), v);
}

/* System, firmware and demux registers: sizes, ids, write rules. */
static void other_regs(const char *p, int vcpu)
{
	uint64_t v, saved;
	char what[160], name[160];
	unsigned int i;

#define P(s) (snprintf(name, sizeof(name), "%s %s", p, s), name)

	get64(P("GET sysreg U32 (SCTLR_EL1)"), vcpu, (SYSREG(3, 0, 1, 0, 0) & ~KVM_REG_SIZE_MASK) | KVM_REG_SIZE_U32);
	get64(P("GET sysreg stray bit 20"), vcpu, SYSREG(3, 0, 1, 0, 0) | (1ULL << 20));
	get64(P("GET sysreg unallocated ID (3,0,0,3,3)"), vcpu, SYSREG(3, 0, 0, 3, 3));
	get64(P("GET sysreg op0 0"), vcpu, SYSREG(0, 0, 1, 0, 0));
	get64(P("GET sysreg ZCR_EL1 (no SVE)"), vcpu, SYSREG(3, 0, 1, 2, 0));
	get64(P("GET sysreg APIAKEYLO_EL1 (no ptrauth)"), vcpu, SYSREG(3, 0, 2, 1, 0));
	get64(P("GET sysreg PMCR_EL0 (no PMU)"), vcpu, SYSREG(3, 3, 9, 12, 0));
	get64(P("GET sysreg HCR_EL2 (no EL2)"), vcpu, SYSREG(3, 4, 1, 1, 0));
	get64(P("GET sysreg MDRAR_EL1 (trap only)"), vcpu, SYSREG(2, 0, 1, 0, 0));
	get64(P("GET sysreg CCSIDR_EL1 (trap only)"), vcpu, SYSREG(3, 1, 0, 0, 0));
	get64(P("GET sysreg CNTV_TVAL_EL0 (trap only)"), vcpu, SYSREG(3, 3, 14, 3, 0));
	SET(P("SET sysreg unknown bad buffer"), vcpu, SYSREG(3, 7, 15, 15, 7), (void *)8);
	SET(P("SET not-arm64 bad buffer"), vcpu, 0x1234, (void *)8);
	v = 0x12345678;
	SET(P("SET sysreg TPIDR_EL1"), vcpu, SYSREG(3, 0, 13, 0, 4), &v);
	get64(P("GET sysreg TPIDR_EL1"), vcpu, SYSREG(3, 0, 13, 0, 4));
	v = 0xf0f0;
	SET(P("SET sysreg CNTV_CTL_EL0 with ISTATUS"), vcpu, KVM_REG_ARM_TIMER_CTL, &v);
	get64(P("GET sysreg CNTV_CTL_EL0"), vcpu, KVM_REG_ARM_TIMER_CTL);
	v = 0x5555;
	SET(P("SET sysreg CNTV_CVAL_EL0"), vcpu, KVM_REG_ARM_TIMER_CVAL, &v);
	get64(P("GET sysreg CNTV_CVAL_EL0"), vcpu, KVM_REG_ARM_TIMER_CVAL);
	/* That encoding is CNTVCT_EL0's id: a counter. */
	v = 0;
	GET(P("GET sysreg CNTV_CVAL_EL0 by its encoding (CNTVCT)"), vcpu, SYSREG(3, 3, 14, 3, 2), &v);
	printf("%s CNTVCT_EL0 nonzero: %d\n", p, v != 0);
	v = 1000;
	SET(P("SET sysreg CNTVCT_EL0"), vcpu, KVM_REG_ARM_TIMER_CNT, &v);
	if (one_reg(vcpu, KVM_GET_ONE_REG, KVM_REG_ARM_TIMER_CNT, &v) == 0)
		printf("%s CNTVCT_EL0 after SET(1000) within 1000..1000+2^32: %d\n", p,
		       v >= 1000 && v < 1000 + (1ULL << 32));
	v = 0x3;
	SET(P("SET sysreg OSLSR_EL1 OSLK"), vcpu, SYSREG(2, 0, 1, 1, 4), &v);
	get64(P("GET sysreg OSLSR_EL1"), vcpu, SYSREG(2, 0, 1, 1, 4));
	v = 0xa;
	SET(P("SET sysreg OSLSR_EL1 other bits"), vcpu, SYSREG(2, 0, 1, 1, 4), &v);
	v = 0x1234;
	SET(P("SET sysreg DBGBVR5_EL1"), vcpu, SYSREG(2, 0, 0, 5, 4), &v);
	get64(P("GET sysreg DBGBVR5_EL1"), vcpu, SYSREG(2, 0, 0, 5, 4));
	get64(P("GET sysreg MPIDR_EL1"), vcpu, SYSREG(3, 0, 0, 0, 5));
	v = 0x80000203;
	SET(P("SET sysreg MPIDR_EL1"), vcpu, SYSREG(3, 0, 0, 0, 5), &v);
	get64(P("GET sysreg MPIDR_EL1 after SET"), vcpu, SYSREG(3, 0, 0, 0, 5));
	if (one_reg(vcpu, KVM_GET_ONE_REG, SYSREG(3, 0, 0, 0, 0), &saved) == 0) {
		v = saved ^ 1;
		SET(P("SET sysreg MIDR_EL1 other"), vcpu, SYSREG(3, 0, 0, 0, 0), &v);
		SET(P("SET sysreg MIDR_EL1 same"), vcpu, SYSREG(3, 0, 0, 0, 0), &saved);
	}
	/* ID registers: a lower feature is fine, a higher one is not. */
	if (one_reg(vcpu, KVM_GET_ONE_REG, SYSREG(3, 0, 0, 6, 0), &saved) == 0) {
		v = saved | (0xfULL << 60);
		SET(P("SET ID_AA64ISAR0_EL1 RNDR 0xf"), vcpu, SYSREG(3, 0, 0, 6, 0), &v);
		v = saved & ~(0xfULL << 4);
		SET(P("SET ID_AA64ISAR0_EL1 AES 0"), vcpu, SYSREG(3, 0, 0, 6, 0), &v);
		get64(P("GET ID_AA64ISAR0_EL1 after"), vcpu, SYSREG(3, 0, 0, 6, 0));
		SET(P("SET ID_AA64ISAR0_EL1 back"), vcpu, SYSREG(3, 0, 0, 6, 0), &saved);
		v = saved | 0xf;
		SET(P("SET ID_AA64ISAR0_EL1 RES0 bits"), vcpu, SYSREG(3, 0, 0, 6, 0), &v);
	}
	if (one_reg(vcpu, KVM_GET_ONE_REG, SYSREG(3, 0, 0, 4, 0), &saved) == 0) {
		v = saved & ~(0xfULL << 0);
		SET(P("SET ID_AA64PFR0_EL1 EL0 0"), vcpu, SYSREG(3, 0, 0, 4, 0), &v);
		v = saved | (0xfULL << 32);
		SET(P("SET ID_AA64PFR0_EL1 SVE 0xf"), vcpu, SYSREG(3, 0, 0, 4, 0), &v);
		v = (saved & ~(0xfULL << 16)) | (0xfULL << 16);
		SET(P("SET ID_AA64PFR0_EL1 FP NI"), vcpu, SYSREG(3, 0, 0, 4, 0), &v);
		get64(P("GET ID_AA64PFR0_EL1 after FP NI"), vcpu, SYSREG(3, 0, 0, 4, 0));
		SET(P("SET ID_AA64PFR0_EL1 back"), vcpu, SYSREG(3, 0, 0, 4, 0), &saved);
	}
	if (one_reg(vcpu, KVM_GET_ONE_REG, SYSREG(3, 0, 0, 5, 0), &saved) == 0) {
		v = saved & ~0xfULL;
		SET(P("SET ID_AA64DFR0_EL1 DebugVer 0"), vcpu, SYSREG(3, 0, 0, 5, 0), &v);
		v = (saved & ~(0xfULL << 8)) | (0x1ULL << 8);
		SET(P("SET ID_AA64DFR0_EL1 PMUVer 1"), vcpu, SYSREG(3, 0, 0, 5, 0), &v);
		v = (saved & ~(0xfULL << 8)) | (0xfULL << 8);
		SET(P("SET ID_AA64DFR0_EL1 PMUVer IMPDEF"), vcpu, SYSREG(3, 0, 0, 5, 0), &v);
		get64(P("GET ID_AA64DFR0_EL1 after PMUVer IMPDEF"), vcpu, SYSREG(3, 0, 0, 5, 0));
	}
	v = 1;
	SET(P("SET ID_AA64AFR0_EL1 (RAZ) 1"), vcpu, SYSREG(3, 0, 0, 5, 4), &v);
	SET(P("SET unallocated ID (3,0,0,6,7) 1"), vcpu, SYSREG(3, 0, 0, 6, 7), &v);
	v = 0;
	SET(P("SET unallocated ID (3,0,0,6,7) 0"), vcpu, SYSREG(3, 0, 0, 6, 7), &v);
	if (one_reg(vcpu, KVM_GET_ONE_REG, SYSREG(3, 3, 0, 0, 1), &saved) == 0) {
		v = saved & ~(0x3ULL << 14);
		SET(P("SET CTR_EL0 L1Ip VPIPT"), vcpu, SYSREG(3, 3, 0, 0, 1), &v);
		v = (saved & ~(0x3ULL << 14)) | (0x2ULL << 14);
		SET(P("SET CTR_EL0 L1Ip VIPT"), vcpu, SYSREG(3, 3, 0, 0, 1), &v);
		get64(P("GET CTR_EL0 after VIPT"), vcpu, SYSREG(3, 3, 0, 0, 1));
		SET(P("SET CTR_EL0 back"), vcpu, SYSREG(3, 3, 0, 0, 1), &saved);
	}
	if (one_reg(vcpu, KVM_GET_ONE_REG, SYSREG(3, 1, 0, 0, 1), &saved) == 0) {
		v = saved | (1ULL << 63);
		SET(P("SET CLIDR_EL1 RES0 bit"), vcpu, SYSREG(3, 1, 0, 0, 1), &v);
		v = 0;
		SET(P("SET CLIDR_EL1 0"), vcpu, SYSREG(3, 1, 0, 0, 1), &v);
		SET(P("SET CLIDR_EL1 back"), vcpu, SYSREG(3, 1, 0, 0, 1), &saved);
	}

	/* Firmware pseudo-registers. */
	get64(P("GET FW PSCI_VERSION"), vcpu, KVM_REG_ARM_PSCI_VERSION);
	get64(P("GET FW PSCI_VERSION U32"), vcpu, (KVM_REG_ARM_PSCI_VERSION & ~KVM_REG_SIZE_MASK) | KVM_REG_SIZE_U32);
	SET(P("SET FW PSCI_VERSION U32 bad buffer"), vcpu, (KVM_REG_ARM_PSCI_VERSION & ~KVM_REG_SIZE_MASK) | KVM_REG_SIZE_U32, (void *)8);
	SET(P("SET FW PSCI_VERSION bad buffer"), vcpu, KVM_REG_ARM_PSCI_VERSION, (void *)8);
	get64(P("GET FW 4"), vcpu, KVM_REG_ARM_FW_REG(4));
	SET(P("SET FW 4 bad buffer"), vcpu, KVM_REG_ARM_FW_REG(4), (void *)8);
	v = 4;
	SET(P("SET FW 4"), vcpu, KVM_REG_ARM_FW_REG(4), &v);
	for (i = 0; i <= 4; i++) {
		static const uint64_t versions[] = { 0, 2, 0x10000, 0x10001, 0x10003 };

		v = versions[i];
		snprintf(what, sizeof(what), "%s SET FW PSCI_VERSION %#llx", p, (unsigned long long)v);
		SET(what, vcpu, KVM_REG_ARM_PSCI_VERSION, &v);
	}
	v = 0x10004;
	SET(P("SET FW PSCI_VERSION 1.4"), vcpu, KVM_REG_ARM_PSCI_VERSION, &v);
	get64(P("GET FW PSCI_VERSION after"), vcpu, KVM_REG_ARM_PSCI_VERSION);
	for (i = 1; i <= 3; i++) {
		uint64_t id = KVM_REG_ARM_FW_REG(i), w;

		snprintf(what, sizeof(what), "%s GET FW WORKAROUND_%u", p, i);
		get64(what, vcpu, id);
		for (w = 0; w <= 4; w++) {
			v = w;
			snprintf(what, sizeof(what), "%s SET FW WORKAROUND_%u %llu", p, i, (unsigned long long)w);
			SET(what, vcpu, id, &v);
		}
		v = 0x12;
		snprintf(what, sizeof(what), "%s SET FW WORKAROUND_%u 0x12", p, i);
		SET(what, vcpu, id, &v);
		v = 0x13;
		snprintf(what, sizeof(what), "%s SET FW WORKAROUND_%u 0x13", p, i);
		SET(what, vcpu, id, &v);
		v = 0x20;
		snprintf(what, sizeof(what), "%s SET FW WORKAROUND_%u 0x20", p, i);
		SET(what, vcpu, id, &v);
	}
	for (i = 0; i <= 4; i++) {
		uint64_t id = KVM_REG_ARM_FW_FEAT_BMAP_REG(i);

		snprintf(what, sizeof(what), "%s GET FW_FEAT_BMAP %u", p, i);
		get64(what, vcpu, id);
		v = ~0ULL;
		snprintf(what, sizeof(what), "%s SET FW_FEAT_BMAP %u all", p, i);
		SET(what, vcpu, id, &v);
		v = 0;
		snprintf(what, sizeof(what), "%s SET FW_FEAT_BMAP %u 0", p, i);
		SET(what, vcpu, id, &v);
		snprintf(what, sizeof(what), "%s GET FW_FEAT_BMAP %u after 0", p, i);
		get64(what, vcpu, id);
	}
	/* CCSIDR demux. */
	get64(P("GET DEMUX CCSIDR 0 U64"), vcpu, KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_DEMUX);
	get64(P("GET DEMUX CCSIDR 14"), vcpu, KVM_REG_ARM64 | KVM_REG_SIZE_U32 | KVM_REG_ARM_DEMUX | 14);
	get64(P("GET DEMUX id 1"), vcpu, KVM_REG_ARM64 | KVM_REG_SIZE_U32 | KVM_REG_ARM_DEMUX | (1 << 8));
	get64(P("GET DEMUX stray bit 16"), vcpu, KVM_REG_ARM64 | KVM_REG_SIZE_U32 | KVM_REG_ARM_DEMUX | (1ULL << 32));
	v = 0xffffffff;
	SET(P("SET DEMUX CCSIDR 0 all ones"), vcpu, KVM_REG_ARM64 | KVM_REG_SIZE_U32 | KVM_REG_ARM_DEMUX, &v);
	v = 0x7;
	SET(P("SET DEMUX CCSIDR 0 line size 7"), vcpu, KVM_REG_ARM64 | KVM_REG_SIZE_U32 | KVM_REG_ARM_DEMUX, &v);
	get64(P("GET DEMUX CCSIDR 0"), vcpu, KVM_REG_ARM64 | KVM_REG_SIZE_U32 | KVM_REG_ARM_DEMUX);
	v = 0;
	SET(P("SET DEMUX CCSIDR 0 line size 0"), vcpu, KVM_REG_ARM64 | KVM_REG_SIZE_U32 | KVM_REG_ARM_DEMUX, &v);
	/* Other coprocessor numbers. */
	get64(P("GET coproc 0x12"), vcpu, KVM_REG_ARM64 | KVM_REG_SIZE_U64 | (0x12 << 16));
	get64(P("GET SVE VLS (no SVE)"), vcpu, KVM_REG_ARM64 | KVM_REG_SIZE_U512 | KVM_REG_ARM64_SVE | 0xffff);
	get64(P("GET SVE Z0 (no SVE)"), vcpu, KVM_REG_ARM64 | KVM_REG_SIZE_U2048 | KVM_REG_ARM64_SVE);
	get64(P("GET SVE out of range (no SVE)"), vcpu, KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM64_SVE | 0x1000);
}
#undef P

/* KVM_ARM_VCPU_INIT: features, each on a new VM (features are VM-wide). */
static void vcpu_init_features(int kvm)
{
	struct kvm_vcpu_init init;
	char what[128];
	uint64_t v;
	unsigned int f;
	int vm, a, b;

	for (f = 0; f < 12; f++) {
		vm = ioctl(kvm, KVM_CREATE_VM, 0);
		a = vm < 0 ? -1 : ioctl(vm, KVM_CREATE_VCPU, 0);
		if (a < 0)
			return;
		memset(&init, 0, sizeof(init));
		ioctl(vm, KVM_ARM_PREFERRED_TARGET, &init);
		init.features[0] = 1u << f;
		snprintf(what, sizeof(what), "VCPU_INIT feature %s", f < 10 ? feature_names[f] : "unknown");
		if (f >= 10)
			snprintf(what, sizeof(what), "VCPU_INIT feature %u", f);
		IOCTL(what, a, KVM_ARM_VCPU_INIT, &init);
		close(a);
		close(vm);
	}
	vm = ioctl(kvm, KVM_CREATE_VM, 0);
	a = vm < 0 ? -1 : ioctl(vm, KVM_CREATE_VCPU, 0);
	b = a < 0 ? -1 : ioctl(vm, KVM_CREATE_VCPU, 1);
	if (b < 0)
		return;
	memset(&init, 0, sizeof(init));
	init.target = KVM_ARM_TARGET_GENERIC_V8;
	init.features[0] = (1u << KVM_ARM_VCPU_PTRAUTH_ADDRESS);
	IOCTL("VCPU_INIT ptrauth address only", a, KVM_ARM_VCPU_INIT, &init);
	init.features[0] = (1u << KVM_ARM_VCPU_PMU_V3_STRICT);
	IOCTL("VCPU_INIT PMU_V3_STRICT alone", a, KVM_ARM_VCPU_INIT, &init);
	init.features[0] = (1u << KVM_ARM_VCPU_EL1_32BIT) | (1u << KVM_ARM_VCPU_HAS_EL2);
	IOCTL("VCPU_INIT EL1_32BIT + HAS_EL2", a, KVM_ARM_VCPU_INIT, &init);
	init.features[0] = 1u << 10;
	init.features[3] = 1;
	IOCTL("VCPU_INIT feature 10 and features[3]", a, KVM_ARM_VCPU_INIT, &init);
	init.features[3] = 0;
	init.features[0] = 1u << KVM_ARM_VCPU_PSCI_0_2;
	init.target = KVM_ARM_TARGET_CORTEX_A57;
	IOCTL("VCPU_INIT target A57", a, KVM_ARM_VCPU_INIT, &init);
	init.target = KVM_ARM_TARGET_GENERIC_V8;
	IOCTL("VCPU_INIT vcpu a PSCI_0_2", a, KVM_ARM_VCPU_INIT, &init);
	get64("GET FW PSCI_VERSION with PSCI_0_2", a, KVM_REG_ARM_PSCI_VERSION);
	v = 0;
	SET("SET FW PSCI_VERSION 0.1 with PSCI_0_2", a, KVM_REG_ARM_PSCI_VERSION, &v);
	v = 0x10000;
	SET("SET FW PSCI_VERSION 1.0 with PSCI_0_2", a, KVM_REG_ARM_PSCI_VERSION, &v);
	get64("GET FW PSCI_VERSION after 1.0", a, KVM_REG_ARM_PSCI_VERSION);
	v = 0x4242;
	SET("SET core x1 before re-init", a, CORE(CORE_OFF(regs.regs[1]), KVM_REG_SIZE_U64), &v);
	SET("SET core sp_el1 before re-init", a, CORE(CORE_OFF(sp_el1), KVM_REG_SIZE_U64), &v);
	SET("SET TPIDR_EL0 before re-init", a, SYSREG(3, 3, 13, 0, 2), &v);
	v = 0x80000007;
	SET("SET MPIDR_EL1 before re-init", a, SYSREG(3, 0, 0, 0, 5), &v);
	init.features[0] = 0;
	IOCTL("VCPU_INIT vcpu a again without PSCI_0_2", a, KVM_ARM_VCPU_INIT, &init);
	init.features[0] = (1u << KVM_ARM_VCPU_PSCI_0_2) | (1u << KVM_ARM_VCPU_POWER_OFF);
	IOCTL("VCPU_INIT vcpu a again with POWER_OFF", a, KVM_ARM_VCPU_INIT, &init);
	get64("GET core x1 after re-init", a, CORE(CORE_OFF(regs.regs[1]), KVM_REG_SIZE_U64));
	get64("GET core sp_el1 after re-init", a, CORE(CORE_OFF(sp_el1), KVM_REG_SIZE_U64));
	get64("GET core pstate after re-init", a, CORE(CORE_OFF(regs.pstate), KVM_REG_SIZE_U64));
	get64("GET TPIDR_EL0 after re-init", a, SYSREG(3, 3, 13, 0, 2));
	get64("GET MPIDR_EL1 after re-init", a, SYSREG(3, 0, 0, 0, 5));
	get64("GET FW PSCI_VERSION after re-init", a, KVM_REG_ARM_PSCI_VERSION);
	get64("GET ID_AA64PFR0_EL1 of vcpu a", a, SYSREG(3, 0, 0, 4, 0));
	init.features[0] = 0;
	IOCTL("VCPU_INIT vcpu b without PSCI_0_2", b, KVM_ARM_VCPU_INIT, &init);
	init.features[0] = 1u << KVM_ARM_VCPU_PSCI_0_2;
	IOCTL("VCPU_INIT vcpu b PSCI_0_2", b, KVM_ARM_VCPU_INIT, &init);
	get64("GET MPIDR_EL1 of vcpu b", b, SYSREG(3, 0, 0, 0, 5));
	get64("GET FW PSCI_VERSION of vcpu b", b, KVM_REG_ARM_PSCI_VERSION);
	/* ID registers are VM-wide. */
	if (one_reg(a, KVM_GET_ONE_REG, SYSREG(3, 0, 0, 6, 0), &v) == 0) {
		v &= ~(0xfULL << 4);
		SET("SET ID_AA64ISAR0_EL1 AES 0 on vcpu a", a, SYSREG(3, 0, 0, 6, 0), &v);
		v = 0xdead;
		one_reg(b, KVM_GET_ONE_REG, SYSREG(3, 0, 0, 6, 0), &v);
		printf("ID_AA64ISAR0_EL1.AES on vcpu b: %llu\n", (unsigned long long)((v >> 4) & 0xf));
	}
	close(a);
	close(b);
	close(vm);
}

/* KVM_ARM_GET_REG_WRITABLE_MASKS: the masks of the feature ID registers. */
static void writable_masks(int vm)
{
	uint64_t masks[KVM_ARM_FEATURE_ID_RANGE_SIZE];
	struct reg_mask_range range;
	unsigned int i;

	memset(&range, 0, sizeof(range));
	memset(masks, 0xa5, sizeof(masks));
	range.addr = (uint64_t)(uintptr_t)masks;
	if (IOCTL("GET_REG_WRITABLE_MASKS", vm, KVM_ARM_GET_REG_WRITABLE_MASKS, &range) == 0) {
		for (i = 0; i < KVM_ARM_FEATURE_ID_RANGE_SIZE; i++)
			if (masks[i])
				printf("writable mask[%u]: %#llx\n", i, (unsigned long long)masks[i]);
	}
	range.range = 1;
	IOCTL("GET_REG_WRITABLE_MASKS(range 1)", vm, KVM_ARM_GET_REG_WRITABLE_MASKS, &range);
	range.range = 0;
	range.reserved[12] = 1;
	IOCTL("GET_REG_WRITABLE_MASKS(reserved)", vm, KVM_ARM_GET_REG_WRITABLE_MASKS, &range);
	range.reserved[12] = 0;
	range.addr = 8;
	IOCTL("GET_REG_WRITABLE_MASKS(bad addr)", vm, KVM_ARM_GET_REG_WRITABLE_MASKS, &range);
	IOCTL("GET_REG_WRITABLE_MASKS(bad pointer)", vm, KVM_ARM_GET_REG_WRITABLE_MASKS, (void *)8);
}

/* KVM_CAP_ARM_WRITABLE_IMP_ID_REGS: MIDR/REVIDR/AIDR writable until the first run. */
static void imp_id_regs(int kvm, long mmap_size)
{
	struct kvm_enable_cap ec;
	struct kvm_vcpu_init init;
	struct kvm_run *run;
	uint64_t v;
	int vm, vcpu;

	vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0)
		return;
	memset(&ec, 0, sizeof(ec));
	ec.cap = KVM_CAP_ARM_WRITABLE_IMP_ID_REGS;
	ec.flags = 1;
	IOCTL("ENABLE_CAP(WRITABLE_IMP_ID_REGS, flags 1)", vm, KVM_ENABLE_CAP, &ec);
	ec.flags = 0;
	IOCTL("ENABLE_CAP(WRITABLE_IMP_ID_REGS)", vm, KVM_ENABLE_CAP, &ec);
	vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	IOCTL("ENABLE_CAP(WRITABLE_IMP_ID_REGS) with a vCPU", vm, KVM_ENABLE_CAP, &ec);
	memset(&init, 0, sizeof(init));
	init.target = KVM_ARM_TARGET_GENERIC_V8;
	if (vcpu < 0 || IOCTL("imp VCPU_INIT", vcpu, KVM_ARM_VCPU_INIT, &init) != 0) {
		close(vm);
		return;
	}
	v = 0x410fd034;
	SET("imp SET MIDR_EL1 Cortex-A53", vcpu, SYSREG(3, 0, 0, 0, 0), &v);
	get64("imp GET MIDR_EL1", vcpu, SYSREG(3, 0, 0, 0, 0));
	v = 1ULL << 32;
	SET("imp SET MIDR_EL1 bit 32", vcpu, SYSREG(3, 0, 0, 0, 0), &v);
	v = 0x1234;
	SET("imp SET REVIDR_EL1", vcpu, SYSREG(3, 0, 0, 0, 6), &v);
	SET("imp SET AIDR_EL1", vcpu, SYSREG(3, 1, 0, 0, 7), &v);
	get64("imp GET AIDR_EL1", vcpu, SYSREG(3, 1, 0, 0, 7));
	run = mmap(NULL, mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	if (run != MAP_FAILED) {
		run->immediate_exit = 1;
		IOCTL("imp KVM_RUN(immediate_exit)", vcpu, KVM_RUN, 0);
		munmap(run, mmap_size);
	}
	v = 0x4321;
	SET("imp SET REVIDR_EL1 after the first run", vcpu, SYSREG(3, 0, 0, 0, 6), &v);
	v = 0x1234;
	SET("imp SET REVIDR_EL1 same after the first run", vcpu, SYSREG(3, 0, 0, 0, 6), &v);
	close(vcpu);
	close(vm);
}

/*
 * The registers of a vCPU that never ran (a new VM: the ID registers are
 * still writable), then after its first KVM_RUN; and of `vcpu`, which ran.
 */
static void arm64_regs(int kvm, int vcpu, long mmap_size)
{
	struct kvm_reg_list small = { .n = 0 };
	struct kvm_vcpu_init init;
	struct kvm_run *run;
	int vm, fresh;

	vm = ioctl(kvm, KVM_CREATE_VM, 0);
	fresh = vm < 0 ? -1 : ioctl(vm, KVM_CREATE_VCPU, 3);
	if (fresh < 0)
		return;
	IOCTL("GET_REG_LIST before VCPU_INIT", fresh, KVM_GET_REG_LIST, &small);
	IOCTL("GET_REG_LIST before VCPU_INIT, bad pointer", fresh, KVM_GET_REG_LIST, (void *)8);
	GET("GET_ONE_REG before VCPU_INIT, bad pointer", fresh, 0, (void *)8);
	IOCTL("GET_ONE_REG before VCPU_INIT, bad kvm_one_reg", fresh, KVM_GET_ONE_REG, (void *)8);
	writable_masks(vm);
	memset(&init, 0, sizeof(init));
	init.target = KVM_ARM_TARGET_GENERIC_V8;
	IOCTL("fresh VCPU_INIT", fresh, KVM_ARM_VCPU_INIT, &init);
	IOCTL("GET_ONE_REG bad kvm_one_reg", fresh, KVM_GET_ONE_REG, (void *)8);
	IOCTL("SET_ONE_REG bad kvm_one_reg", fresh, KVM_SET_ONE_REG, (void *)8);
	reg_list_all("fresh", fresh, 1);
	core_regs(fresh);
	other_regs("fresh", fresh);
	/* The first run freezes the configuration. */
	run = mmap(NULL, mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, fresh, 0);
	if (run != MAP_FAILED) {
		run->immediate_exit = 1;
		IOCTL("fresh KVM_RUN(immediate_exit)", fresh, KVM_RUN, 0);
		munmap(run, mmap_size);
	}
	get64("fresh GET ID_AA64PFR0_EL1 after the first run", fresh, SYSREG(3, 0, 0, 4, 0));
	get64("fresh GET ID_PFR1_EL1 after the first run", fresh, SYSREG(3, 0, 0, 1, 1));
	other_regs("ran", fresh);
	close(fresh);
	close(vm);
	reg_list_all("vcpu (ran)", vcpu, 0);
	vcpu_init_features(kvm);
	imp_id_regs(kvm, mmap_size);
}

/*
 * arm64 guests: tiny hand-assembled programs run on a vCPU of their own VM
 * (64 KiB of RAM at IPA 0, PSCI 0.2+, pc 0, EL1h with every exception
 * masked and the MMU off, x1..x30 = 1..30 but x20 = A64_MMIO (no memslot),
 * x21 = 0x1000, x28 = A64_DONE; VBAR_EL1 = A64_TRAP, whose current-EL
 * synchronous handler puts ESR_EL1/FAR_EL1/ELR_EL1 in x0/x1/x2 and is
 * "done"). Every program ends with the "done" store: str x0, [x28], an MMIO
 * write to A64_DONE. Each KVM_RUN is a step: its result, exit_reason and the
 * fields of the exit; MMIO loads are completed with A64_MMIO_DATA; then
 * x0..x10, pc, ESR_EL1, FAR_EL1 and the MP state.
 */
#define A64_RAM 0x10000UL
#define A64_TRAP 0x800
#define A64_MMIO 0x10000000UL
#define A64_DONE 0x0f000000UL
#define A64_MMIO_DATA 0x8899aabbccddeef1ULL
#define A64_DONE_INSN 0xf9000380u /* str x0, [x28] */
#define A64_HVC 0xd4000002u
#define MOVZ(rd, imm, hw) (0xd2800000u | ((hw) << 21) | ((uint32_t)(imm) << 5) | (rd))
#define MOVK(rd, imm, hw) (0xf2800000u | ((hw) << 21) | ((uint32_t)(imm) << 5) | (rd))
#define MOVX(rd, rm) (0xaa0003e0u | ((rm) << 16) | (rd)) /* orr rd, xzr, rm */
#define MRS(rt, op1, crn, crm, op2) (0xd5380000u | ((op1) << 16) | ((crn) << 12) | ((crm) << 8) | ((op2) << 5) | (rt))

static void a64_on_alarm(int sig) { (void)sig; }
#define A64_N(a) (sizeof(a) / sizeof((a)[0]))

static void a64_guest(int kvm, long mmap_size, const char *name, const uint32_t *code,
		      unsigned int ncode, uint32_t slot_flags, int enable_cap)
{
	static const uint32_t trap[] = { MRS(0, 0, 5, 2, 0), MRS(1, 0, 6, 0, 0), MRS(2, 0, 4, 0, 1),
					 A64_DONE_INSN };
	struct kvm_userspace_memory_region r;
	struct kvm_vcpu_init init;
	struct kvm_mp_state mp;
	struct sigaction sa;
	struct kvm_run *run;
	char what[200];
	uint64_t v;
	unsigned int i;
	int vm, vcpu, k;
	uint8_t *mem;

	snprintf(what, sizeof(what), "a64g %s VM", name);
	vm = IOCTL_FD(what, kvm, KVM_CREATE_VM, 0);
	if (vm < 0)
		return;
	mem = mmap(NULL, A64_RAM, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED) {
		close(vm);
		return;
	}
	memcpy(mem, code, ncode * sizeof(uint32_t));
	memcpy(mem + A64_TRAP + 0x200, trap, sizeof(trap));
	r = (struct kvm_userspace_memory_region){ .slot = 0, .flags = slot_flags,
		.guest_phys_addr = 0, .memory_size = A64_RAM,
		.userspace_addr = (uint64_t)(uintptr_t)mem };
	snprintf(what, sizeof(what), "a64g %s memslot", name);
	IOCTL(what, vm, KVM_SET_USER_MEMORY_REGION, &r);
	if (enable_cap) {
		struct kvm_enable_cap ec = { .cap = enable_cap };

		snprintf(what, sizeof(what), "a64g %s ENABLE_CAP(%d)", name, enable_cap);
		IOCTL(what, vm, KVM_ENABLE_CAP, &ec);
	}
	snprintf(what, sizeof(what), "a64g %s vCPU", name);
	vcpu = IOCTL_FD(what, vm, KVM_CREATE_VCPU, 0);
	if (vcpu < 0)
		goto out_mem;
	memset(&init, 0, sizeof(init));
	init.target = KVM_ARM_TARGET_GENERIC_V8;
	init.features[0] = 1u << KVM_ARM_VCPU_PSCI_0_2;
	snprintf(what, sizeof(what), "a64g %s VCPU_INIT", name);
	IOCTL(what, vcpu, KVM_ARM_VCPU_INIT, &init);
	run = mmap(NULL, mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	if (run == MAP_FAILED)
		goto out_vcpu;
	for (i = 1; i < 31; i++) {
		v = i == 20 ? A64_MMIO : i == 21 ? 0x1000 : i == 28 ? A64_DONE : i;
		one_reg(vcpu, KVM_SET_ONE_REG, CORE(CORE_OFF(regs.regs[i]), KVM_REG_SIZE_U64), &v);
	}
	v = 0;
	snprintf(what, sizeof(what), "a64g %s set pc", name);
	SET(what, vcpu, CORE(CORE_OFF(regs.pc), KVM_REG_SIZE_U64), &v);
	v = A64_TRAP;
	snprintf(what, sizeof(what), "a64g %s set VBAR_EL1", name);
	SET(what, vcpu, SYSREG(3, 0, 12, 0, 0), &v);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = a64_on_alarm; /* no SA_RESTART: a hung KVM_RUN ends in EINTR */
	sigaction(SIGALRM, &sa, NULL);
	for (k = 0; k < 24; k++) {
		long ret;
		int stop = 1;

		alarm(3);
		ret = ioctl(vcpu, KVM_RUN, 0);
		alarm(0);
		snprintf(what, sizeof(what), "a64g %s run %d", name, k);
		if (ret < 0) {
			step(what, ret, 0);
			if (errno == ENOSYS && k == 0 && !enable_cap)
				continue; /* once more: the same fault, the same answer */
			break;
		}
		switch (run->exit_reason) {
		case KVM_EXIT_MMIO:
			printf("%s: mmio addr %#llx len %u write %u data %#llx\n", what,
			       (unsigned long long)run->mmio.phys_addr, run->mmio.len,
			       run->mmio.is_write, run->mmio.is_write ?
			       (unsigned long long)(*(uint64_t *)run->mmio.data &
			       (run->mmio.len >= 8 ? ~0ULL : (1ULL << (8 * run->mmio.len)) - 1)) : 0ULL);
			if (!run->mmio.is_write) {
				uint64_t d = A64_MMIO_DATA;

				memcpy(run->mmio.data, &d, 8);
			}
			stop = run->mmio.is_write && run->mmio.phys_addr == A64_DONE;
			break;
		case KVM_EXIT_SYSTEM_EVENT:
			printf("%s: system_event type %u ndata %u data0 %#llx\n", what,
			       run->system_event.type, run->system_event.ndata,
			       (unsigned long long)run->system_event.data[0]);
			break;
		case KVM_EXIT_ARM_NISV:
			printf("%s: arm_nisv esr_iss %#llx fault_ipa %#llx\n", what,
			       (unsigned long long)run->arm_nisv.esr_iss,
			       (unsigned long long)run->arm_nisv.fault_ipa);
			break;
		case KVM_EXIT_INTERNAL_ERROR:
			printf("%s: internal error suberror %u\n", what, run->internal.suberror);
			break;
		default:
			printf("%s: exit_reason %u\n", what, run->exit_reason);
			break;
		}
		fflush(stdout);
		if (stop)
			break;
	}
	for (i = 0; i <= 10; i++) {
		snprintf(what, sizeof(what), "a64g %s x%u", name, i);
		v = 0;
		if (GET(what, vcpu, CORE(CORE_OFF(regs.regs[i]), KVM_REG_SIZE_U64), &v) == 0)
			printf("%s value: %#llx\n", what, (unsigned long long)v);
	}
	{
		static const struct { const char *n; uint64_t id; } regs[] = {
			{ "pc", CORE(CORE_OFF(regs.pc), KVM_REG_SIZE_U64) },
			{ "pstate", CORE(CORE_OFF(regs.pstate), KVM_REG_SIZE_U64) },
			{ "ESR_EL1", SYSREG(3, 0, 5, 2, 0) },
			{ "FAR_EL1", SYSREG(3, 0, 6, 0, 0) },
			{ "ELR_EL1", CORE(CORE_OFF(elr_el1), KVM_REG_SIZE_U64) },
		};

		for (i = 0; i < sizeof(regs) / sizeof(regs[0]); i++) {
			snprintf(what, sizeof(what), "a64g %s %s", name, regs[i].n);
			v = 0;
			if (GET(what, vcpu, regs[i].id, &v) == 0)
				printf("%s value: %#llx\n", what, (unsigned long long)v);
		}
	}
	snprintf(what, sizeof(what), "a64g %s GET_MP_STATE", name);
	if (IOCTL(what, vcpu, KVM_GET_MP_STATE, &mp) == 0)
		printf("%s value: %u\n", what, mp.mp_state);
	if (!strcmp(name, "id regs")) {
		/* The guest's read of ID_AA64PFR0_EL1 (x3) is the register's value. */
		uint64_t x3 = 0, pfr0 = 0;

		one_reg(vcpu, KVM_GET_ONE_REG, CORE(CORE_OFF(regs.regs[3]), KVM_REG_SIZE_U64), &x3);
		one_reg(vcpu, KVM_GET_ONE_REG, SYSREG(3, 0, 0, 4, 0), &pfr0);
		printf("a64g id regs: guest ID_AA64PFR0_EL1 is the ONE_REG value: %d\n", x3 == pfr0);
	}
	munmap(run, mmap_size);
out_vcpu:
	close(vcpu);
out_mem:
	close(vm);
	munmap(mem, A64_RAM);
}

/*
 * Host memory behind a guest page changes while the guest has it mapped:
 * the guest reads the page, userspace drops it (MADV_DONTNEED) and writes
 * a new value into the fresh page, the guest reads again and must see the
 * new value (the MMU notifier unmapped the stage-2 page and flushed).
 */
static void a64_remap_guest(int kvm, long mmap_size)
{
	static const uint32_t code[] = {
		0xf94002a5u, /* ldr x5, [x21] */
		A64_DONE_INSN,
		0xf94002a6u, /* ldr x6, [x21] */
		A64_DONE_INSN,
	};
	struct kvm_userspace_memory_region r;
	struct kvm_vcpu_init init;
	struct kvm_run *run;
	char what[120];
	uint64_t v;
	uint8_t *mem;
	int vm, vcpu, k;

	vm = IOCTL_FD("a64g remap VM", kvm, KVM_CREATE_VM, 0);
	if (vm < 0)
		return;
	mem = mmap(NULL, A64_RAM, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED) {
		close(vm);
		return;
	}
	memcpy(mem, code, sizeof(code));
	v = 0x1111;
	memcpy(mem + 0x1000, &v, 8);
	r = (struct kvm_userspace_memory_region){ .slot = 0, .guest_phys_addr = 0,
		.memory_size = A64_RAM, .userspace_addr = (uint64_t)(uintptr_t)mem };
	IOCTL("a64g remap memslot", vm, KVM_SET_USER_MEMORY_REGION, &r);
	vcpu = IOCTL_FD("a64g remap vCPU", vm, KVM_CREATE_VCPU, 0);
	if (vcpu < 0)
		goto out_mem;
	memset(&init, 0, sizeof(init));
	init.target = KVM_ARM_TARGET_GENERIC_V8;
	IOCTL("a64g remap VCPU_INIT", vcpu, KVM_ARM_VCPU_INIT, &init);
	run = mmap(NULL, mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	if (run == MAP_FAILED)
		goto out_vcpu;
	v = 0x1000;
	one_reg(vcpu, KVM_SET_ONE_REG, CORE(CORE_OFF(regs.regs[21]), KVM_REG_SIZE_U64), &v);
	v = A64_DONE;
	one_reg(vcpu, KVM_SET_ONE_REG, CORE(CORE_OFF(regs.regs[28]), KVM_REG_SIZE_U64), &v);
	for (k = 0; k < 2; k++) {
		snprintf(what, sizeof(what), "a64g remap run %d", k);
		alarm(3);
		if (IOCTL(what, vcpu, KVM_RUN, 0) == 0)
			printf("%s exit: exit_reason %u mmio addr %#llx\n", what, run->exit_reason,
			       (unsigned long long)run->mmio.phys_addr);
		alarm(0);
		if (k == 0) {
			printf("a64g remap madvise(DONTNEED): %d\n",
			       madvise(mem + 0x1000, 0x1000, MADV_DONTNEED));
			v = 0x2222;
			memcpy(mem + 0x1000, &v, 8);
		}
	}
	v = 0;
	if (GET("a64g remap x5", vcpu, CORE(CORE_OFF(regs.regs[5]), KVM_REG_SIZE_U64), &v) == 0)
		printf("a64g remap x5 value: %#llx\n", (unsigned long long)v);
	v = 0;
	if (GET("a64g remap x6", vcpu, CORE(CORE_OFF(regs.regs[6]), KVM_REG_SIZE_U64), &v) == 0)
		printf("a64g remap x6 value: %#llx\n", (unsigned long long)v);
	munmap(run, mmap_size);
out_vcpu:
	close(vcpu);
out_mem:
	close(vm);
	munmap(mem, A64_RAM);
}

static void a64_guests(int kvm, long mmap_size)
{
	/* Every width and sign of MMIO load, then of store, xzr both ways. */
	static const uint32_t mmio[] = {
		0x39400282u, /* ldrb w2, [x20] */
		0x39800283u, /* ldrsb x3, [x20] */
		0x39c00284u, /* ldrsb w4, [x20] */
		0x79400285u, /* ldrh w5, [x20] */
		0x79800286u, /* ldrsh x6, [x20] */
		0x79c00287u, /* ldrsh w7, [x20] */
		0xb9400288u, /* ldr w8, [x20] */
		0xb9800289u, /* ldrsw x9, [x20] */
		0xf940028au, /* ldr x10, [x20] */
		0xf940029fu, /* ldr xzr, [x20] */
		MOVZ(1, 0xa1b2, 0), MOVK(1, 0xc3d4, 1), MOVK(1, 0xe5f6, 2), MOVK(1, 0x0718, 3),
		0x39000281u, /* strb w1, [x20] */
		0x79000281u, /* strh w1, [x20] */
		0xb9000281u, /* str w1, [x20] */
		0xf9000281u, /* str x1, [x20] */
		0xf900029fu, /* str xzr, [x20] */
		MOVZ(0, 0x600d, 0), A64_DONE_INSN,
	};
	/* SMCCC/PSCI calls: versions, features, an unknown call. */
	static const uint32_t hvc[] = {
		MOVZ(0, 0x8400, 1), A64_HVC, MOVX(5, 0),			/* PSCI_VERSION */
		MOVZ(0, 0x8400, 1), MOVK(0, 0xa, 0), MOVZ(1, 0xc400, 1), MOVK(1, 3, 0),
		A64_HVC, MOVX(2, 0),						/* PSCI_FEATURES(CPU_ON) */
		MOVZ(0, 0x8400, 1), MOVK(0, 0xa, 0), MOVZ(1, 0x8400, 1), MOVK(1, 0xe, 0),
		A64_HVC, MOVX(6, 0),						/* PSCI_FEATURES(SYSTEM_SUSPEND) */
		MOVZ(0, 0x8000, 1), A64_HVC, MOVX(3, 0),			/* SMCCC_VERSION */
		MOVZ(0, 0x8000, 1), MOVK(0, 1, 0), MOVZ(1, 0x8000, 1), MOVK(1, 0x1234, 0),
		A64_HVC, MOVX(7, 0),						/* ARCH_FEATURES(unknown) */
		MOVZ(0, 0x8600, 1), MOVK(0, 0x1234, 0), MOVZ(1, 9, 0), MOVZ(2, 9, 0),
		MOVZ(3, 9, 0), A64_HVC, MOVX(4, 0), MOVX(8, 1), MOVX(9, 2), MOVX(10, 3), /* unknown */
		MOVZ(0, 0x8400, 1), MOVK(0, 6, 0), A64_HVC, MOVX(1, 0),		/* MIGRATE_INFO_TYPE */
		MOVZ(0, 0x8400, 1), MOVK(0, 4, 0), MOVZ(1, 0, 0), MOVZ(2, 0, 0),
		A64_HVC,							/* AFFINITY_INFO(0, 0) */
		A64_DONE_INSN,
	};
	static const uint32_t system_off[] = {
		MOVZ(0, 0x8400, 1), MOVK(0, 8, 0), A64_HVC, A64_DONE_INSN,
	};
	static const uint32_t system_reset[] = {
		MOVZ(0, 0x8400, 1), MOVK(0, 9, 0), A64_HVC, A64_DONE_INSN,
	};
	static const uint32_t cpu_on_bad[] = {
		/* CPU_ON of MPIDR 7 (no such vCPU) and of itself (already on). */
		MOVZ(0, 0xc400, 1), MOVK(0, 3, 0), MOVZ(1, 7, 0), MOVZ(2, 0x100, 0), A64_HVC, MOVX(5, 0),
		MOVZ(0, 0xc400, 1), MOVK(0, 3, 0), MOVZ(1, 0, 0), MOVZ(2, 0x100, 0), A64_HVC, MOVX(6, 0),
		A64_DONE_INSN,
	};
	/* A store to the read-only slot is an MMIO write; loads read memory. */
	static const uint32_t ro_write[] = {
		0xf94002a5u, /* ldr x5, [x21] */
		0xf90002a1u, /* str x1, [x21] */
		0x390006a1u, /* strb w1, [x21, #1] */
		0xf94002a6u, /* ldr x6, [x21] */
		MOVZ(0, 0x600d, 0), A64_DONE_INSN,
	};
	/* ldp: no syndrome (ISV = 0). */
	static const uint32_t nisv[] = { 0xa9400e82u, /* ldp x2, x3, [x20] */ A64_DONE_INSN };
	/* An ID register (TID3) is emulated; an IMPDEF one is UNDEF. */
	static const uint32_t id_regs[] = {
		MRS(3, 0, 0, 4, 0), /* mrs x3, id_aa64pfr0_el1 */
		MRS(4, 0, 15, 0, 0), /* mrs x4, s3_0_c15_c0_0 */
		A64_DONE_INSN,
	};
	/* Executing outside the memslots: a prefetch abort for the guest. */
	static const uint32_t iabt[] = { 0xd2a40009u, /* movz x9, #0x2000, lsl 16 */
					 0xd61f0120u, /* br x9 */ };
	/* PSCI_FEATURES(SYSTEM_SUSPEND64), then SYSTEM_SUSPEND64(0x100, 7). */
	static const uint32_t suspend[] = {
		MOVZ(0, 0x8400, 1), MOVK(0, 0xa, 0), MOVZ(1, 0xc400, 1), MOVK(1, 0xe, 0), A64_HVC, MOVX(5, 0),
		MOVZ(0, 0xc400, 1), MOVK(0, 0xe, 0), MOVZ(1, 0x100, 0), MOVZ(2, 7, 0), A64_HVC, A64_DONE_INSN,
	};
	/* An SMC #0 is a firmware call too; WFE is a hint. */
	static const uint32_t smc[] = { 0xd503205fu, /* wfe */ MOVZ(0, 0x8400, 1), 0xd4000003u, /* smc #0 */
					MOVX(5, 0), A64_DONE_INSN };

	a64_guest(kvm, mmap_size, "mmio", mmio, A64_N(mmio), 0, 0);
	a64_guest(kvm, mmap_size, "hvc", hvc, A64_N(hvc), 0, 0);
	a64_guest(kvm, mmap_size, "system off", system_off, A64_N(system_off), 0, 0);
	a64_guest(kvm, mmap_size, "system reset", system_reset, A64_N(system_reset), 0, 0);
	a64_guest(kvm, mmap_size, "cpu on", cpu_on_bad, A64_N(cpu_on_bad), 0, 0);
	a64_guest(kvm, mmap_size, "ro write", ro_write, A64_N(ro_write), KVM_MEM_READONLY, 0);
	a64_guest(kvm, mmap_size, "nisv", nisv, A64_N(nisv), 0, 0);
	a64_guest(kvm, mmap_size, "nisv to user", nisv, A64_N(nisv), 0, KVM_CAP_ARM_NISV_TO_USER);
	a64_guest(kvm, mmap_size, "id regs", id_regs, A64_N(id_regs), 0, 0);
	a64_guest(kvm, mmap_size, "iabt", iabt, A64_N(iabt), 0, 0);
	a64_guest(kvm, mmap_size, "smc", smc, A64_N(smc), 0, 0);
	a64_guest(kvm, mmap_size, "system suspend off", suspend, A64_N(suspend), 0, 0);
	a64_guest(kvm, mmap_size, "system suspend", suspend, A64_N(suspend), 0, KVM_CAP_ARM_SYSTEM_SUSPEND);
	a64_remap_guest(kvm, mmap_size);
}
#endif

#ifdef __riscv
/* riscv64 register ids. */
#define RV(size, type, num) (KVM_REG_RISCV | (size) | (type) | (num))
#define RV64(type, num) RV(KVM_REG_SIZE_U64, type, num)
#define RV32(type, num) RV(KVM_REG_SIZE_U32, type, num)

static int rv_one_reg(int vcpu, unsigned long req, uint64_t id, void *addr)
{
	struct kvm_one_reg reg = { .id = id, .addr = (uint64_t)(uintptr_t)addr };

	return ioctl(vcpu, req, &reg);
}

#define RV_GET(what, vcpu, id, addr) step(what, rv_one_reg(vcpu, KVM_GET_ONE_REG, id, addr), 0)
#define RV_SET(what, vcpu, id, addr) step(what, rv_one_reg(vcpu, KVM_SET_ONE_REG, id, addr), 0)

/* Gets a register of up to 8 bytes and prints its value under "<what> value". */
static void rv_get(const char *what, int vcpu, uint64_t id)
{
	uint64_t v[32] = { 0xdeadbeef };

	if (RV_GET(what, vcpu, id, v) == 0)
		printf("%s value: %#llx\n", what, (unsigned long long)v[0]);
}

/* Sets a register from a 64-bit value (its low bytes for smaller sizes). */
static void rv_set(const char *what, int vcpu, uint64_t id, uint64_t value)
{
	uint64_t v[32] = { value };

	RV_SET(what, vcpu, id, v);
}

/* The guest time: reads it (never printed, it moves), for rv_time_near(). */
static int rv_time(int vcpu, uint64_t *t)
{
	return rv_one_reg(vcpu, KVM_GET_ONE_REG, RV64(KVM_REG_RISCV_TIMER, KVM_REG_RISCV_TIMER_REG(time)), t);
}

/*
 * KVM_GET_REG_LIST, then every listed register: its position (the id
 * listed before it, so that one register more or less on one side shows
 * as that register only), its value and a write of the same value back,
 * as the upstream get-reg-list selftest does. Returns the number listed.
 */
static uint64_t rv_reg_list(const char *where, int vcpu)
{
	struct kvm_reg_list small = { .n = 0 }, *list;
	char what[160];
	uint64_t i, n, prev = 0;

	snprintf(what, sizeof(what), "%s GET_REG_LIST(n 0)", where);
	IOCTL(what, vcpu, KVM_GET_REG_LIST, &small);
	printf("%s reg list n: %llu\n", where, (unsigned long long)small.n);
	snprintf(what, sizeof(what), "%s GET_REG_LIST(bad pointer)", where);
	IOCTL(what, vcpu, KVM_GET_REG_LIST, (void *)8);
	n = small.n;
	if (n == 0 || n > 4096)
		return n;
	list = calloc(1, sizeof(*list) + (n + 2) * sizeof(uint64_t));
	if (!list)
		return n;
	list->n = n - 1;
	snprintf(what, sizeof(what), "%s GET_REG_LIST(n - 1)", where);
	IOCTL(what, vcpu, KVM_GET_REG_LIST, list);
	list->n = n + 2;
	snprintf(what, sizeof(what), "%s GET_REG_LIST(n + 2)", where);
	IOCTL(what, vcpu, KVM_GET_REG_LIST, list);
	for (i = 0; i < n; i++) {
		uint64_t id = list->reg[i], v[4];
		size_t size = 1ULL << ((id & KVM_REG_SIZE_MASK) >> KVM_REG_SIZE_SHIFT);

		printf("%s reg %#llx: listed after %#llx\n", where, (unsigned long long)id,
		       (unsigned long long)prev);
		prev = id;
		if (size > sizeof(v))
			continue;
		memset(v, 0, sizeof(v));
		snprintf(what, sizeof(what), "%s GET %#llx", where, (unsigned long long)id);
		if (RV_GET(what, vcpu, id, v) != 0)
			continue;
		if (id == RV64(KVM_REG_RISCV_TIMER, KVM_REG_RISCV_TIMER_REG(time)))
			printf("%s value: (a counter)\n", what);
		else
			printf("%s value: %#llx\n", what, (unsigned long long)v[0]);
		snprintf(what, sizeof(what), "%s SET same %#llx", where, (unsigned long long)id);
		RV_SET(what, vcpu, id, v);
	}
	free(list);
	return n;
}

/*
 * riscv64 ONE_REG: every listed register, sizes, unknown ids, the order of
 * the checks (a bad buffer shows whether the value is read before the id
 * is looked at), the write rules of each type and the first-run freeze,
 * on a vCPU of its own VM.
 */
static void riscv_regs(int kvm, long mmap_size)
{
	static const struct { const char *name; uint64_t type; } types[] = {
		{ "config", KVM_REG_RISCV_CONFIG }, { "core", KVM_REG_RISCV_CORE },
		{ "csr", KVM_REG_RISCV_CSR }, { "timer", KVM_REG_RISCV_TIMER },
		{ "fp_f", KVM_REG_RISCV_FP_F }, { "fp_d", KVM_REG_RISCV_FP_D },
		{ "isa_ext", KVM_REG_RISCV_ISA_EXT }, { "sbi_ext", KVM_REG_RISCV_SBI_EXT },
		{ "vector", KVM_REG_RISCV_VECTOR }, { "sbi_state", KVM_REG_RISCV_SBI_STATE },
		{ "type 0", 0 }, { "type 0xb", 0xbULL << 24 }, { "type 0xff", 0xffULL << 24 },
	};
	static const uint64_t sizes[] = {
		KVM_REG_SIZE_U8, KVM_REG_SIZE_U16, KVM_REG_SIZE_U32, KVM_REG_SIZE_U128,
		KVM_REG_SIZE_U2048,
	};
	uint64_t isa_id = RV64(KVM_REG_RISCV_CONFIG, KVM_REG_RISCV_CONFIG_REG(isa));
	uint64_t time_id = RV64(KVM_REG_RISCV_TIMER, KVM_REG_RISCV_TIMER_REG(time));
	uint64_t d_id = RV64(KVM_REG_RISCV_ISA_EXT, KVM_RISCV_ISA_EXT_D);
	uint64_t t, n, cur;
	struct kvm_run *run;
	char what[160];
	unsigned int i, j;
	int vm, vcpu;

	vm = IOCTL_FD("riscv regs: VM", kvm, KVM_CREATE_VM, 0);
	if (vm < 0)
		return;
	vcpu = IOCTL_FD("riscv regs: vCPU", vm, KVM_CREATE_VCPU, 0);
	if (vcpu < 0) {
		close(vm);
		return;
	}
	n = rv_reg_list("rv", vcpu);

	/* Sizes and unknown numbers, per type (number 0 and past the end). */
	for (i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		for (j = 0; j < sizeof(sizes) / sizeof(sizes[0]); j++) {
			snprintf(what, sizeof(what), "rv GET %s 0 size %u", types[i].name,
				 1u << (sizes[j] >> KVM_REG_SIZE_SHIFT));
			rv_get(what, vcpu, KVM_REG_RISCV | sizes[j] | types[i].type);
			snprintf(what, sizeof(what), "rv SET %s 0 size %u", types[i].name,
				 1u << (sizes[j] >> KVM_REG_SIZE_SHIFT));
			rv_set(what, vcpu, KVM_REG_RISCV | sizes[j] | types[i].type, 0);
		}
		snprintf(what, sizeof(what), "rv GET %s 0", types[i].name);
		rv_get(what, vcpu, RV64(types[i].type, 0));
		snprintf(what, sizeof(what), "rv GET %s 0 U32", types[i].name);
		rv_get(what, vcpu, RV32(types[i].type, 0));
		snprintf(what, sizeof(what), "rv GET %s 0xffff", types[i].name);
		rv_get(what, vcpu, RV64(types[i].type, 0xffff));
		snprintf(what, sizeof(what), "rv GET %s subtype 4", types[i].name);
		rv_get(what, vcpu, RV64(types[i].type, 4 << 16));
		snprintf(what, sizeof(what), "rv GET %s stray bit 32", types[i].name);
		rv_get(what, vcpu, RV64(types[i].type, 1ULL << 32));
		/* Does the id's check come before the read of the value? */
		snprintf(what, sizeof(what), "rv SET %s 0 bad buffer", types[i].name);
		RV_SET(what, vcpu, RV64(types[i].type, 0), (void *)8);
		snprintf(what, sizeof(what), "rv SET %s 0xffff bad buffer", types[i].name);
		RV_SET(what, vcpu, RV64(types[i].type, 0xffff), (void *)8);
		snprintf(what, sizeof(what), "rv SET %s subtype 4 bad buffer", types[i].name);
		RV_SET(what, vcpu, RV64(types[i].type, 4 << 16), (void *)8);
		snprintf(what, sizeof(what), "rv GET %s 0 bad buffer", types[i].name);
		RV_GET(what, vcpu, RV64(types[i].type, 0), (void *)8);
	}
	rv_get("rv GET config with the arm64 arch byte", vcpu,
	       (isa_id & ~KVM_REG_ARCH_MASK) | KVM_REG_ARM64);
	rv_get("rv GET config 8", vcpu, RV64(KVM_REG_RISCV_CONFIG, 8));
	rv_get("rv GET core 33", vcpu, RV64(KVM_REG_RISCV_CORE, 33));
	rv_get("rv GET csr 11", vcpu, RV64(KVM_REG_RISCV_CSR, 11));
	rv_get("rv GET csr AIA 0", vcpu, RV64(KVM_REG_RISCV_CSR, KVM_REG_RISCV_CSR_AIA));
	rv_get("rv GET csr Smstateen 0", vcpu, RV64(KVM_REG_RISCV_CSR, KVM_REG_RISCV_CSR_SMSTATEEN));
	rv_get("rv GET csr Zicfiss 0", vcpu, RV64(KVM_REG_RISCV_CSR, KVM_REG_RISCV_CSR_ZICFISS));
	rv_get("rv GET timer 4", vcpu, RV64(KVM_REG_RISCV_TIMER, 4));
	rv_get("rv GET fp_f 33", vcpu, RV32(KVM_REG_RISCV_FP_F, 33));
	rv_get("rv GET fp_d 33", vcpu, RV64(KVM_REG_RISCV_FP_D, 33));
	rv_get("rv GET fp_d fcsr U64", vcpu, RV64(KVM_REG_RISCV_FP_D, 32));
	rv_get("rv GET fp_d f0 U32", vcpu, RV32(KVM_REG_RISCV_FP_D, 0));
	rv_get("rv GET vector vlenb", vcpu, RV64(KVM_REG_RISCV_VECTOR, 4));
	rv_get("rv GET isa_ext 80", vcpu, RV64(KVM_REG_RISCV_ISA_EXT, KVM_RISCV_ISA_EXT_MAX));
	rv_get("rv GET isa_ext H", vcpu, RV64(KVM_REG_RISCV_ISA_EXT, KVM_RISCV_ISA_EXT_H));
	rv_get("rv GET isa_ext V", vcpu, RV64(KVM_REG_RISCV_ISA_EXT, KVM_RISCV_ISA_EXT_V));
	rv_get("rv GET isa_ext multi_en 0", vcpu, RV64(KVM_REG_RISCV_ISA_EXT, KVM_REG_RISCV_ISA_MULTI_EN));
	rv_get("rv GET isa_ext multi_en 1", vcpu, RV64(KVM_REG_RISCV_ISA_EXT, KVM_REG_RISCV_ISA_MULTI_EN | 1));
	rv_get("rv GET isa_ext multi_en 2", vcpu, RV64(KVM_REG_RISCV_ISA_EXT, KVM_REG_RISCV_ISA_MULTI_EN | 2));
	rv_get("rv GET isa_ext multi_dis 0", vcpu, RV64(KVM_REG_RISCV_ISA_EXT, KVM_REG_RISCV_ISA_MULTI_DIS));
	rv_get("rv GET sbi_ext 14", vcpu, RV64(KVM_REG_RISCV_SBI_EXT, KVM_RISCV_SBI_EXT_MAX));
	rv_get("rv GET sbi_ext multi_en 0", vcpu, RV64(KVM_REG_RISCV_SBI_EXT, KVM_REG_RISCV_SBI_MULTI_EN));
	rv_get("rv GET sbi_ext multi_en 1", vcpu, RV64(KVM_REG_RISCV_SBI_EXT, KVM_REG_RISCV_SBI_MULTI_EN | 1));
	rv_get("rv GET sbi_state STA 2", vcpu, RV64(KVM_REG_RISCV_SBI_STATE, 2));
	rv_get("rv GET sbi_state STA shmem_lo U32", vcpu, RV32(KVM_REG_RISCV_SBI_STATE, 0));

	/* Core: pc, GPRs, mode. */
	rv_set("rv SET core pc", vcpu, RV64(KVM_REG_RISCV_CORE, 0), 0x80200000);
	rv_get("rv GET core pc", vcpu, RV64(KVM_REG_RISCV_CORE, 0));
	rv_set("rv SET core a0", vcpu, RV64(KVM_REG_RISCV_CORE, KVM_REG_RISCV_CORE_REG(regs.a0)), 0x1122334455667788ULL);
	rv_get("rv GET core a0", vcpu, RV64(KVM_REG_RISCV_CORE, KVM_REG_RISCV_CORE_REG(regs.a0)));
	rv_get("rv GET core mode", vcpu, RV64(KVM_REG_RISCV_CORE, KVM_REG_RISCV_CORE_REG(mode)));
	rv_set("rv SET core mode 7", vcpu, RV64(KVM_REG_RISCV_CORE, KVM_REG_RISCV_CORE_REG(mode)), 7);
	rv_get("rv GET core mode after 7", vcpu, RV64(KVM_REG_RISCV_CORE, KVM_REG_RISCV_CORE_REG(mode)));
	rv_set("rv SET core mode S", vcpu, RV64(KVM_REG_RISCV_CORE, KVM_REG_RISCV_CORE_REG(mode)), 1);
	rv_get("rv GET core mode after S", vcpu, RV64(KVM_REG_RISCV_CORE, KVM_REG_RISCV_CORE_REG(mode)));

	/* CSRs: sip is kept as hvip. */
	rv_set("rv SET csr sip all ones", vcpu, RV64(KVM_REG_RISCV_CSR, KVM_REG_RISCV_CSR_REG(sip)), ~0ULL);
	rv_get("rv GET csr sip", vcpu, RV64(KVM_REG_RISCV_CSR, KVM_REG_RISCV_CSR_REG(sip)));
	rv_set("rv SET csr sip 0", vcpu, RV64(KVM_REG_RISCV_CSR, KVM_REG_RISCV_CSR_REG(sip)), 0);
	rv_set("rv SET csr satp", vcpu, RV64(KVM_REG_RISCV_CSR, KVM_REG_RISCV_CSR_REG(satp)), 0x8000000000012345ULL);
	rv_get("rv GET csr satp", vcpu, RV64(KVM_REG_RISCV_CSR, KVM_REG_RISCV_CSR_REG(satp)));
	rv_set("rv SET csr senvcfg", vcpu, RV64(KVM_REG_RISCV_CSR, KVM_REG_RISCV_CSR_REG(senvcfg)), ~0ULL);
	rv_get("rv GET csr senvcfg", vcpu, RV64(KVM_REG_RISCV_CSR, KVM_REG_RISCV_CSR_REG(senvcfg)));

	/* Timer. */
	rv_set("rv SET timer frequency + 1", vcpu, RV64(KVM_REG_RISCV_TIMER, 0), 10000001);
	rv_set("rv SET timer compare", vcpu, RV64(KVM_REG_RISCV_TIMER, KVM_REG_RISCV_TIMER_REG(compare)), 0x123456789ULL);
	rv_get("rv GET timer compare", vcpu, RV64(KVM_REG_RISCV_TIMER, KVM_REG_RISCV_TIMER_REG(compare)));
	rv_set("rv SET timer state on", vcpu, RV64(KVM_REG_RISCV_TIMER, KVM_REG_RISCV_TIMER_REG(state)), 1);
	rv_get("rv GET timer state after on", vcpu, RV64(KVM_REG_RISCV_TIMER, KVM_REG_RISCV_TIMER_REG(state)));
	rv_set("rv SET timer state off", vcpu, RV64(KVM_REG_RISCV_TIMER, KVM_REG_RISCV_TIMER_REG(state)), 0);
	rv_set("rv SET timer state 2", vcpu, RV64(KVM_REG_RISCV_TIMER, KVM_REG_RISCV_TIMER_REG(state)), 2);
	rv_set("rv SET timer time 2^40", vcpu, time_id, 1ULL << 40);
	t = 0;
	if (rv_time(vcpu, &t) == 0)
		printf("rv timer time after 2^40: %s\n",
		       t - (1ULL << 40) < 1000000000ULL ? "just past 2^40" : "elsewhere");

	/* FP: the F and D views share their storage. */
	rv_set("rv SET fp_d f3", vcpu, RV64(KVM_REG_RISCV_FP_D, 3), 0x1111222233334444ULL);
	rv_get("rv GET fp_f f6", vcpu, RV32(KVM_REG_RISCV_FP_F, 6));
	rv_get("rv GET fp_f f7", vcpu, RV32(KVM_REG_RISCV_FP_F, 7));
	rv_set("rv SET fp_f fcsr", vcpu, RV32(KVM_REG_RISCV_FP_F, 32), 0xe0);
	rv_get("rv GET fp_d f16", vcpu, RV64(KVM_REG_RISCV_FP_D, 16));
	rv_set("rv SET fp_d fcsr", vcpu, RV32(KVM_REG_RISCV_FP_D, 32), 0x1f);
	rv_get("rv GET fp_d fcsr", vcpu, RV32(KVM_REG_RISCV_FP_D, 32));
	rv_get("rv GET fp_f fcsr", vcpu, RV32(KVM_REG_RISCV_FP_F, 32));

	/* Config registers. */
	rv_get("rv GET config zicbom_block_size", vcpu, RV64(KVM_REG_RISCV_CONFIG, KVM_REG_RISCV_CONFIG_REG(zicbom_block_size)));
	rv_set("rv SET config zicbom_block_size 0", vcpu, RV64(KVM_REG_RISCV_CONFIG, KVM_REG_RISCV_CONFIG_REG(zicbom_block_size)), 0);
	rv_set("rv SET config zicbom_block_size 32", vcpu, RV64(KVM_REG_RISCV_CONFIG, KVM_REG_RISCV_CONFIG_REG(zicbom_block_size)), 32);
	rv_set("rv SET config zicbop_block_size 4096", vcpu, RV64(KVM_REG_RISCV_CONFIG, KVM_REG_RISCV_CONFIG_REG(zicbop_block_size)), 4096);
	rv_set("rv SET config mvendorid", vcpu, RV64(KVM_REG_RISCV_CONFIG, KVM_REG_RISCV_CONFIG_REG(mvendorid)), 0x489);
	rv_get("rv GET config mvendorid", vcpu, RV64(KVM_REG_RISCV_CONFIG, KVM_REG_RISCV_CONFIG_REG(mvendorid)));
	rv_set("rv SET config satp_mode 8", vcpu, RV64(KVM_REG_RISCV_CONFIG, KVM_REG_RISCV_CONFIG_REG(satp_mode)), 8);

	/* ISA: single letters through the isa config register. */
	rv_get("rv GET config isa", vcpu, isa_id);
	rv_set("rv SET config isa bit 25", vcpu, isa_id, 1ULL << 25);
	rv_set("rv SET config isa bit 31", vcpu, isa_id, 1ULL << 31);
	rv_set("rv SET config isa 0 (only what can go)", vcpu, isa_id, 0);
	rv_get("rv GET config isa after 0", vcpu, isa_id);
	rv_get("rv GET isa_ext D after isa 0", vcpu, d_id);
	rv_get("rv GET fp_d f3 without D", vcpu, RV64(KVM_REG_RISCV_FP_D, 3));
	rv_get("rv GET fp_f f6 without F", vcpu, RV32(KVM_REG_RISCV_FP_F, 6));
	rv_reg_list("rv without F/D", vcpu);
	rv_set("rv SET config isa imafdch + bit 40", vcpu, isa_id, 0x11adULL | 1ULL << 40);
	rv_get("rv GET config isa after imafdch", vcpu, isa_id);
	rv_get("rv GET fp_d f3 with D again", vcpu, RV64(KVM_REG_RISCV_FP_D, 3));

	/* ISA: single and multi registers. */
	rv_set("rv SET isa_ext H 1", vcpu, RV64(KVM_REG_RISCV_ISA_EXT, KVM_RISCV_ISA_EXT_H), 1);
	rv_set("rv SET isa_ext H 0", vcpu, RV64(KVM_REG_RISCV_ISA_EXT, KVM_RISCV_ISA_EXT_H), 0);
	rv_set("rv SET isa_ext A 0", vcpu, RV64(KVM_REG_RISCV_ISA_EXT, KVM_RISCV_ISA_EXT_A), 0);
	rv_set("rv SET isa_ext D 2", vcpu, d_id, 2);
	rv_set("rv SET isa_ext D 0", vcpu, d_id, 0);
	rv_get("rv GET config isa after D 0", vcpu, isa_id);
	rv_set("rv SET isa_ext Sscofpmf 1", vcpu, RV64(KVM_REG_RISCV_ISA_EXT, KVM_RISCV_ISA_EXT_SSCOFPMF), 1);
	rv_set("rv SET isa_ext Sstc 0", vcpu, RV64(KVM_REG_RISCV_ISA_EXT, KVM_RISCV_ISA_EXT_SSTC), 0);
	rv_set("rv SET isa_ext Svadu 0", vcpu, RV64(KVM_REG_RISCV_ISA_EXT, KVM_RISCV_ISA_EXT_SVADU), 0);
	rv_set("rv SET isa_ext Zicbom 0", vcpu, RV64(KVM_REG_RISCV_ISA_EXT, KVM_RISCV_ISA_EXT_ZICBOM), 0);
	rv_set("rv SET isa_ext V 1", vcpu, RV64(KVM_REG_RISCV_ISA_EXT, KVM_RISCV_ISA_EXT_V), 1);
	rv_set("rv SET isa_ext 80", vcpu, RV64(KVM_REG_RISCV_ISA_EXT, KVM_RISCV_ISA_EXT_MAX), 1);
	rv_set("rv SET isa_ext multi_dis 0 all", vcpu, RV64(KVM_REG_RISCV_ISA_EXT, KVM_REG_RISCV_ISA_MULTI_DIS), ~0ULL);
	rv_get("rv GET isa_ext multi_en 0 after disabling all", vcpu, RV64(KVM_REG_RISCV_ISA_EXT, KVM_REG_RISCV_ISA_MULTI_EN));
	rv_set("rv SET isa_ext multi_dis 1 all", vcpu, RV64(KVM_REG_RISCV_ISA_EXT, KVM_REG_RISCV_ISA_MULTI_DIS | 1), ~0ULL);
	rv_get("rv GET isa_ext multi_en 1 after disabling all", vcpu, RV64(KVM_REG_RISCV_ISA_EXT, KVM_REG_RISCV_ISA_MULTI_EN | 1));
	rv_set("rv SET isa_ext multi_en 0 all", vcpu, RV64(KVM_REG_RISCV_ISA_EXT, KVM_REG_RISCV_ISA_MULTI_EN), ~0ULL);
	rv_set("rv SET isa_ext multi_en 1 all", vcpu, RV64(KVM_REG_RISCV_ISA_EXT, KVM_REG_RISCV_ISA_MULTI_EN | 1), ~0ULL);
	rv_get("rv GET isa_ext multi_en 0 after enabling all", vcpu, RV64(KVM_REG_RISCV_ISA_EXT, KVM_REG_RISCV_ISA_MULTI_EN));
	rv_get("rv GET isa_ext multi_dis 1 after enabling all", vcpu, RV64(KVM_REG_RISCV_ISA_EXT, KVM_REG_RISCV_ISA_MULTI_DIS | 1));
	rv_set("rv SET isa_ext multi_en 2", vcpu, RV64(KVM_REG_RISCV_ISA_EXT, KVM_REG_RISCV_ISA_MULTI_EN | 2), 1);
	rv_set("rv SET isa_ext subtype 3", vcpu, RV64(KVM_REG_RISCV_ISA_EXT, 3 << 16), 1);

	/* SBI extensions and steal-time state. */
	rv_set("rv SET sbi_ext DBCN 1", vcpu, RV64(KVM_REG_RISCV_SBI_EXT, KVM_RISCV_SBI_EXT_DBCN), 1);
	rv_get("rv GET sbi_ext multi_en 0 after DBCN", vcpu, RV64(KVM_REG_RISCV_SBI_EXT, KVM_REG_RISCV_SBI_MULTI_EN));
	rv_set("rv SET sbi_state STA shmem_lo", vcpu, RV64(KVM_REG_RISCV_SBI_STATE, 0), 0x80001000);
	rv_get("rv GET sbi_state STA shmem_lo", vcpu, RV64(KVM_REG_RISCV_SBI_STATE, 0));
	rv_set("rv SET sbi_state STA shmem_lo unaligned", vcpu, RV64(KVM_REG_RISCV_SBI_STATE, 0), 0x80001004);
	rv_set("rv SET sbi_state STA shmem_hi 1", vcpu, RV64(KVM_REG_RISCV_SBI_STATE, 1), 1);
	rv_set("rv SET sbi_ext STA 0", vcpu, RV64(KVM_REG_RISCV_SBI_EXT, KVM_RISCV_SBI_EXT_STA), 0);
	rv_get("rv GET sbi_state STA shmem_lo without STA", vcpu, RV64(KVM_REG_RISCV_SBI_STATE, 0));
	rv_set("rv SET sbi_ext STA 1", vcpu, RV64(KVM_REG_RISCV_SBI_EXT, KVM_RISCV_SBI_EXT_STA), 1);
	rv_get("rv GET sbi_state STA shmem_lo after reset", vcpu, RV64(KVM_REG_RISCV_SBI_STATE, 0));

	/* The first KVM_RUN (even one that returns at once) freezes the configuration. */
	run = mmap(NULL, mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	if (run != MAP_FAILED) {
		run->immediate_exit = 1;
		IOCTL("rv KVM_RUN(immediate_exit)", vcpu, KVM_RUN, 0);
		munmap(run, mmap_size);
	}
	cur = 0;
	rv_one_reg(vcpu, KVM_GET_ONE_REG, d_id, &cur);
	printf("rv after run: D is %llu\n", (unsigned long long)cur);
	rv_set("rv after run: SET isa_ext D same", vcpu, d_id, cur);
	rv_set("rv after run: SET isa_ext D other", vcpu, d_id, !cur);
	rv_set("rv after run: SET isa_ext multi_dis 0 all", vcpu, RV64(KVM_REG_RISCV_ISA_EXT, KVM_REG_RISCV_ISA_MULTI_DIS), ~0ULL);
	rv_get("rv after run: GET isa_ext D", vcpu, d_id);
	cur = 0;
	rv_one_reg(vcpu, KVM_GET_ONE_REG, isa_id, &cur);
	rv_set("rv after run: SET config isa same", vcpu, isa_id, cur);
	rv_set("rv after run: SET config isa without D", vcpu, isa_id, cur & ~(1ULL << 3));
	rv_get("rv after run: GET config isa", vcpu, isa_id);
	rv_set("rv after run: SET config mvendorid other", vcpu, RV64(KVM_REG_RISCV_CONFIG, KVM_REG_RISCV_CONFIG_REG(mvendorid)), 1);
	rv_set("rv after run: SET config mvendorid same", vcpu, RV64(KVM_REG_RISCV_CONFIG, KVM_REG_RISCV_CONFIG_REG(mvendorid)), 0x489);
	rv_set("rv after run: SET sbi_ext DBCN 0", vcpu, RV64(KVM_REG_RISCV_SBI_EXT, KVM_RISCV_SBI_EXT_DBCN), 0);
	rv_set("rv after run: SET sbi_ext DBCN U32", vcpu, RV32(KVM_REG_RISCV_SBI_EXT, KVM_RISCV_SBI_EXT_DBCN), 0);
	rv_set("rv after run: SET core pc", vcpu, RV64(KVM_REG_RISCV_CORE, 0), 0x80400000);
	rv_get("rv after run: GET core pc", vcpu, RV64(KVM_REG_RISCV_CORE, 0));
	/*
	 * KVM_INTERRUPT from outside shows in sip (flushed on read), and a
	 * sip write replaces the changes not flushed yet. Then a timer event
	 * armed through ONE_REG that is already due: without Sstc it is
	 * delivered (sip.STIP, state off) without any KVM_RUN, as upstream's
	 * hrtimer does; with Sstc nothing changes.
	 */
	{
		uint64_t sip_id = RV64(KVM_REG_RISCV_CSR, KVM_REG_RISCV_CSR_REG(sip));
		struct kvm_interrupt irq = { .irq = KVM_INTERRUPT_SET };

		IOCTL("rv KVM_INTERRUPT set", vcpu, KVM_INTERRUPT, &irq);
		rv_get("rv GET sip after KVM_INTERRUPT set", vcpu, sip_id);
		irq.irq = KVM_INTERRUPT_UNSET;
		IOCTL("rv KVM_INTERRUPT unset", vcpu, KVM_INTERRUPT, &irq);
		rv_get("rv GET sip after KVM_INTERRUPT unset", vcpu, sip_id);
		irq.irq = KVM_INTERRUPT_SET;
		IOCTL("rv KVM_INTERRUPT set again", vcpu, KVM_INTERRUPT, &irq);
		rv_set("rv SET sip SSIP", vcpu, sip_id, 2);
		rv_get("rv GET sip after SET (KVM_INTERRUPT change dropped)", vcpu, sip_id);
		rv_set("rv SET sip 0", vcpu, sip_id, 0);
		rv_set("rv SET timer compare 1", vcpu, RV64(KVM_REG_RISCV_TIMER, KVM_REG_RISCV_TIMER_REG(compare)), 1);
		rv_set("rv SET timer state on (due)", vcpu, RV64(KVM_REG_RISCV_TIMER, KVM_REG_RISCV_TIMER_REG(state)), 1);
		usleep(20000);
		rv_get("rv GET timer state after due", vcpu, RV64(KVM_REG_RISCV_TIMER, KVM_REG_RISCV_TIMER_REG(state)));
		rv_get("rv GET sip after due timer", vcpu, sip_id);
	}
	printf("rv reg list n (first): %llu\n", (unsigned long long)n);
	close(vcpu);
	close(vm);
}

/*
 * riscv64 guests that misbehave: tiny hand-assembled programs run on a
 * vCPU of their own VM (64 KiB of RAM at GPA 0, pc 0, x1..x31 = 1..31,
 * stvec = GUEST_TRAP, a handler that puts scause/stval in a0/a1, a6 = 7
 * and makes the "done" SBI call). Every program ends with the "done" call
 * too: eid 0x08000000 (experimental, forwarded to userspace), fid a6 = 0.
 * Each KVM_RUN is a step: its result, exit_reason and the fields of the
 * exit; MMIO loads are completed with MMIO_DATA, other exits re-run up to
 * a limit; then a0, a1, pc, scause and stval.
 */
#define GUEST_RAM 0x10000UL
#define GUEST_TRAP 0x800
#define DONE_EID 0x08000000UL
#define MMIO_DATA 0x8877665544332211ULL
/* Encoders (RV64GC). */
#define I_T(imm, rs1, f3, rd, op) ((((uint32_t)(imm) & 0xfff) << 20) | ((rs1) << 15) | ((f3) << 12) | ((rd) << 7) | (op))
#define S_T(imm, rs2, rs1, f3) (((((uint32_t)(imm) >> 5) & 0x7f) << 25) | ((rs2) << 20) | ((rs1) << 15) | ((f3) << 12) | (((imm) & 31) << 7) | 0x23)
#define LOAD(f3, rd, rs1) I_T(0, rs1, f3, rd, 0x03)
#define STORE(f3, rs2, rs1) S_T(0, rs2, rs1, f3)
#define CSRR(rd, csr) I_T(csr, 0, 2, rd, 0x73)
#define CSRW(csr, rs1) I_T(csr, rs1, 1, 0, 0x73)
#define ADDI(rd, rs1, imm) I_T(imm, rs1, 0, rd, 0x13)
#define LUI(rd, imm20) (((uint32_t)(imm20) << 12) | ((rd) << 7) | 0x37)
#define AMO(f5, rs2, rs1, f3, rd) (((f5) << 27) | ((rs2) << 20) | ((rs1) << 15) | ((f3) << 12) | ((rd) << 7) | 0x2f)
#define C16(c) (0x00010000u | (uint32_t)(c)) /* a compressed insn, then c.nop */
#define ECALL 0x00000073u
/* The "done" call: a7 = DONE_EID, a6 = 0, ecall. */
#define DONE LUI(17, DONE_EID >> 12), ADDI(16, 0, 0), ECALL
#define T0 5
#define T1 6

static volatile sig_atomic_t rv_alarm;
static void rv_on_alarm(int sig) { (void)sig; rv_alarm = 1; }

struct rv_preset { int reg; uint64_t value; };

/*
 * A value for the transcript. A misaligned AMO makes the firmware (OpenSBI
 * emulates misaligned accesses in M-mode) send the guest to an address in
 * 0xffffffff00000000..0xfffffffffff00000 that differs from boot to boot;
 * such values print as "0xffffffff????????" (SBI error codes and -1 do not
 * fall in that range).
 */
static const char *rv_hx(uint64_t v)
{
	static char buf[8][24];
	static unsigned int n;
	char *b = buf[n++ % 8];

	if (v >= 0xffffffff00000000ULL && v < 0xfffffffffff00000ULL)
		return "0xffffffff????????";
	snprintf(b, sizeof(buf[0]), "%#llx", (unsigned long long)v);
	return b;
}

/* The handler at GUEST_TRAP: a0 = scause, a1 = stval, a6 = 7, the "done" call. */
static const uint32_t rv_trap[] = { CSRR(10, 0x142), CSRR(11, 0x143), ADDI(16, 0, 7),
				    LUI(17, DONE_EID >> 12), ECALL };

/*
 * The VM of a guest step: GUEST_RAM at GPA 0 (slot 0, `slot_flags`) holding
 * `code` (`size` bytes) at 0 and rv_trap at GUEST_TRAP; with
 * KVM_MEM_READONLY also a writable slot 1 at GPA 0x100000 on the same memory,
 * for the data the program stores. Prints the steps "rvg <name> VM",
 * "rvg <name> memslot" (and "rvg <name> memslot 1"). Returns the VM fd, with
 * the memory in *mem (GUEST_RAM bytes, for the caller to unmap), or -1 with
 * nothing left open.
 */
static int rv_guest_vm(int kvm, const char *name, const uint32_t *code, size_t size,
		       uint32_t slot_flags, uint8_t **mem)
{
	struct kvm_userspace_memory_region r;
	char what[200];
	int vm;

	snprintf(what, sizeof(what), "rvg %s VM", name);
	vm = IOCTL_FD(what, kvm, KVM_CREATE_VM, 0);
	if (vm < 0)
		return -1;
	*mem = mmap(NULL, GUEST_RAM, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (*mem == MAP_FAILED) {
		close(vm);
		return -1;
	}
	memcpy(*mem, code, size);
	memcpy(*mem + GUEST_TRAP, rv_trap, sizeof(rv_trap));
	r = (struct kvm_userspace_memory_region){ .slot = 0, .flags = slot_flags,
		.guest_phys_addr = 0, .memory_size = GUEST_RAM,
		.userspace_addr = (uint64_t)(uintptr_t)*mem };
	snprintf(what, sizeof(what), "rvg %s memslot", name);
	IOCTL(what, vm, KVM_SET_USER_MEMORY_REGION, &r);
	if (slot_flags & KVM_MEM_READONLY) {
		r = (struct kvm_userspace_memory_region){ .slot = 1, .guest_phys_addr = 0x100000,
			.memory_size = GUEST_RAM, .userspace_addr = (uint64_t)(uintptr_t)*mem };
		snprintf(what, sizeof(what), "rvg %s memslot 1", name);
		IOCTL(what, vm, KVM_SET_USER_MEMORY_REGION, &r);
	}
	return vm;
}

static void rv_guest(int kvm, long mmap_size, const char *name, const uint32_t *code,
		     unsigned int ncode, const struct rv_preset *pre, unsigned int npre,
		     uint32_t slot_flags)
{
	struct sigaction sa;
	struct kvm_run *run;
	char what[200];
	uint64_t v;
	unsigned int i;
	int vm, vcpu, k;
	uint8_t *mem;

	vm = rv_guest_vm(kvm, name, code, ncode * sizeof(uint32_t), slot_flags, &mem);
	if (vm < 0)
		return;
	snprintf(what, sizeof(what), "rvg %s vCPU", name);
	vcpu = IOCTL_FD(what, vm, KVM_CREATE_VCPU, 0);
	if (vcpu < 0)
		goto out_mem;
	run = mmap(NULL, mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	if (run == MAP_FAILED)
		goto out_vcpu;
	for (i = 1; i < 32; i++) {
		v = i;
		rv_one_reg(vcpu, KVM_SET_ONE_REG, RV64(KVM_REG_RISCV_CORE, i), &v);
	}
	for (i = 0; i < npre; i++) {
		v = pre[i].value;
		snprintf(what, sizeof(what), "rvg %s set x%d", name, pre[i].reg);
		RV_SET(what, vcpu, RV64(KVM_REG_RISCV_CORE, pre[i].reg), &v);
	}
	v = 0;
	snprintf(what, sizeof(what), "rvg %s set pc", name);
	RV_SET(what, vcpu, RV64(KVM_REG_RISCV_CORE, KVM_REG_RISCV_CORE_REG(regs.pc)), &v);
	v = GUEST_TRAP;
	snprintf(what, sizeof(what), "rvg %s set stvec", name);
	RV_SET(what, vcpu, RV64(KVM_REG_RISCV_CSR, KVM_REG_RISCV_CSR_REG(stvec)), &v);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = rv_on_alarm; /* no SA_RESTART: a hung KVM_RUN ends in EINTR */
	sigaction(SIGALRM, &sa, NULL);
	for (k = 0; k < 8; k++) {
		long ret;
		int stop = 1;

		rv_alarm = 0;
		alarm(3);
		ret = ioctl(vcpu, KVM_RUN, 0);
		alarm(0);
		snprintf(what, sizeof(what), "rvg %s run %d", name, k);
		if (ret < 0) {
			step(what, ret, 0);
			break;
		}
		switch (run->exit_reason) {
		case KVM_EXIT_MMIO:
			printf("%s: mmio addr %#llx len %u write %u data %#llx\n", what,
			       (unsigned long long)run->mmio.phys_addr, run->mmio.len,
			       run->mmio.is_write, run->mmio.is_write ?
			       (unsigned long long)(*(uint64_t *)run->mmio.data &
			       (run->mmio.len >= 8 ? ~0ULL : (1ULL << (8 * run->mmio.len)) - 1)) : 0ULL);
			if (!run->mmio.is_write) {
				uint64_t d = MMIO_DATA;

				memcpy(run->mmio.data, &d, 8);
			}
			stop = 0;
			break;
		case KVM_EXIT_RISCV_SBI:
			printf("%s: sbi eid %s fid %s args %s %s %s %s %s %s\n", what,
			       rv_hx(run->riscv_sbi.extension_id), rv_hx(run->riscv_sbi.function_id),
			       rv_hx(run->riscv_sbi.args[0]), rv_hx(run->riscv_sbi.args[1]),
			       rv_hx(run->riscv_sbi.args[2]), rv_hx(run->riscv_sbi.args[3]),
			       rv_hx(run->riscv_sbi.args[4]), rv_hx(run->riscv_sbi.args[5]));
			stop = run->riscv_sbi.extension_id == DONE_EID;
			break;
		case KVM_EXIT_RISCV_CSR:
			printf("%s: csr %#lx new %#lx mask %#lx\n", what, run->riscv_csr.csr_num,
			       run->riscv_csr.new_value, run->riscv_csr.write_mask);
			run->riscv_csr.ret_value = 0x5a5a;
			stop = 0;
			break;
		case KVM_EXIT_SYSTEM_EVENT:
			printf("%s: system_event type %u ndata %u data0 %#llx\n", what,
			       run->system_event.type, run->system_event.ndata,
			       (unsigned long long)run->system_event.data[0]);
			break;
		case KVM_EXIT_INTERNAL_ERROR:
			printf("%s: internal error suberror %u\n", what, run->internal.suberror);
			break;
		default:
			printf("%s: exit_reason %u\n", what, run->exit_reason);
			break;
		}
		fflush(stdout);
		if (stop)
			break;
	}
	{
		static const struct { const char *n; uint64_t id; } regs[] = {
			{ "a0", RV64(KVM_REG_RISCV_CORE, 10) }, { "a1", RV64(KVM_REG_RISCV_CORE, 11) },
			{ "pc", RV64(KVM_REG_RISCV_CORE, KVM_REG_RISCV_CORE_REG(regs.pc)) },
			{ "scause", RV64(KVM_REG_RISCV_CSR, KVM_REG_RISCV_CSR_REG(scause)) },
			{ "stval", RV64(KVM_REG_RISCV_CSR, KVM_REG_RISCV_CSR_REG(stval)) },
			{ "sepc", RV64(KVM_REG_RISCV_CSR, KVM_REG_RISCV_CSR_REG(sepc)) },
		};

		for (i = 0; i < sizeof(regs) / sizeof(regs[0]); i++) {
			snprintf(what, sizeof(what), "rvg %s %s", name, regs[i].n);
			v = 0;
			if (RV_GET(what, vcpu, regs[i].id, &v) == 0)
				printf("%s value: %s\n", what, rv_hx(v));
		}
	}
	munmap(run, mmap_size);
out_vcpu:
	close(vcpu);
out_mem:
	close(vm);
	munmap(mem, GUEST_RAM);
}

#define N(a) (sizeof(a) / sizeof((a)[0]))
/*
 * 4. An IPI storm: 4 vCPUs, one thread each, each sending RV_STORM_N SBI
 * IPIs (vCPUs 0 and 2 to every hart, 1 to the next, 3 with hart_mask_base
 * -1, i.e. all) without waiting for any, then the "done" call with a0 = the
 * sends that returned 0 and a1 = the others. Only counts and final exits are
 * printed (never the order of anything).
 */
#define RV_STORM_N 2000
#define B_T(imm, rs2, rs1, f3) (((((uint32_t)(imm)) >> 12 & 1) << 31) | ((((uint32_t)(imm)) >> 5 & 0x3f) << 25) | \
	((rs2) << 20) | ((rs1) << 15) | ((f3) << 12) | ((((uint32_t)(imm)) >> 1 & 0xf) << 8) | \
	((((uint32_t)(imm)) >> 11 & 1) << 7) | 0x63)

struct rv_storm_vcpu {
	int fd, id;
	struct kvm_run *run;
	uint64_t mask, base;
	long ret;
	int err, exits;
	uint32_t exit_reason;
	uint64_t eid, a0, a1;
};

static void *rv_storm_thread(void *p)
{
	struct rv_storm_vcpu *c = p;
	struct kvm_mp_state mp = { KVM_MP_STATE_RUNNABLE };
	uint64_t v;
	int i;

	/* Upstream powers off every vCPU but vCPU 0 at creation (for HSM). */
	ioctl(c->fd, KVM_SET_MP_STATE, &mp);

	v = RV_STORM_N;
	rv_one_reg(c->fd, KVM_SET_ONE_REG, RV64(KVM_REG_RISCV_CORE, 20), &v);
	v = 0;
	rv_one_reg(c->fd, KVM_SET_ONE_REG, RV64(KVM_REG_RISCV_CORE, 19), &v);
	rv_one_reg(c->fd, KVM_SET_ONE_REG, RV64(KVM_REG_RISCV_CORE, 21), &v);
	rv_one_reg(c->fd, KVM_SET_ONE_REG, RV64(KVM_REG_RISCV_CORE, KVM_REG_RISCV_CORE_REG(regs.pc)), &v);
	v = c->mask;
	rv_one_reg(c->fd, KVM_SET_ONE_REG, RV64(KVM_REG_RISCV_CORE, 18), &v);
	v = c->base;
	rv_one_reg(c->fd, KVM_SET_ONE_REG, RV64(KVM_REG_RISCV_CORE, 22), &v);
	v = GUEST_TRAP;
	rv_one_reg(c->fd, KVM_SET_ONE_REG, RV64(KVM_REG_RISCV_CSR, KVM_REG_RISCV_CSR_REG(stvec)), &v);
	for (i = 0; i < 16; i++) {
		c->ret = ioctl(c->fd, KVM_RUN, 0);
		c->err = c->ret < 0 ? errno : 0;
		c->exits++;
		c->exit_reason = c->run->exit_reason;
		if (c->ret < 0 || c->run->exit_reason != KVM_EXIT_RISCV_SBI)
			break;
		c->eid = c->run->riscv_sbi.extension_id;
		c->a0 = c->run->riscv_sbi.args[0];
		c->a1 = c->run->riscv_sbi.args[1];
		if (c->eid == DONE_EID)
			break;
	}
	return NULL;
}

static void rv_ipi_storm(int kvm, long mmap_size)
{
	static const uint32_t code[] = {
		LUI(17, 0x735), ADDI(17, 17, 0x49), ADDI(16, 0, 0),	/* 0x00: a7 = IPI, a6 = 0 */
		ADDI(10, 18, 0), ADDI(11, 22, 0), ECALL,		/* 0x0c: send_ipi(s2, s6) */
		B_T(12, 0, 10, 1),					/* 0x18: bne a0, 0, 0x24 */
		ADDI(19, 19, 1), 0x0080006f,				/* 0x1c: s3++, j 0x28 */
		ADDI(21, 21, 1),					/* 0x24: s5++ */
		ADDI(20, 20, -1), B_T(-0x2c, 0, 20, 1),			/* 0x28: s4--, bnez s4, 0 */
		ADDI(10, 19, 0), ADDI(11, 21, 0), DONE,			/* 0x30 */
	};
	struct rv_storm_vcpu c[4];
	pthread_t t[4];
	char what[120];
	uint8_t *mem;
	int vm, i, started[4] = { 0 };

	vm = rv_guest_vm(kvm, "ipi storm", code, sizeof(code), 0, &mem);
	if (vm < 0)
		return;
	memset(c, 0, sizeof(c));
	for (i = 0; i < 4; i++) {
		c[i].id = i;
		c[i].mask = (i == 1) ? 1ULL << ((i + 1) % 4) : 0xf;
		c[i].base = (i == 3) ? ~0ULL : 0;
		snprintf(what, sizeof(what), "rvg ipi storm vCPU %d", i);
		c[i].fd = IOCTL_FD(what, vm, KVM_CREATE_VCPU, i);
		c[i].run = MAP_FAILED;
		if (c[i].fd >= 0)
			c[i].run = mmap(NULL, mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, c[i].fd, 0);
	}
	for (i = 0; i < 4; i++)
		if (c[i].run != MAP_FAILED)
			started[i] = pthread_create(&t[i], NULL, rv_storm_thread, &c[i]) == 0;
	for (i = 0; i < 4; i++) {
		struct timespec until;

		if (!started[i])
			continue;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += 30;
		snprintf(what, sizeof(what), "rvg ipi storm vCPU %d", i);
		if (pthread_timedjoin_np(t[i], NULL, &until) != 0) {
			printf("%s: did not finish in 30 s\n", what);
			started[i] = 0;
			continue;
		}
		if (c[i].ret < 0)
			printf("%s: KVM_RUN -%s after %d exits\n", what,
			       errname(c[i].err) ? errname(c[i].err) : "E?", c[i].exits);
		else
			printf("%s: exit_reason %u eid %s ok %s failed %s after %d exits\n", what,
			       c[i].exit_reason, rv_hx(c[i].eid), rv_hx(c[i].a0), rv_hx(c[i].a1), c[i].exits);
	}
	for (i = 0; i < 4; i++) {
		if (c[i].run != MAP_FAILED)
			munmap(c[i].run, mmap_size);
		if (c[i].fd >= 0 && started[i])
			close(c[i].fd);
	}
	close(vm);
	munmap(mem, GUEST_RAM);
}

/*
 * 7. HSM and receiving an IPI, 2 vCPUs. vCPU 0 starts hart 1 at 0x100 (opaque
 * 0x55), waits until hart 1 has written 1 to 0x400 (not until hart_status
 * says started: a started hart's reset, done by its own thread, clears its
 * pending interrupts on both backends, so an IPI sent before could be lost),
 * waits until hart_status of hart 1 is no longer "started" (bounded: hart 1
 * sleeps in WFI, which upstream reports as suspended, 4), sends it an IPI,
 * waits until hart_status says stopped, and ends with a0 = the start call's
 * error, a1 = (the status seen while hart 1 slept << 32) | the IPI's error. vCPU 1 (stopped at creation) keeps
 * a1/a0 of its start in s3/s4, sets sie.SSIE (SIE off), writes the flag,
 * waits in WFI, polls sip.SSIP (bounded), keeps sip in s5, clears SSIP
 * itself (csrc sip), keeps sip in s6, and stops itself with HSM hart_stop:
 * its KVM_RUN then sleeps until a signal ends it (EINTR). Only each vCPU's
 * final state is printed (nothing depends on the order of the two threads).
 */
struct rv_hsm_vcpu {
	int fd;
	struct kvm_run *run;
	long ret;
	int err, exits;
	uint32_t exit_reason;
	uint64_t eid, a0, a1;
};

static void rv_on_usr1(int sig) { (void)sig; }

static void *rv_hsm_thread(void *p)
{
	struct rv_hsm_vcpu *c = p;
	int i;

	for (i = 0; i < 8; i++) {
		c->ret = ioctl(c->fd, KVM_RUN, 0);
		c->err = c->ret < 0 ? errno : 0;
		c->exits++;
		c->exit_reason = c->run->exit_reason;
		if (c->ret < 0 || c->run->exit_reason != KVM_EXIT_RISCV_SBI)
			break;
		c->eid = c->run->riscv_sbi.extension_id;
		c->a0 = c->run->riscv_sbi.args[0];
		c->a1 = c->run->riscv_sbi.args[1];
		if (c->eid == DONE_EID)
			break;
	}
	return NULL;
}

#define RV_HSM LUI(17, 0x485), ADDI(17, 17, 0x34d)	/* a7 = "HSM" */
#define RV_IPI LUI(17, 0x735), ADDI(17, 17, 0x49)	/* a7 = "sPI" */
static void rv_hsm_ipi(int kvm, long mmap_size)
{
	static const uint32_t v0[] = {
		RV_HSM, ADDI(16, 0, 0), ADDI(10, 0, 1), ADDI(11, 0, 0x100),	/* 0x00 */
		ADDI(12, 0, 0x55), ECALL, ADDI(9, 10, 0),			/* 0x14: start(1, 0x100, 0x55) */
		ADDI(T0, 0, 0x400), LOAD(2, 7, T0), B_T(-4, 0, 7, 0),		/* 0x20: until *0x400 != 0 */
		RV_HSM, ADDI(16, 0, 2), LUI(19, 0x20),				/* 0x2c: x19 = 128K */
		ADDI(10, 0, 1), ECALL, B_T(12, 0, 11, 1),			/* 0x3c: until status(1) != 0 */
		ADDI(19, 19, -1), B_T(-16, 0, 19, 1),				/*       (bounded) */
		ADDI(20, 11, 0),						/* 0x50: s4 = that status */
		RV_IPI, ADDI(16, 0, 0), ADDI(10, 0, 2), ADDI(11, 0, 0),	/* 0x54 */
		ECALL, ADDI(18, 10, 0),						/* 0x68: send_ipi(2, 0) */
		RV_HSM, ADDI(16, 0, 2), ADDI(10, 0, 1), ECALL,			/* 0x70 */
		ADDI(T0, 0, 1), B_T(-12, T0, 11, 1),				/* 0x84: until status(1) == 1 */
		I_T(32, 20, 1, 20, 0x13),					/* 0x8c: slli s4, s4, 32 */
		(20 << 20) | (18 << 15) | (6 << 12) | (11 << 7) | 0x33,	/* 0x90: a1 = s4 | s2 */
		ADDI(10, 9, 0), DONE,						/* 0x94 */
	};
	static const uint32_t v1[] = {
		ADDI(19, 11, 0), ADDI(20, 10, 0),				/* 0x100: s3 = a1, s4 = a0 */
		ADDI(T1, 0, 2), I_T(0x104, T1, 2, 0, 0x73),			/* 0x108: csrs sie, SSIE */
		ADDI(T0, 0, 0x400), ADDI(T1, 0, 1), STORE(2, T1, T0),		/* 0x110: *0x400 = 1 (ready) */
		0x10500073u, LUI(18, 0x100),					/* 0x11c: wfi; x18 = 1M */
		CSRR(7, 0x144), I_T(2, 7, 7, 7, 0x13), B_T(12, 0, 7, 1),	/* 0x124: until sip.SSIP */
		ADDI(18, 18, -1), B_T(-16, 0, 18, 1),
		CSRR(21, 0x144), ADDI(T1, 0, 2), I_T(0x144, T1, 3, 0, 0x73),	/* 0x138: s5 = sip; csrc sip */
		CSRR(22, 0x144),						/* 0x144: s6 = sip */
		RV_HSM, ADDI(16, 0, 1), ECALL,					/* 0x148: hart_stop */
		DONE,
	};
	static const struct { const char *n; uint64_t id; } regs[] = {
		{ "s3 (a1 at start)", RV64(KVM_REG_RISCV_CORE, 19) },
		{ "s4 (a0 at start)", RV64(KVM_REG_RISCV_CORE, 20) },
		{ "s5 (sip pending)", RV64(KVM_REG_RISCV_CORE, 21) },
		{ "s6 (sip cleared)", RV64(KVM_REG_RISCV_CORE, 22) },
		{ "pc", RV64(KVM_REG_RISCV_CORE, KVM_REG_RISCV_CORE_REG(regs.pc)) },
	};
	uint32_t code[0x200 / 4] = { 0 };
	struct rv_hsm_vcpu c[2];
	struct sigaction sa;
	pthread_t t[2];
	char what[120];
	uint8_t *mem;
	uint64_t v;
	unsigned int k;
	int vm, i, started[2] = { 0 };

	memcpy(code, v0, sizeof(v0));
	memcpy(code + 0x100 / 4, v1, sizeof(v1));
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = rv_on_usr1; /* no SA_RESTART: the signal ends KVM_RUN */
	sigaction(SIGUSR1, &sa, NULL);
	vm = rv_guest_vm(kvm, "hsm ipi", code, sizeof(code), 0, &mem);
	if (vm < 0)
		return;
	memset(c, 0, sizeof(c));
	for (i = 0; i < 2; i++) {
		snprintf(what, sizeof(what), "rvg hsm ipi vCPU %d", i);
		c[i].fd = IOCTL_FD(what, vm, KVM_CREATE_VCPU, i);
		c[i].run = MAP_FAILED;
		if (c[i].fd < 0)
			continue;
		c[i].run = mmap(NULL, mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, c[i].fd, 0);
		v = GUEST_TRAP;
		rv_one_reg(c[i].fd, KVM_SET_ONE_REG, RV64(KVM_REG_RISCV_CSR, KVM_REG_RISCV_CSR_REG(stvec)), &v);
	}
	if (c[1].fd >= 0) {
		struct kvm_mp_state mp = { 0xff };

		snprintf(what, sizeof(what), "rvg hsm ipi vCPU 1 MP state before");
		if (IOCTL(what, c[1].fd, KVM_GET_MP_STATE, &mp) == 0)
			printf("%s: %u\n", what, mp.mp_state);
	}
	for (i = 1; i >= 0; i--)
		if (c[i].run != MAP_FAILED)
			started[i] = pthread_create(&t[i], NULL, rv_hsm_thread, &c[i]) == 0;
	for (i = 0; i < 2; i++) {
		struct timespec until;
		int r = -1;

		if (!started[i])
			continue;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += 30;
		snprintf(what, sizeof(what), "rvg hsm ipi vCPU %d", i);
		if (i == 1) {
			/* Stopped by its own hart_stop: a signal ends its KVM_RUN. */
			for (k = 0; k < 300 && r != 0; k++) {
				struct timespec step;

				pthread_kill(t[1], SIGUSR1);
				clock_gettime(CLOCK_REALTIME, &step);
				step.tv_nsec += 100000000;
				if (step.tv_nsec >= 1000000000) {
					step.tv_sec++;
					step.tv_nsec -= 1000000000;
				}
				r = pthread_timedjoin_np(t[1], NULL, &step);
			}
		} else {
			r = pthread_timedjoin_np(t[i], NULL, &until);
		}
		if (r != 0) {
			printf("%s: did not finish in 30 s\n", what);
			started[i] = 0;
			continue;
		}
		if (c[i].ret < 0)
			printf("%s: KVM_RUN -%s exit_reason %u after %d exits\n", what,
			       errname(c[i].err) ? errname(c[i].err) : "E?", c[i].exit_reason, c[i].exits);
		else
			printf("%s: exit_reason %u eid %s a0 %s a1 %s after %d exits\n", what,
			       c[i].exit_reason, rv_hx(c[i].eid), rv_hx(c[i].a0), rv_hx(c[i].a1), c[i].exits);
	}
	if (started[1]) {
		struct kvm_mp_state mp = { 0xff };

		for (k = 0; k < N(regs); k++) {
			snprintf(what, sizeof(what), "rvg hsm ipi vCPU 1 %s", regs[k].n);
			v = 0;
			if (RV_GET(what, c[1].fd, regs[k].id, &v) == 0)
				printf("%s value: %s\n", what, rv_hx(v));
		}
		snprintf(what, sizeof(what), "rvg hsm ipi vCPU 1 MP state after");
		if (IOCTL(what, c[1].fd, KVM_GET_MP_STATE, &mp) == 0)
			printf("%s: %u\n", what, mp.mp_state);
	}
	for (i = 0; i < 2; i++) {
		if (c[i].run != MAP_FAILED)
			munmap(c[i].run, mmap_size);
		if (c[i].fd >= 0 && (started[i] || c[i].run == MAP_FAILED))
			close(c[i].fd);
	}
	close(vm);
	munmap(mem, GUEST_RAM);
}
#undef RV_HSM
#undef RV_IPI

static void rv_guests(int kvm, long mmap_size)
{
	static const struct { const char *n; uint32_t csr; } csrs[] = {
		{ "mstatus", 0x300 }, { "hstatus", 0x600 }, { "hpmcounter3", 0xc03 },
		{ "seed", 0x015 }, { "csr 0x1ff", 0x1ff }, { "cycle", 0xc00 }, { "time", 0xc01 },
		{ "sstatus", 0x100 }, { "vsstatus", 0x200 }, { "mhartid", 0xf14 },
	};
	static const struct { const char *n; uint64_t a; } addrs[] = {
		{ "no slot", 0x10000000 }, { "misaligned", 0x10000003 },
		{ "gpa top", (1ULL << 41) - 8 }, { "beyond gpa bits", 1ULL << 50 },
		{ "ram misaligned", 0x1001 }, { "-1", ~0ULL },
	};
	static const struct { const char *n; uint32_t insn; } mem_ops[] = {
		{ "lb", LOAD(0, T1, T0) }, { "lh", LOAD(1, T1, T0) }, { "lw", LOAD(2, T1, T0) },
		{ "ld", LOAD(3, T1, T0) }, { "lbu", LOAD(4, T1, T0) }, { "lhu", LOAD(5, T1, T0) },
		{ "lwu", LOAD(6, T1, T0) },
		{ "sb", STORE(0, T1, T0) }, { "sh", STORE(1, T1, T0) }, { "sw", STORE(2, T1, T0) },
		{ "sd", STORE(3, T1, T0) },
		/* rs1' = x8 (s0), rd'/rs2' = x9 (s1) */
		{ "c.lw", C16(0x4000 | (0 << 7) | (1 << 2)) }, { "c.sw", C16(0xc000 | (0 << 7) | (1 << 2)) },
		{ "c.ld", C16(0x6000 | (0 << 7) | (1 << 2)) }, { "c.sd", C16(0xe000 | (0 << 7) | (1 << 2)) },
		{ "amoadd.w", AMO(0, T1, T0, 2, 7) }, { "amoswap.d", AMO(1, T1, T0, 3, 7) },
		{ "lr.w", AMO(2, 0, T0, 2, 7) }, { "sc.d", AMO(3, T1, T0, 3, 7) },
	};
	static const struct { const char *n; uint64_t eid, fid, a0, a1, a2; } sbis[] = {
		{ "unknown eid", 0x12345678, 0, 1, 2, 3 }, { "eid -1", ~0ULL, ~0ULL, 0, 0, 0 },
		{ "base unknown fid", 0x10, 99, 0, 0, 0 },
		{ "base probe 0x12345678", 0x10, 3, 0x12345678, 0, 0 },
		{ "base probe -1", 0x10, 3, ~0ULL, 0, 0 },
		{ "base probe HSM", 0x10, 3, 0x48534d, 0, 0 },
		{ "base probe experimental", 0x10, 3, DONE_EID, 0, 0 },
		{ "hsm start hart 7", 0x48534d, 0, 7, 0x1000, 0 },
		{ "hsm start hart -1", 0x48534d, 0, ~0ULL, 0x1000, 0 },
		{ "hsm start self", 0x48534d, 0, 0, ~0ULL, 0 },
		{ "hsm status -1", 0x48534d, 2, ~0ULL, 0, 0 },
		{ "hsm status 0", 0x48534d, 2, 0, 0, 0 },
		{ "hsm status 1", 0x48534d, 2, 1, 0, 0 },
		{ "hsm suspend junk type", 0x48534d, 3, 0x12345, 0, 0 },
		{ "hsm fid 9", 0x48534d, 9, 0, 0, 0 },
		{ "ipi mask -1 base 0", 0x735049, 0, ~0ULL, 0, 0 },
		{ "ipi mask -1 base -1", 0x735049, 0, ~0ULL, ~0ULL, 0 },
		{ "ipi mask 0 base 5", 0x735049, 0, 1, 5, 0 },
		{ "ipi mask huge base", 0x735049, 0, 3, 1ULL << 40, 0 },
		{ "ipi fid 1", 0x735049, 1, 0, 0, 0 },
		{ "rfence i all", 0x52464e43, 0, 0, ~0ULL, 0 },
		{ "rfence vma junk", 0x52464e43, 1, 1, 0, 0xfffffffffffff000ULL },
		{ "rfence vma huge", 0x52464e43, 1, ~0ULL, ~0ULL, 0 },
		{ "rfence hfence", 0x52464e43, 3, 1, 0, 0 },
		{ "rfence fid 99", 0x52464e43, 99, 0, 0, 0 },
		{ "time max", 0x54494d45, 0, ~0ULL, 0, 0 },
		{ "time fid 1", 0x54494d45, 1, 0, 0, 0 },
		{ "srst junk type", 0x53525354, 0, 0x1000, 0, 0 },
		{ "srst junk reason", 0x53525354, 0, 0, 0x12345, 0 },
		{ "srst fid 1", 0x53525354, 1, 0, 0, 0 },
		{ "sta junk address", 0x535441, 0, 0x12345, 0, 0 },
		{ "sta misaligned", 0x535441, 0, 0x1004, 0, 0 },
		{ "sta flags", 0x535441, 0, 0x1000, 0, 1 },
		{ "sta hi", 0x535441, 0, 0x1000, 1, 0 },
		{ "sta disable", 0x535441, 0, ~0ULL, ~0ULL, 0 },
		{ "sta no slot", 0x535441, 0, 0x10000000, 0, 0 },
		{ "legacy set_timer", 0, 0, ~0ULL, 0, 0 },
		{ "legacy putchar", 1, 0, 'x', 0, 0 },
		{ "legacy getchar", 2, 0, 0, 0, 0 },
		{ "legacy clear_ipi", 3, 0, 0, 0, 0 },
		{ "legacy send_ipi junk", 4, 0, 0x12345, 0, 0 },
		{ "legacy send_ipi null", 4, 0, 0, 0, 0 },
		{ "legacy fence_i", 5, 0, 0, 0, 0 },
		{ "legacy sfence junk", 6, 0, 0x12345, 0, 0 },
		{ "legacy sfence asid", 7, 0, 0, 0, 0 },
		{ "legacy shutdown", 8, 0, 0, 0, 0 },
		{ "legacy 9", 9, 0, 0, 0, 0 },
		{ "dbcn write junk", 0x4442434e, 0, 8, 0x10000000, 0 },
		{ "susp junk", 0x53555350, 0, 0x12345, 0, 0 },
		{ "pmu junk", 0x504d55, 99, 0, 0, 0 },
		{ "fwft junk", 0x46574654, 0, 0x12345, 0, 0 },
		{ "vendor", 0x09000000, 1, 2, 3, 4 },
	};
	char name[160];
	unsigned int i, j;

	/* 1. CSR reads and writes from VS-mode. */
	for (i = 0; i < N(csrs); i++) {
		uint32_t rd[] = { CSRR(T1, csrs[i].csr), DONE };
		uint32_t wr[] = { CSRW(csrs[i].csr, 0), DONE };

		snprintf(name, sizeof(name), "csrr %s", csrs[i].n);
		rv_guest(kvm, mmap_size, name, rd, N(rd), NULL, 0, 0);
		snprintf(name, sizeof(name), "csrw %s", csrs[i].n);
		rv_guest(kvm, mmap_size, name, wr, N(wr), NULL, 0, 0);
	}
	/* 2. Loads, stores and AMOs to wild addresses. */
	for (i = 0; i < N(mem_ops); i++) {
		for (j = 0; j < N(addrs); j++) {
			struct rv_preset pre[] = { { T0, addrs[j].a }, { 8, addrs[j].a },
						   { T1, 0x0123456789abcdefULL }, { 9, 0xfedcba9876543210ULL } };
			uint32_t c[] = { mem_ops[i].insn, ADDI(10, T1, 0), ADDI(11, 9, 0), DONE };

			snprintf(name, sizeof(name), "%s %s", mem_ops[i].n, addrs[j].n);
			rv_guest(kvm, mmap_size, name, c, N(c), pre, N(pre), 0);
		}
	}
	/* 3. SBI calls with junk. */
	for (i = 0; i < N(sbis); i++) {
		struct rv_preset pre[] = { { 17, sbis[i].eid }, { 16, sbis[i].fid }, { 10, sbis[i].a0 },
					   { 11, sbis[i].a1 }, { 12, sbis[i].a2 } };
		uint32_t c[] = { ECALL, DONE };

		snprintf(name, sizeof(name), "sbi %s", sbis[i].n);
		rv_guest(kvm, mmap_size, name, c, N(c), pre, N(pre), 0);
	}
	/* 5. A store to a read-only memslot; a fetch from where no memslot is. */
	{
		struct rv_preset pre[] = { { T0, 0x100 }, { T1, 0x55 } };
		uint32_t c[] = { STORE(2, T1, T0), LOAD(2, 10, T0), DONE };
		struct rv_preset jpre[] = { { T0, 0x10000000 } };
		uint32_t j2[] = { I_T(0, T0, 0, 1, 0x67) /* jalr ra, 0(t0) */, DONE };

		rv_guest(kvm, mmap_size, "sw read-only slot", c, N(c), pre, N(pre), KVM_MEM_READONLY);
		rv_guest(kvm, mmap_size, "jump to no slot", j2, N(j2), jpre, N(jpre), 0);
		jpre[0].value = 1ULL << 50;
		rv_guest(kvm, mmap_size, "jump beyond gpa bits", j2, N(j2), jpre, N(jpre), 0);
	}
	/* 7. HSM start/status/stop and an IPI received in WFI (above). */
	rv_hsm_ipi(kvm, mmap_size);
	/*
	 * 6. The guest timer through SBI set_timer (vstimecmp with Sstc, the
	 * hrtimer fallback without: make check runs kvm-diff on a host
	 * without Sstc too). sie.STIE on, sstatus.SIE off; WFI must wake once
	 * the event is due; then sip.STIP is polled (at most RV_POLL times:
	 * with Sstc the emulated hart raises the interrupt a little after the
	 * backend saw the deadline pass and ended WFI; without the poll
	 * upstream KVM itself lost it in one run of two) and SIE set, so the
	 * trap (scause = S timer) is taken at the insn after "csrsi sstatus,
	 * SIE" and the handler ends the run with a0 = scause. The same for an
	 * event already due. Then one withdrawn by the next set_timer: a0 =
	 * sip while pending, a1 = sip after set_timer(-1), and no trap.
	 */
	{
#define RV_WFI 0x10500073u
#define RV_STIE_ON ADDI(T1, 0, 0x20), I_T(0x104, T1, 2, 0, 0x73) /* csrs sie, t1 */
#define RV_SIE_ON I_T(0x100, 2, 6, 0, 0x73) /* csrsi sstatus, SIE */
	/* Until sip.STIP or x18 runs out: t2 = sip & STIP; bnez t2, out; x18--; bnez x18, back. */
#define RV_POLL_STIP CSRR(7, 0x144), I_T(0x20, 7, 7, 7, 0x13), B_T(12, 0, 7, 1), ADDI(18, 18, -1), \
	B_T(-16, 0, 18, 1)
#define RV_POLL 2000000
		struct rv_preset pre[] = { { 17, 0x54494d45 }, { 16, 0 }, { 18, RV_POLL } };
		uint32_t fire[] = { CSRR(10, 0xc01), ADDI(10, 10, 1000), ECALL, RV_STIE_ON, RV_WFI,
				    RV_POLL_STIP, RV_SIE_ON, DONE };
		uint32_t past[] = { CSRR(10, 0xc01), ADDI(10, 0, 1), ECALL, RV_STIE_ON, RV_WFI,
				    RV_POLL_STIP, RV_SIE_ON, DONE };
		uint32_t withdraw[] = { CSRR(10, 0xc01), ADDI(10, 10, 100), ECALL, RV_STIE_ON, RV_WFI,
					RV_POLL_STIP, CSRR(9, 0x144), ADDI(10, 0, -1), ECALL,
					CSRR(11, 0x144), RV_SIE_ON, ADDI(10, 9, 0), DONE };

		rv_guest(kvm, mmap_size, "timer fires in wfi", fire, N(fire), pre, N(pre), 0);
		rv_guest(kvm, mmap_size, "timer already due", past, N(past), pre, N(pre), 0);
		rv_guest(kvm, mmap_size, "timer withdrawn", withdraw, N(withdraw), pre, N(pre), 0);
#undef RV_WFI
#undef RV_STIE_ON
#undef RV_SIE_ON
#undef RV_POLL_STIP
#undef RV_POLL
	}
}

#endif

int main(void)
{
	long page = sysconf(_SC_PAGESIZE), mmap_size, max_id;
	int kvm, vm, vcpu, vcpu1;
	struct kvm_enable_cap ec;
	struct kvm_dirty_log log;
	struct kvm_clear_dirty_log clr;
	uint64_t bitmap[4];
	struct kvm_run *run;
	char *mem, *ro;

	setvbuf(stdout, NULL, _IOLBF, 0);
	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0) {
		printf("open /dev/kvm: -E%d\n", errno);
		return 1;
	}
	IOCTL("KVM_GET_API_VERSION", kvm, KVM_GET_API_VERSION, 0);
	mmap_size = IOCTL("KVM_GET_VCPU_MMAP_SIZE", kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	check_caps("dev", kvm);

	/* Machine types. */
#ifdef __aarch64__
	IOCTL_FD("KVM_CREATE_VM(type 0x100)", kvm, KVM_CREATE_VM, 0x100);
	IOCTL_FD("KVM_CREATE_VM(ipa 31)", kvm, KVM_CREATE_VM, 31);
	IOCTL_FD("KVM_CREATE_VM(ipa 64)", kvm, KVM_CREATE_VM, 64);
	IOCTL_FD("KVM_CREATE_VM(protected)", kvm, KVM_CREATE_VM, 1UL << 31);
	vm = IOCTL_FD("KVM_CREATE_VM(ipa 36)", kvm, KVM_CREATE_VM, 36);
	if (vm >= 0) {
		REGION("36-bit VM: slot at 64 GiB", vm, 0, 0, 1ULL << 36, page, NULL);
		close(vm);
	}
#endif
#ifdef __riscv
	/* riscv ignores the type. */
	vm = IOCTL_FD("KVM_CREATE_VM(type 7)", kvm, KVM_CREATE_VM, 7);
	if (vm >= 0)
		close(vm);
#endif
	vm = IOCTL_FD("KVM_CREATE_VM(0)", kvm, KVM_CREATE_VM, 0);
	if (vm < 0)
		return 1;
	check_caps("vm", vm);
	stats("vm", IOCTL_FD("vm KVM_GET_STATS_FD", vm, KVM_GET_STATS_FD, 0));

	/* Memslots. */
	mem = mmap(NULL, 128 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ro = mmap(NULL, 4 * page, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED || ro == MAP_FAILED)
		return 1;
	REGION("slot 0 create", vm, 0, 0, 0x100000, 16 * page, mem);
	REGION("slot 0 same again", vm, 0, 0, 0x100000, 16 * page, mem);
	REGION("slot 1 overlapping", vm, 1, 0, 0x100000 + page, page, mem);
	REGION("slot 1 touching", vm, 1, 0, 0x100000 + 16 * page, page, mem);
	REGION("slot 2 unaligned gpa", vm, 2, 0, 0x200000 + 1, page, mem);
	REGION("slot 2 unaligned size", vm, 2, 0, 0x200000, page + 1, mem);
	REGION("slot 2 unaligned hva", vm, 2, 0, 0x200000, page, mem + 1);
	REGION("slot 2 wrapping gpa", vm, 2, 0, -page, 2 * page, mem);
	REGION("slot 2 kernel hva", vm, 2, 0, 0x200000, page, (void *)-page);
	REGION("slot 32767", vm, 32767, 0, 0x200000, page, mem);
	REGION("slot as_id 1", vm, 1 << 16, 0, 0x200000, page, mem);
	REGION("v1 flag GUEST_MEMFD", vm, 2, KVM_MEM_GUEST_MEMFD, 0x200000, page, mem);
	REGION("v1 flag bit 3", vm, 2, 1 << 3, 0x200000, page, mem);
	REGION2("v2 flag bit 3", vm, 2, 1 << 3, 0x200000, page, mem);
	REGION("slot 2 read-only VMA, writable slot", vm, 2, 0, 0x200000, page, ro);
	REGION("slot 2 read-only VMA, read-only slot", vm, 2, KVM_MEM_READONLY, 0x200000, page, ro);
	REGION("slot 2 toggle READONLY", vm, 2, 0, 0x200000, page, ro);
	REGION("slot 0 change size", vm, 0, 0, 0x100000, 8 * page, mem);
	REGION("slot 0 change hva", vm, 0, 0, 0x100000, 16 * page, mem + 16 * page);
	REGION("slot 0 move", vm, 0, 0, 0x400000, 16 * page, mem);
	REGION("slot 0 move onto slot 1", vm, 0, 0, 0x100000 + 10 * page, 16 * page, mem);
	REGION("slot 3 beyond GPA space", vm, 3, 0, 1ULL << 60, page, mem);
	REGION("slot 5 delete missing", vm, 5, 0, 0, 0, NULL);
	REGION("slot 1 delete", vm, 1, 0, 0, 0, NULL);
	REGION2("slot 1 v2 recreate", vm, 1, 0, 0x800000, page, mem);

	/* Dirty log. */
	REGION("slot 4 create logging", vm, 4, KVM_MEM_LOG_DIRTY_PAGES, 0x1000000, 32 * page, mem);
	memset(&log, 0, sizeof(log));
	memset(bitmap, 0xa5, sizeof(bitmap));
	log.slot = 4;
	log.dirty_bitmap = bitmap;
	IOCTL("KVM_GET_DIRTY_LOG slot 4", vm, KVM_GET_DIRTY_LOG, &log);
	printf("KVM_GET_DIRTY_LOG slot 4 bitmap: %#llx %#llx\n", (unsigned long long)bitmap[0],
	       (unsigned long long)bitmap[1]);
	log.slot = 0;
	IOCTL("KVM_GET_DIRTY_LOG slot 0 (not logging)", vm, KVM_GET_DIRTY_LOG, &log);
	log.slot = 9;
	IOCTL("KVM_GET_DIRTY_LOG slot 9 (missing)", vm, KVM_GET_DIRTY_LOG, &log);
	log.slot = 1 << 16;
	IOCTL("KVM_GET_DIRTY_LOG as_id 1", vm, KVM_GET_DIRTY_LOG, &log);
	log.slot = 4;
	log.dirty_bitmap = (void *)8;
	IOCTL("KVM_GET_DIRTY_LOG bad buffer", vm, KVM_GET_DIRTY_LOG, &log);
	memset(&ec, 0, sizeof(ec));
	ec.cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2;
	ec.args[0] = 4;
	IOCTL("ENABLE_CAP(MANUAL_DIRTY_LOG_PROTECT2, 4)", vm, KVM_ENABLE_CAP, &ec);
	ec.args[0] = 2;
	IOCTL("ENABLE_CAP(MANUAL_DIRTY_LOG_PROTECT2, 2)", vm, KVM_ENABLE_CAP, &ec);
	ec.args[0] = 3;
	ec.flags = 1;
	IOCTL("ENABLE_CAP(MANUAL_DIRTY_LOG_PROTECT2, 3, flags 1)", vm, KVM_ENABLE_CAP, &ec);
	ec.flags = 0;
	IOCTL("ENABLE_CAP(MANUAL_DIRTY_LOG_PROTECT2, 3)", vm, KVM_ENABLE_CAP, &ec);
	ec.cap = 0x7fff;
	IOCTL("ENABLE_CAP(unknown)", vm, KVM_ENABLE_CAP, &ec);
	REGION("slot 6 create logging (initially set)", vm, 6, KVM_MEM_LOG_DIRTY_PAGES, 0x2000000, 70 * page, mem);
	memset(bitmap, 0, sizeof(bitmap));
	log.slot = 6;
	log.dirty_bitmap = bitmap;
	IOCTL("KVM_GET_DIRTY_LOG slot 6", vm, KVM_GET_DIRTY_LOG, &log);
	printf("KVM_GET_DIRTY_LOG slot 6 bitmap: %#llx %#llx\n", (unsigned long long)bitmap[0],
	       (unsigned long long)bitmap[1]);
	memset(&clr, 0, sizeof(clr));
	clr.slot = 6;
	clr.first_page = 1;
	clr.num_pages = 64;
	clr.dirty_bitmap = bitmap;
	IOCTL("KVM_CLEAR_DIRTY_LOG first_page 1", vm, KVM_CLEAR_DIRTY_LOG, &clr);
	clr.first_page = 0;
	clr.num_pages = 71;
	IOCTL("KVM_CLEAR_DIRTY_LOG beyond the slot", vm, KVM_CLEAR_DIRTY_LOG, &clr);
	clr.num_pages = 65;
	IOCTL("KVM_CLEAR_DIRTY_LOG 65 pages", vm, KVM_CLEAR_DIRTY_LOG, &clr);
	bitmap[0] = 0xff;
	bitmap[1] = 0;
	clr.num_pages = 64;
	IOCTL("KVM_CLEAR_DIRTY_LOG 64 pages", vm, KVM_CLEAR_DIRTY_LOG, &clr);
	clr.first_page = 64;
	clr.num_pages = 6;
	bitmap[0] = 1;
	IOCTL("KVM_CLEAR_DIRTY_LOG the tail", vm, KVM_CLEAR_DIRTY_LOG, &clr);
	IOCTL("KVM_GET_DIRTY_LOG slot 6 again", vm, KVM_GET_DIRTY_LOG, &log);
	printf("KVM_GET_DIRTY_LOG slot 6 bitmap: %#llx %#llx\n", (unsigned long long)bitmap[0],
	       (unsigned long long)bitmap[1]);

	ioeventfds(vm, kvm);
	coalesced_zones(vm);
	irqfds(vm, kvm);
	devices(kvm);
	fd_attrs("vm", vm);

	/* vCPUs. */
	max_id = ioctl(vm, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPU_ID);
	if (max_id <= 0)
		max_id = ioctl(vm, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
	IOCTL_FD("KVM_CREATE_VCPU(max id)", vm, KVM_CREATE_VCPU, max_id);
	IOCTL_FD("KVM_CREATE_VCPU(-1)", vm, KVM_CREATE_VCPU, -1L);
	vcpu = IOCTL_FD("KVM_CREATE_VCPU(0)", vm, KVM_CREATE_VCPU, 0);
	IOCTL_FD("KVM_CREATE_VCPU(0) again", vm, KVM_CREATE_VCPU, 0);
	vcpu1 = IOCTL_FD("KVM_CREATE_VCPU(max id - 1)", vm, KVM_CREATE_VCPU, max_id - 1);
	if (vcpu < 0 || vcpu1 < 0)
		return 1;
	stats("vcpu", IOCTL_FD("vcpu KVM_GET_STATS_FD", vcpu, KVM_GET_STATS_FD, 0));
	run = mmap(NULL, mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	printf("mmap vcpu (run + ring): %s\n", run == MAP_FAILED ? "failed" : "ok");
	if (run != MAP_FAILED) {
		printf("kvm_run exit_reason: %u\n", run->exit_reason);
		munmap(run, mmap_size);
	}
	run = mmap(NULL, page, PROT_READ, MAP_SHARED, vcpu, page);
	printf("mmap vcpu page 1 (ring): %s\n", run == MAP_FAILED ? "failed" : "ok");
	if (run != MAP_FAILED)
		munmap(run, page);
	IOCTL("vm CHECK_EXTENSION after vCPUs: MAX_VCPUS", vm, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
	REGION("slot 7 with vCPUs", vm, 7, 0, 0x3000000, page, mem);
	IOCTL("vcpu KVM_RUN(arg 1)", vcpu, KVM_RUN, 1);
	IOCTL("vcpu unknown KVMIO ioctl", vcpu, _IO(KVMIO, 0xff), 0);
	IOCTL("vcpu foreign ioctl", vcpu, _IO(0x41, 1), 0);
	IOCTL("vm unknown KVMIO ioctl", vm, _IO(KVMIO, 0xfe), 0);
	IOCTL("vm foreign ioctl", vm, _IO(0x41, 1), 0);
	mp_states("vcpu", vcpu);
	mp_states("vcpu1", vcpu1);
	guest_debug(vcpu);
	signal_mask(vcpu);
	fd_attrs("vcpu", vcpu);
#ifdef __riscv
	{
		struct kvm_one_reg reg;
		uint64_t v = 0;

		run = mmap(NULL, mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu1, 0);
		if (run != MAP_FAILED) {
			run->immediate_exit = 1;
			run->exit_reason = 0xdead;
			IOCTL("vcpu KVM_RUN(immediate_exit)", vcpu1, KVM_RUN, 0);
			printf("exit_reason after immediate_exit: %#x\n", run->exit_reason);
			munmap(run, mmap_size);
		}
		reg.id = KVM_REG_RISCV | KVM_REG_SIZE_U64 | KVM_REG_RISCV_CONFIG |
			 KVM_REG_RISCV_CONFIG_REG(satp_mode);
		reg.addr = (uint64_t)(uintptr_t)&v;
		IOCTL("GET_ONE_REG(config satp_mode)", vcpu, KVM_GET_ONE_REG, &reg);
		printf("satp_mode: %llu\n", (unsigned long long)v);
		IOCTL("SET_ONE_REG(config satp_mode, same)", vcpu, KVM_SET_ONE_REG, &reg);
		v = 1;
		IOCTL("SET_ONE_REG(config satp_mode, other)", vcpu, KVM_SET_ONE_REG, &reg);
		reg.id = KVM_REG_RISCV | KVM_REG_SIZE_U32 | KVM_REG_RISCV_CONFIG |
			 KVM_REG_RISCV_CONFIG_REG(satp_mode);
		IOCTL("GET_ONE_REG(config satp_mode, u32)", vcpu, KVM_GET_ONE_REG, &reg);
		reg.id = KVM_REG_RISCV | KVM_REG_SIZE_U64 | KVM_REG_RISCV_CONFIG | 0xfff;
		IOCTL("GET_ONE_REG(config 0xfff)", vcpu, KVM_GET_ONE_REG, &reg);
		reg.id = KVM_REG_RISCV | KVM_REG_SIZE_U64 | 0xff000000;
		IOCTL("GET_ONE_REG(type 0xff)", vcpu, KVM_GET_ONE_REG, &reg);
		reg.id = KVM_REG_RISCV | KVM_REG_SIZE_U64 | KVM_REG_RISCV_CONFIG |
			 KVM_REG_RISCV_CONFIG_REG(satp_mode);
		reg.addr = 8;
		IOCTL("GET_ONE_REG(bad buffer)", vcpu, KVM_GET_ONE_REG, &reg);
		memset(&ec, 0, sizeof(ec));
		ec.cap = KVM_CAP_VM_GPA_BITS;
		ec.args[0] = 41;
		IOCTL("ENABLE_CAP(VM_GPA_BITS, 41) with vCPUs", vm, KVM_ENABLE_CAP, &ec);
		run_with_pending_signal(vcpu, mmap_size);
		riscv_regs(kvm, mmap_size);
		rv_guests(kvm, mmap_size);
		rv_ipi_storm(kvm, mmap_size);
	}
#endif
#ifdef __aarch64__
	{
		struct kvm_vcpu_init init;
		struct kvm_one_reg reg;
		uint64_t v = 0;

		reg.id = KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM64_SYSREG |
			 (3 << 14) | (7 << 3); /* ID_AA64MMFR0_EL1 */
		reg.addr = (uint64_t)(uintptr_t)&v;
		IOCTL("GET_ONE_REG before VCPU_INIT", vcpu, KVM_GET_ONE_REG, &reg);
		IOCTL("vcpu KVM_RUN before VCPU_INIT", vcpu, KVM_RUN, 0);
		memset(&init, 0xff, sizeof(init));
		IOCTL("KVM_ARM_PREFERRED_TARGET", vm, KVM_ARM_PREFERRED_TARGET, &init);
		printf("preferred target %u features %#x\n", init.target, init.features[0]);
		init.target = 0;
		IOCTL("KVM_ARM_VCPU_INIT(target 0)", vcpu, KVM_ARM_VCPU_INIT, &init);
		init.target = KVM_ARM_TARGET_GENERIC_V8;
		init.features[1] = 1;
		IOCTL("KVM_ARM_VCPU_INIT(features[1])", vcpu, KVM_ARM_VCPU_INIT, &init);
		init.features[1] = 0;
		init.features[0] = 1u << 31;
		IOCTL("KVM_ARM_VCPU_INIT(feature 31)", vcpu, KVM_ARM_VCPU_INIT, &init);
		init.features[0] = 0;
		IOCTL("KVM_ARM_VCPU_INIT", vcpu, KVM_ARM_VCPU_INIT, &init);
		IOCTL("KVM_ARM_VCPU_INIT again", vcpu, KVM_ARM_VCPU_INIT, &init);
		run = mmap(NULL, mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
		if (run != MAP_FAILED) {
			run->immediate_exit = 1;
			run->exit_reason = 0xdead;
			IOCTL("vcpu KVM_RUN(immediate_exit)", vcpu, KVM_RUN, 0);
			printf("exit_reason after immediate_exit: %#x\n", run->exit_reason);
			munmap(run, mmap_size);
		}
		IOCTL("GET_ONE_REG(ID_AA64MMFR0_EL1)", vcpu, KVM_GET_ONE_REG, &reg);
		printf("ID_AA64MMFR0_EL1.TGRAN4: %llu\n", (unsigned long long)((v >> 28) & 0xf));
		/* op0 3, op1 7, CRn 15, CRm 15, op2 7: no such register. */
		reg.id = KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM64_SYSREG |
			 (3 << 14) | (7 << 11) | (15 << 7) | (15 << 3) | 7;
		IOCTL("GET_ONE_REG(unknown sysreg)", vcpu, KVM_GET_ONE_REG, &reg);
		reg.id = 0x1234;
		IOCTL("GET_ONE_REG(not arm64)", vcpu, KVM_GET_ONE_REG, &reg);
		memset(&init, 0, sizeof(init));
		init.target = KVM_ARM_TARGET_GENERIC_V8;
		init.features[0] = 1u << KVM_ARM_VCPU_POWER_OFF;
		IOCTL("KVM_ARM_VCPU_INIT(vcpu1, POWER_OFF)", vcpu1, KVM_ARM_VCPU_INIT, &init);
		mp_states("vcpu1 after POWER_OFF init", vcpu1);
		run_with_pending_signal(vcpu, mmap_size);
		arm64_regs(kvm, vcpu, mmap_size);
		a64_guests(kvm, mmap_size);
	}
#endif
	IOCTL("vm KVM_CHECK_EXTENSION(-1)", vm, KVM_CHECK_EXTENSION, -1L);
	refcnt("with fds open");
	close(vcpu);
	close(vcpu1);
	close(vm);
	close(kvm);
	munmap(mem, 128 * page);
	munmap(ro, 4 * page);
	/* File release is deferred (task work), done by the time close() returns. */
	refcnt("after closing everything");
	printf("# done\n");
	return 0;
}
