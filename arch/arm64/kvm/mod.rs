// SPDX-License-Identifier: GPL-2.0

//! arm64 backend: the host kernel runs at EL2 with VHE (`HCR_EL2.E2H` = 1).

mod sysreg;

use crate::kvm::arch::Arch;
use kernel::prelude::*;

/// The arm64 host.
pub(crate) struct Host;

impl Arch for Host {
    const NAME: &'static str = "arm64";

    fn probe() -> Result {
        let el = sysreg::current_el();
        if el != 2 {
            pr_err!("kernel runs at EL{}, not EL2: cannot host guests (VHE host required)\n", el);
            return Err(ENODEV);
        }
        let hcr = sysreg::hcr_el2();
        if hcr & sysreg::HCR_E2H == 0 {
            pr_err!("HCR_EL2.E2H is clear: the kernel is not a VHE host\n");
            return Err(ENODEV);
        }
        pr_info!(
            "arm64 host at EL2 with VHE (CurrentEL {:#x}, HCR_EL2 {:#x})\n",
            el << 2,
            hcr
        );
        Ok(())
    }

    fn check_extension(_cap: usize) -> isize {
        0
    }
}

#[kunit_tests(kvm_rs_arm64_host)]
mod tests {
    use super::*;

    #[test]
    fn kernel_runs_at_el2() {
        assert_eq!(sysreg::current_el(), 2);
    }

    #[test]
    fn host_is_vhe() {
        let hcr = sysreg::hcr_el2();
        assert_ne!(hcr & sysreg::HCR_E2H, 0);
        // With E2H set, TGE routes EL0 exceptions of the host to EL2.
        assert_ne!(hcr & sysreg::HCR_TGE, 0);
    }
}
