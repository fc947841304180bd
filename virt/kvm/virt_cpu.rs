// SPDX-License-Identifier: GPL-2.0

//! Per-CPU virtualization support across CPU hotplug, suspend and shutdown
//! (upstream's `kvm_enable_virtualization()` and its CPU hotplug, syscore
//! and reboot hooks in `virt/kvm/kvm_main.c`).
//!
//! kvm_rs turns virtualization on on every CPU when it loads (upstream's
//! default, `enable_virt_at_load`) and off when it unloads:
//!
//! - a dynamic CPU hotplug state runs [`Arch::enable_cpu`] on each CPU as
//!   it comes online and [`Arch::disable_cpu`] as it goes offline;
//! - system core operations turn the last CPU off before suspend (the
//!   others went offline through hotplug), back on at resume, and off at
//!   shutdown, reboot and kexec, so the next kernel finds the CPU as
//!   firmware left it.
//!
//! A per-CPU flag makes each transition happen once, whichever path comes
//! first, as upstream's `virtualization_enabled` per-CPU variable.

use super::arch::Arch;
use crate::arch::Host;
use core::sync::atomic::{
    AtomicBool,
    Ordering, //
};
use kernel::{
    bindings,
    cpu::CpuId,
    cpuhp::{
        CpuHotplugOps,
        DynState, //
    },
    prelude::*,
    syscore::{
        Syscore,
        SyscoreOps, //
    },
};

/// Number of CPU slots: CPU ids are below `nr_cpu_ids <= NR_CPUS`.
const MAX_CPUS: usize = bindings::NR_CPUS as usize;

/// Whether virtualization is on, per CPU.
static ENABLED: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

/// Turns virtualization on on `cpu`, which must be the current CPU, unless
/// it is already on.
fn enable(cpu: CpuId) -> Result {
    let Some(flag) = ENABLED.get(cpu.as_u32() as usize) else {
        return Err(EINVAL);
    };
    if flag.load(Ordering::Relaxed) {
        return Ok(());
    }
    Host::enable_cpu()?;
    flag.store(true, Ordering::Relaxed);
    Ok(())
}

/// Turns virtualization off on `cpu`, which must be the current CPU, if it
/// is on.
fn disable(cpu: CpuId) {
    if let Some(flag) = ENABLED.get(cpu.as_u32() as usize) {
        if flag.swap(false, Ordering::Relaxed) {
            Host::disable_cpu();
        }
    }
}

/// The CPU hotplug callbacks (`kvm_online_cpu()`, `kvm_offline_cpu()`).
pub(crate) struct CpuVirt;

impl CpuHotplugOps for CpuVirt {
    const NAME: &'static CStr = c"kvm_rs/cpu:online";

    fn online(cpu: CpuId) -> Result {
        enable(cpu)
    }

    fn offline(cpu: CpuId) -> Result {
        disable(cpu);
        Ok(())
    }
}

/// The installed hotplug state: virtualization is on on every online CPU
/// while it exists.
pub(crate) type CpuVirtState = DynState<CpuVirt>;

/// The suspend, resume and shutdown callbacks (`kvm_suspend()`,
/// `kvm_resume()`, `kvm_shutdown()`); they run on the last online CPU
/// with interrupts off.
pub(crate) struct SysVirt;

#[vtable]
impl SyscoreOps for SysVirt {
    fn suspend(_this: &Self) -> Result {
        disable(CpuId::current());
        Ok(())
    }

    fn resume(_this: &Self) {
        if enable(CpuId::current()).is_err() {
            pr_warn!("virtualization could not be re-enabled after resume\n");
        }
    }

    fn shutdown(_this: &Self) {
        // Every CPU, as upstream: the reboot path has not stopped the
        // others yet.
        on_each_online_cpu(disable_here);
    }
}

/// [`disable`] on the CPU it runs on, as an IPI function.
///
/// # Safety
///
/// Only called through `on_each_cpu_cond_mask()`, which ignores `_info`.
unsafe extern "C" fn disable_here(_info: *mut c_void) {
    disable(CpuId::current());
}

/// `on_each_cpu(f, NULL, 1)`: runs `f` on every online CPU (IPIs) and
/// waits for all of them.
fn on_each_online_cpu(f: unsafe extern "C" fn(*mut c_void)) {
    // SAFETY: `f` ignores its argument and may run in IPI context;
    // `__cpu_online_mask` is the kernel's online-CPU mask, valid for the
    // whole call (`wait` = true).
    unsafe {
        bindings::on_each_cpu_cond_mask(
            None,
            Some(f),
            core::ptr::null_mut(),
            true,
            core::ptr::addr_of!(bindings::__cpu_online_mask),
        )
    };
}

/// The syscore registration.
pub(crate) type SysVirtReg = Syscore<SysVirt>;

#[kunit_tests(kvm_rs_virt_cpu)]
mod tests {
    use super::*;
    use kernel::cpumask::Cpumask;

    /// The suite runs once the module is live: the hotplug state has turned
    /// virtualization on on exactly the online CPUs.
    #[test]
    fn enabled_on_exactly_the_online_cpus() {
        // SAFETY: `__cpu_online_mask` is the kernel's online-CPU mask, valid
        // for the kernel's whole life.
        let online = unsafe { Cpumask::from_raw(core::ptr::addr_of!(bindings::__cpu_online_mask)) };
        let mut n = 0;
        for (i, flag) in ENABLED.iter().enumerate() {
            let Some(cpu) = CpuId::from_u32(i as u32) else { break };
            let on = online.test(cpu);
            assert_eq!(flag.load(Ordering::Relaxed), on);
            n += usize::from(on);
        }
        assert!(n >= 1);
    }
}
