// SPDX-License-Identifier: GPL-2.0
/*
 * kvm-bench: guest-exit micro-benchmarks on /dev/kvm (riscv64), with raw
 * ioctls only. Every case creates its own VM with one vCPU, loads a tiny
 * hand-assembled guest (a u32 array, encoded below) into a memslot at
 * GUEST_CODE, sets pc and the argument registers with KVM_SET_ONE_REG and
 * times, with CLOCK_MONOTONIC, N operations after one untimed warm-up pass:
 *
 *   immediate-exit   KVM_RUN with kvm_run.immediate_exit = 1 (EINTR without
 *                    entering the guest): the ioctl path alone
 *   sbi-user         guest SBI ecall of an experimental extension
 *                    (eid 0x08000000) -> KVM_EXIT_RISCV_SBI -> KVM_RUN again:
 *                    a round trip through userspace
 *   sbi-kernel       guest loop of SBI BASE get_spec_version (eid 0x10,
 *                    fid 0), answered in the kernel, N times; one exit at
 *                    the end: the in-kernel exit cost
 *   mmio-user        guest 32-bit store to GPA 0x10000000 (no memslot) ->
 *                    KVM_EXIT_MMIO -> KVM_RUN again
 *   page-fault       guest writes one word in each of M fresh 4 KiB pages
 *                    of a memslot (host pages already populated, THP off):
 *                    G-stage demand faulting per page
 *
 * Each case's N operations are timed in REPS passes (default 10) of N / REPS;
 * the result is the fastest pass (the least disturbed by other work on the
 * emulated host's CPUs or the machine's).
 *
 * Output: one line per case, "bench <case> <ns per op>", and '#' lines with
 * the facts (iterations, every pass, total time). A case that fails prints
 * "bench <case> failed: <why>" and the program exits 1 after the others.
 *
 *   kvm-bench [-n N] [-p M] [-r REPS] [case...]   (default N=20000, M=N, REPS=10)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <linux/kvm.h>

#define GUEST_CODE	0x80000000ULL	/* code memslot (slot 0) */
#define CODE_SIZE	0x10000ULL
#define GUEST_DATA	0xc0000000ULL	/* page-fault memslot (slot 1) */
#define MMIO_ADDR	0x10000000ULL	/* no memslot there */
#define SBI_EXT_EXP	0x08000000	/* experimental range: to userspace */
#define SBI_EXT_BASE	0x10
#define RUN_TIMEOUT_S	120		/* per case, then SIGALRM ends KVM_RUN */

static char failure[256];

/* Record why the current case failed; returns -1 for "return fail(...)". */
static int fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(failure, sizeof(failure), fmt, ap);
	va_end(ap);
	return -1;
}

/* ---- A tiny riscv64 assembler: the encodings of the few instructions used. */
enum { ZERO = 0, T0 = 5, T1 = 6, T2 = 7, A6 = 16, A7 = 17, T3 = 28 };

static uint32_t i_type(int imm, int rs1, int f3, int rd, int op)
{
	return ((uint32_t)(imm & 0xfff) << 20) | rs1 << 15 | f3 << 12 | rd << 7 | op;
}
static uint32_t addi(int rd, int rs1, int imm) { return i_type(imm, rs1, 0, rd, 0x13); }
static uint32_t add(int rd, int rs1, int rs2) { return rs2 << 20 | rs1 << 15 | rd << 7 | 0x33; }
static uint32_t lui(int rd, uint32_t imm20) { return (imm20 & 0xfffff) << 12 | rd << 7 | 0x37; }
static uint32_t store(int f3, int rs2, int rs1, int imm)
{
	return ((uint32_t)(imm >> 5) & 0x7f) << 25 | rs2 << 20 | rs1 << 15 | f3 << 12 |
	       (imm & 0x1f) << 7 | 0x23;
}
static uint32_t sw(int rs2, int rs1, int imm) { return store(2, rs2, rs1, imm); }
static uint32_t sd(int rs2, int rs1, int imm) { return store(3, rs2, rs1, imm); }
/* Branches and jumps: off = target - this instruction, in bytes. */
static uint32_t branch(int f3, int rs1, int rs2, int off)
{
	uint32_t o = (uint32_t)off;

	return ((o >> 12) & 1) << 31 | ((o >> 5) & 0x3f) << 25 | rs2 << 20 | rs1 << 15 |
	       f3 << 12 | ((o >> 1) & 0xf) << 8 | ((o >> 11) & 1) << 7 | 0x63;
}
static uint32_t beqz(int rs1, int off) { return branch(0, rs1, ZERO, off); }
static uint32_t bnez(int rs1, int off) { return branch(1, rs1, ZERO, off); }
static uint32_t j(int off)
{
	uint32_t o = (uint32_t)off;

	return ((o >> 20) & 1) << 31 | ((o >> 1) & 0x3ff) << 21 | ((o >> 11) & 1) << 20 |
	       ((o >> 12) & 0xff) << 12 | 0x6f;
}
#define ECALL 0x00000073u

/* ---- The guests. pc starts at word 0. */

/* Writes a guest's words to c[] (at most GUEST_WORDS) and their count to *n. */
typedef void guest_fn(uint32_t *c, int *n);
#define GUEST_WORDS 16

/* sbi-user: a7 = SBI_EXT_EXP (set by the host); ecall; loop. */
static void guest_sbi_user(uint32_t *c, int *n)
{
	int i = 0;

	c[i++] = ECALL;		/* 0: KVM_EXIT_RISCV_SBI; KVM skips it on return */
	c[i++] = j(-4);		/* 4: back to the ecall */
	*n = i;
}

/*
 * sbi-kernel: t0 = count (host). Loop t0 times over SBI BASE
 * get_spec_version, then one experimental ecall to userspace.
 */
static void guest_sbi_kernel(uint32_t *c, int *n)
{
	int i = 0;

	c[i++] = beqz(T0, 6 * 4);		/*  0: count 0: straight to the exit */
	c[i++] = addi(A7, ZERO, SBI_EXT_BASE);	/*  4: loop: eid BASE */
	c[i++] = addi(A6, ZERO, 0);		/*  8: fid get_spec_version */
	c[i++] = ECALL;				/* 12: handled in the kernel */
	c[i++] = addi(T0, T0, -1);		/* 16 */
	c[i++] = bnez(T0, -4 * 4);		/* 20: to the loop */
	c[i++] = lui(A7, SBI_EXT_EXP >> 12);	/* 24: exit: eid experimental */
	c[i++] = ECALL;				/* 28: KVM_EXIT_RISCV_SBI */
	c[i++] = j(-8 * 4);			/* 32: to 0 */
	*n = i;
}

/* mmio-user: t1 = MMIO_ADDR (host); sw zero, 0(t1); loop. */
static void guest_mmio(uint32_t *c, int *n)
{
	int i = 0;

	c[i++] = sw(ZERO, T1, 0);	/* 0: KVM_EXIT_MMIO, 4-byte write */
	c[i++] = j(-4);			/* 4 */
	*n = i;
}

/*
 * page-fault: t0 = pages, t1 = first address, t2 = stride (host). One
 * doubleword store per page, then one experimental ecall to userspace.
 */
static void guest_fault(uint32_t *c, int *n)
{
	int i = 0;

	c[i++] = beqz(T0, 5 * 4);		/*  0: count 0: straight to the exit */
	c[i++] = sd(ZERO, T1, 0);		/*  4: loop: G-stage fault on a fresh page */
	c[i++] = add(T1, T1, T2);		/*  8 */
	c[i++] = addi(T0, T0, -1);		/* 12 */
	c[i++] = bnez(T0, -3 * 4);		/* 16: to the loop */
	c[i++] = lui(A7, SBI_EXT_EXP >> 12);	/* 20: exit */
	c[i++] = ECALL;				/* 24: KVM_EXIT_RISCV_SBI */
	c[i++] = j(-7 * 4);			/* 28: to 0 */
	*n = i;
}

/* "kvm-bench --dump": the guests' words, for checking with objdump. */
static void dump(void)
{
	guest_fn *g[] = { guest_sbi_user, guest_sbi_kernel, guest_mmio, guest_fault };
	uint32_t code[GUEST_WORDS];
	unsigned int k;
	int words;

	for (k = 0; k < sizeof(g) / sizeof(g[0]); k++) {
		g[k](code, &words);
		fwrite(code, sizeof(*code), words, stdout);
	}
}

#ifdef __riscv

/* ---- KVM plumbing. */

struct vm {
	int kvm, vm, vcpu;
	struct kvm_run *run;
	long run_size;
	void *code;
	void *data;
	size_t data_size;
};

static volatile sig_atomic_t alarmed;
static void on_alarm(int sig) { (void)sig; alarmed = 1; }

static uint64_t core_reg(unsigned int index)
{
	return KVM_REG_RISCV | KVM_REG_SIZE_U64 | KVM_REG_RISCV_CORE | index;
}

static int set_reg(struct vm *v, unsigned int index, uint64_t val)
{
	struct kvm_one_reg r = { .id = core_reg(index), .addr = (uint64_t)(uintptr_t)&val };

	if (ioctl(v->vcpu, KVM_SET_ONE_REG, &r) < 0)
		return fail("KVM_SET_ONE_REG core %u: %s", index, strerror(errno));
	return 0;
}

static void vm_close(struct vm *v)
{
	if (v->run && v->run != MAP_FAILED)
		munmap(v->run, v->run_size);
	if (v->vcpu >= 0)
		close(v->vcpu);
	if (v->vm >= 0)
		close(v->vm);
	if (v->kvm >= 0)
		close(v->kvm);
	if (v->code && v->code != MAP_FAILED)
		munmap(v->code, CODE_SIZE);
	if (v->data && v->data != MAP_FAILED)
		munmap(v->data, v->data_size);
}

static int slot(struct vm *v, unsigned int id, uint64_t gpa, void *hva, uint64_t size)
{
	struct kvm_userspace_memory_region r = {
		.slot = id, .guest_phys_addr = gpa, .memory_size = size,
		.userspace_addr = (uint64_t)(uintptr_t)hva,
	};

	if (ioctl(v->vm, KVM_SET_USER_MEMORY_REGION, &r) < 0)
		return fail("KVM_SET_USER_MEMORY_REGION slot %u: %s", id, strerror(errno));
	return 0;
}

/*
 * The setup of every case: a VM with `guest`'s code at GUEST_CODE and one
 * vCPU with pc there; data_pages > 0 adds slot 1. On failure, `failure` is
 * set and what was opened is in *v for vm_close().
 */
static int vm_open(struct vm *v, guest_fn *guest, size_t data_pages)
{
	uint32_t code[GUEST_WORDS];
	int words;

	guest(code, &words);
	memset(v, 0, sizeof(*v));
	v->kvm = v->vm = v->vcpu = -1;
	v->kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (v->kvm < 0)
		return fail("open /dev/kvm: %s", strerror(errno));
	v->vm = ioctl(v->kvm, KVM_CREATE_VM, 0);
	if (v->vm < 0)
		return fail("KVM_CREATE_VM: %s", strerror(errno));
	v->code = mmap(NULL, CODE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (v->code == MAP_FAILED)
		return fail("mmap code: %s", strerror(errno));
	memcpy(v->code, code, words * sizeof(*code));
	if (slot(v, 0, GUEST_CODE, v->code, CODE_SIZE))
		return -1;
	if (data_pages) {
		v->data_size = data_pages * 4096;
		v->data = mmap(NULL, v->data_size, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (v->data == MAP_FAILED)
			return fail("mmap %zu data pages: %s", data_pages, strerror(errno));
		/* 4 KiB host pages, all present: the cost measured is the G-stage fault. */
		if (madvise(v->data, v->data_size, MADV_NOHUGEPAGE) < 0 && errno != EINVAL)
			return fail("madvise(MADV_NOHUGEPAGE): %s", strerror(errno));
		memset(v->data, 1, v->data_size);
		if (slot(v, 1, GUEST_DATA, v->data, v->data_size))
			return -1;
	}
	v->vcpu = ioctl(v->vm, KVM_CREATE_VCPU, 0);
	if (v->vcpu < 0)
		return fail("KVM_CREATE_VCPU: %s", strerror(errno));
	v->run_size = ioctl(v->kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (v->run_size < (long)sizeof(struct kvm_run))
		return fail("KVM_GET_VCPU_MMAP_SIZE: %ld (%s)", v->run_size, strerror(errno));
	v->run = mmap(NULL, v->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->vcpu, 0);
	if (v->run == MAP_FAILED)
		return fail("mmap kvm_run: %s", strerror(errno));
	return set_reg(v, KVM_REG_RISCV_CORE_REG(regs.pc), GUEST_CODE);
}

/* KVM_RUN until an exit that is not EINTR; a stuck guest ends by SIGALRM. */
static int run_once(struct vm *v)
{
	int r;

	for (;;) {
		r = ioctl(v->vcpu, KVM_RUN, 0);
		if (r == 0)
			return 0;
		if (errno != EINTR)
			return fail("KVM_RUN: %s", strerror(errno));
		if (alarmed)
			return fail("KVM_RUN: no exit from the guest within %d s", RUN_TIMEOUT_S);
	}
}

static int expect_exit(struct vm *v, uint32_t reason)
{
	struct kvm_run *r = v->run;

	if (r->exit_reason != reason)
		return fail("exit reason %u, expected %u (pc unknown; hw reason 0x%llx)",
			    r->exit_reason, reason,
			    (unsigned long long)r->hw.hardware_exit_reason);
	if (reason == KVM_EXIT_RISCV_SBI && r->riscv_sbi.extension_id != SBI_EXT_EXP)
		return fail("SBI exit for extension 0x%lx, expected 0x%x",
			    (unsigned long)r->riscv_sbi.extension_id, SBI_EXT_EXP);
	if (reason == KVM_EXIT_MMIO &&
	    (r->mmio.phys_addr != MMIO_ADDR || !r->mmio.is_write || r->mmio.len != 4))
		return fail("MMIO exit at 0x%llx len %u write %u, expected a 4-byte write at 0x%llx",
			    (unsigned long long)r->mmio.phys_addr, r->mmio.len,
			    r->mmio.is_write, MMIO_ADDR);
	return 0;
}

/* Run and check the exit; the SBI answer is "success, 0". */
static int run_expect(struct vm *v, uint32_t reason)
{
	if (run_once(v) || expect_exit(v, reason))
		return -1;
	if (reason == KVM_EXIT_RISCV_SBI) {
		v->run->riscv_sbi.ret[0] = 0;
		v->run->riscv_sbi.ret[1] = 0;
	}
	return 0;
}

static double now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e9 + t.tv_nsec;
}

/*
 * ---- The cases. Each splits its N operations into `reps` timed passes of
 * N / reps and returns the fastest pass's ns per operation (the pass least
 * disturbed by other work on the CPUs), with every pass in rep_ns[]; or -1
 * with `failure` set.
 */
#define MAX_REPS 64
static int reps = 10;
static double rep_ns[MAX_REPS];

static double fastest(void)
{
	double m = rep_ns[0];
	int r;

	for (r = 1; r < reps; r++)
		if (rep_ns[r] < m)
			m = rep_ns[r];
	return m;
}

static double case_immediate_exit(long n)
{
	struct vm v;
	double t0, ns = -1;
	long i, per = n / reps;
	int r;

	if (vm_open(&v, guest_sbi_user, 0))
		goto out;
	v.run->immediate_exit = 1;
	for (r = 0; r < reps; r++) {
		t0 = now_ns();
		for (i = 0; i < per; i++) {
			errno = 0;
			if (ioctl(v.vcpu, KVM_RUN, 0) == 0 || errno != EINTR) {
				fail("KVM_RUN with immediate_exit: %s, expected EINTR",
				     errno ? strerror(errno) : "success");
				goto out;
			}
		}
		rep_ns[r] = (now_ns() - t0) / per;
	}
	ns = fastest();
out:
	vm_close(&v);
	return ns;
}

/* Guests that loop on one exit: sbi-user and mmio-user. */
static double case_loop_exit(long n, guest_fn *guest, uint32_t reason)
{
	struct vm v;
	double t0, ns = -1;
	long i, per = n / reps;
	int r;

	if (vm_open(&v, guest, 0) || set_reg(&v, A7, SBI_EXT_EXP) ||
	    set_reg(&v, A6, 0) || set_reg(&v, T1, MMIO_ADDR))
		goto out;
	for (i = 0; i < 100; i++)	/* warm-up: code page mapped, caches */
		if (run_expect(&v, reason))
			goto out;
	for (r = 0; r < reps; r++) {
		t0 = now_ns();
		for (i = 0; i < per; i++)
			if (run_expect(&v, reason))
				goto out;
		rep_ns[r] = (now_ns() - t0) / per;
	}
	ns = fastest();
out:
	vm_close(&v);
	return ns;
}

static double case_sbi_kernel(long n)
{
	struct vm v;
	double t0, ns = -1;
	long per = n / reps;
	int r;

	/* Warm-up: 100 in-kernel calls, then the timed passes. */
	if (vm_open(&v, guest_sbi_kernel, 0) || set_reg(&v, T0, 100) ||
	    run_expect(&v, KVM_EXIT_RISCV_SBI))
		goto out;
	for (r = 0; r < reps; r++) {
		if (set_reg(&v, T0, per))
			goto out;
		t0 = now_ns();
		if (run_expect(&v, KVM_EXIT_RISCV_SBI))
			goto out;
		rep_ns[r] = (now_ns() - t0) / per;
	}
	ns = fastest();
out:
	vm_close(&v);
	return ns;
}

/* Each pass touches the next `per` fresh pages (the guest keeps t1). */
static double case_page_fault(long pages)
{
	struct vm v;
	double t0, ns = -1;
	long per = pages / reps;
	int r;

	/* Warm-up: count 0 (the code page faults in), then the timed passes. */
	if (vm_open(&v, guest_fault, per * reps) || set_reg(&v, T0, 0) ||
	    run_expect(&v, KVM_EXIT_RISCV_SBI) ||
	    set_reg(&v, T1, GUEST_DATA) || set_reg(&v, T2, 4096))
		goto out;
	for (r = 0; r < reps; r++) {
		if (set_reg(&v, T0, per))
			goto out;
		t0 = now_ns();
		if (run_expect(&v, KVM_EXIT_RISCV_SBI))
			goto out;
		rep_ns[r] = (now_ns() - t0) / per;
	}
	/* The guest's stores reached the host pages, first to last. */
	if (*(volatile uint64_t *)v.data != 0 ||
	    *(volatile uint64_t *)((char *)v.data + (per * reps - 1) * 4096) != 0) {
		fail("the guest's stores are not in the memslot's pages");
		goto out;
	}
	ns = fastest();
out:
	vm_close(&v);
	return ns;
}

static double run_case(const char *name, long n, long pages)
{
	if (!strcmp(name, "immediate-exit"))
		return case_immediate_exit(n);
	if (!strcmp(name, "sbi-user"))
		return case_loop_exit(n, guest_sbi_user, KVM_EXIT_RISCV_SBI);
	if (!strcmp(name, "sbi-kernel"))
		return case_sbi_kernel(n);
	if (!strcmp(name, "mmio-user"))
		return case_loop_exit(n, guest_mmio, KVM_EXIT_MMIO);
	if (!strcmp(name, "page-fault"))
		return case_page_fault(pages);
	fail("unknown case (immediate-exit, sbi-user, sbi-kernel, mmio-user, page-fault)");
	return -1;
}

static const char *const all_cases[] = {
	"immediate-exit", "sbi-user", "sbi-kernel", "mmio-user", "page-fault", NULL,
};

int main(int argc, char **argv)
{
	struct sigaction sa = { .sa_handler = on_alarm };	/* no SA_RESTART */
	long n = 20000, pages = -1;
	int opt, bad = 0, i, r, ncpu;
	const char *const *cases = all_cases;
	cpu_set_t set;

	if (argc == 2 && !strcmp(argv[1], "--dump")) {
		dump();
		return 0;
	}
	while ((opt = getopt(argc, argv, "n:p:r:")) != -1) {
		switch (opt) {
		case 'n': n = atol(optarg); break;
		case 'p': pages = atol(optarg); break;
		case 'r': reps = atoi(optarg); break;
		default:
			fprintf(stderr, "usage: %s [-n N] [-p PAGES] [-r REPS] [case...]\n", argv[0]);
			return 2;
		}
	}
	if (pages < 0)
		pages = n;
	if (reps < 1 || reps > MAX_REPS || n < reps || pages < reps) {
		fprintf(stderr, "kvm-bench: need 1 <= REPS <= %d, N >= REPS and PAGES >= REPS\n",
			MAX_REPS);
		return 2;
	}
	if (optind < argc)
		cases = (const char *const *)&argv[optind];
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (sigaction(SIGALRM, &sa, NULL) < 0) {
		perror("kvm-bench: sigaction");
		return 2;
	}
	/* Pin to the last CPU: no migrations inside a measurement. */
	ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	CPU_ZERO(&set);
	CPU_SET(ncpu > 0 ? ncpu - 1 : 0, &set);
	if (sched_setaffinity(0, sizeof(set), &set) < 0)
		printf("# sched_setaffinity: %s (not pinned)\n", strerror(errno));
	else
		printf("# pinned to cpu %d of %d\n", ncpu - 1, ncpu);
	printf("# iterations %ld, pages %ld, in %d timed passes each\n", n, pages, reps);
	for (i = 0; cases[i]; i++) {
		double t0 = now_ns(), ns;

		failure[0] = 0;
		alarmed = 0;
		alarm(RUN_TIMEOUT_S);
		ns = run_case(cases[i], n, pages);
		alarm(0);
		if (ns < 0) {
			printf("bench %s failed: %s\n", cases[i], failure);
			bad = 1;
			continue;
		}
		printf("bench %s %.0f\n", cases[i], ns);
		printf("# %s: passes", cases[i]);
		for (r = 0; r < reps; r++)
			printf(" %.0f", rep_ns[r]);
		printf(" ns/op; %.2f s in all\n", (now_ns() - t0) / 1e9);
	}
	return bad;
}

#else /* !__riscv */

int main(int argc, char **argv)
{
	if (argc == 2 && !strcmp(argv[1], "--dump")) {
		dump();
		return 0;
	}
	fail("riscv64 only (the arm64 guests and run loop are not written yet)");
	printf("bench all failed: %s\n", failure);
	return 1;
}

#endif
