// SPDX-License-Identifier: GPL-2.0

//! Binary statistics fds (`KVM_GET_STATS_FD` on a VM or vCPU fd):
//! `anon_inode:kvm-vm-stats` and `anon_inode:kvm-vcpu-stats`.
//!
//! Upstream `kvm_vm_ioctl_get_stats_fd()` / `kvm_vcpu_ioctl_get_stats_fd()`
//! open them read-only with `FMODE_PREAD` (userspace reads with `pread()`)
//! and take a VM reference, so a stats fd outlives the VM and vCPU fds. The
//! file's bytes come from the pure [`StatsFile`].

use super::{
    stats::{
        StatsFile,
        VM_STATS, //
    },
    vcpu::Vcpu,
    vm::Vm,
    arch::Arch,
};
use crate::arch::Host;
use kernel::{
    bindings,
    fs::{
        anon_inode::{
            self,
            AnonInodeFile, //
        },
        file::{
            flags::{
                O_CLOEXEC,
                O_RDONLY, //
            },
            FileDescriptorReservation,
        },
        Kiocb,
    },
    iov::IovIterDest,
    prelude::*,
    sync::Arc,
};

/// `FMODE_PREAD` of `<linux/fs.h>` (a `__force` cast bindgen cannot
/// evaluate): the file supports `pread()`.
const FMODE_PREAD: bindings::fmode_t = 1 << 3;

/// Whose statistics a stats fd reads. Both hold the VM alive, as
/// upstream's `kvm_get_kvm()`.
pub(crate) enum StatsOwner {
    /// The VM's.
    Vm(Arc<Vm>),
    /// A vCPU's.
    Vcpu {
        /// Keeps the VM alive.
        _vm: Arc<Vm>,
        /// The vCPU.
        vcpu: Arc<Vcpu>,
    },
}

impl StatsOwner {
    fn file(&self) -> StatsFile<'_> {
        match self {
            StatsOwner::Vm(vm) => {
                let (id, values) = vm.stats();
                StatsFile {
                    schema: &VM_STATS,
                    id,
                    values,
                }
            }
            StatsOwner::Vcpu { vcpu, .. } => {
                let (id, values) = vcpu.stats();
                StatsFile {
                    schema: Host::VCPU_STATS,
                    id,
                    values,
                }
            }
        }
    }
}

/// Creates a stats fd for `owner`.
pub(crate) fn create_fd(owner: StatsOwner) -> Result<isize> {
    let name = match owner {
        StatsOwner::Vm(_) => c"kvm-vm-stats",
        StatsOwner::Vcpu { .. } => c"kvm-vcpu-stats",
    };
    let reservation = FileDescriptorReservation::get_unused_fd_flags(O_CLOEXEC)?;
    let fd = isize::try_from(reservation.reserved_fd()).map_err(|_| EMFILE)?;
    let data = KBox::new(owner, GFP_KERNEL)?;
    let file = anon_inode::create_file::<StatsFd>(name, data, O_RDONLY)?;
    // SAFETY: The file was just created and is not yet installed in any fd
    // table, so nothing else reads or writes `f_mode` concurrently (this is
    // what `anon_inode_getfile_fmode()` does right after creating it).
    unsafe { (*file.as_ptr()).f_mode |= FMODE_PREAD };
    reservation.fd_install(file);
    Ok(fd)
}

/// The file operations of a stats fd.
struct StatsFd;

/// Bytes copied per step from the stats image to userspace.
const CHUNK: usize = 256;

#[vtable]
impl AnonInodeFile for StatsFd {
    type Ptr = KBox<StatsOwner>;

    fn read_iter(mut kiocb: Kiocb<'_, Self::Ptr>, iov: &mut IovIterDest<'_>) -> Result<usize> {
        let owner = kiocb.file();
        let stats = owner.file();
        // `rw_verify_area()` rejected negative offsets already.
        let mut pos = u64::try_from(kiocb.ki_pos()).map_err(|_| EINVAL)?;
        let mut total = 0usize;
        let mut buf = [0u8; CHUNK];
        while !iov.is_empty() {
            let want = iov.len().min(CHUNK);
            let Some(chunk) = buf.get_mut(..want) else {
                break;
            };
            let n = stats.read(pos, chunk);
            if n == 0 {
                break;
            }
            let copied = iov.copy_to_iter(chunk.get(..n).unwrap_or(&[]));
            total = total.saturating_add(copied);
            pos = pos.saturating_add(copied as u64);
            if copied < n {
                // A fault in the user buffer: upstream's copy_to_user()
                // failure is EFAULT.
                if total == 0 {
                    return Err(EFAULT);
                }
                break;
            }
        }
        *kiocb.ki_pos_mut() = i64::try_from(pos).unwrap_or(i64::MAX);
        Ok(total)
    }
}
