// SPDX-License-Identifier: GPL-2.0
/*
 * kvm-probe: checks the /dev/kvm system ABI from userspace and prints TAP.
 *
 * Every check here holds for upstream KVM as well as for kvm_rs, so the same
 * binary measures either backend. Exit status: 0 when all checks pass, 1
 * otherwise. Usage: kvm-probe [-v]
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <linux/kvm.h>

static int n, failed;

static void check(int ok, const char *what, const char *fmt, long a, long b)
{
	n++;
	if (!ok)
		failed++;
	printf("%sok %d - %s", ok ? "" : "not ", n, what);
	if (fmt) {
		printf(" # ");
		printf(fmt, a, b);
	}
	printf("\n");
}

/* ioctl() returning -errno on failure, the value otherwise. */
static long kioctl(int fd, unsigned long cmd, unsigned long arg)
{
	long r = ioctl(fd, cmd, arg);

	return r < 0 ? -errno : r;
}

int main(void)
{
	struct stat st;
	long r, page = sysconf(_SC_PAGESIZE);
	int fd;

	printf("TAP version 13\n");
	fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		printf("1..1\nnot ok 1 - open /dev/kvm # %s\n", strerror(errno));
		return 1;
	}
	check(fstat(fd, &st) == 0 && S_ISCHR(st.st_mode) &&
	      major(st.st_rdev) == 10 && minor(st.st_rdev) == 232,
	      "/dev/kvm is character device 10:232", "got %ld:%ld",
	      (long)major(st.st_rdev), (long)minor(st.st_rdev));

	r = kioctl(fd, KVM_GET_API_VERSION, 0);
	check(r == KVM_API_VERSION, "KVM_GET_API_VERSION is 12", "got %ld (want %ld)", r, 12);
	r = kioctl(fd, KVM_GET_API_VERSION, 1);
	check(r == -EINVAL, "KVM_GET_API_VERSION with an argument is EINVAL", "got %ld (want %ld)", r, -EINVAL);

	r = kioctl(fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	check(r == 2 * page, "KVM_GET_VCPU_MMAP_SIZE is kvm_run + coalesced MMIO page",
	      "got %ld (want %ld)", r, 2 * page);
	r = kioctl(fd, KVM_GET_VCPU_MMAP_SIZE, 3);
	check(r == -EINVAL, "KVM_GET_VCPU_MMAP_SIZE with an argument is EINVAL", "got %ld (want %ld)", r, -EINVAL);

	r = kioctl(fd, KVM_CHECK_EXTENSION, 0xfffffff);
	check(r == 0, "KVM_CHECK_EXTENSION of an unknown cap is 0", "got %ld (want %ld)", r, 0);
	r = kioctl(fd, KVM_CHECK_EXTENSION, -1UL);
	check(r == 0, "KVM_CHECK_EXTENSION(-1) is 0", "got %ld (want %ld)", r, 0);

	r = kioctl(fd, KVM_RUN, 0);
	check(r == -EINVAL, "KVM_RUN on /dev/kvm is EINVAL", "got %ld (want %ld)", r, -EINVAL);
	r = kioctl(fd, _IO(KVMIO, 0x7f), 0);
	check(r == -EINVAL, "unknown KVMIO ioctl is EINVAL", "got %ld (want %ld)", r, -EINVAL);
	r = kioctl(fd, _IOWR('x', 1, int), 0);
	check(r == -EINVAL, "foreign ioctl is EINVAL", "got %ld (want %ld)", r, -EINVAL);
	r = kioctl(fd, _IOWR(KVMIO, 0x02, __u32), 0);
	check(r == -EINVAL, "KVM_GET_MSR_INDEX_LIST (x86 only) is EINVAL", "got %ld (want %ld)", r, -EINVAL);

	/* Informational: what the backend claims (not part of the verdict). */
	printf("# KVM_CAP_USER_MEMORY=%ld KVM_CAP_NR_VCPUS=%ld KVM_CAP_MAX_VCPUS=%ld\n",
	       kioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY),
	       kioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS),
	       kioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS));
	printf("1..%d\n", n);
	close(fd);
	return failed ? 1 : 0;
}
