// SPDX-License-Identifier: GPL-2.0

//! riscv64 backend: the host kernel runs in HS-mode (H extension).

mod csr;

use crate::kvm::arch::Arch;
use kernel::prelude::*;

/// The riscv64 host.
pub(crate) struct Host;

impl Arch for Host {
    const NAME: &'static str = "riscv64";

    fn probe() -> Result {
        if !csr::has_h_extension() {
            pr_err!("the H extension is not available: cannot host guests\n");
            return Err(ENODEV);
        }
        let hstatus = csr::hstatus();
        pr_info!(
            "riscv64 host in HS-mode (hstatus {:#x}, VSXL {})\n",
            hstatus,
            csr::hstatus_vsxl(hstatus)
        );
        Ok(())
    }

    fn check_extension(_cap: usize) -> isize {
        0
    }
}

#[kunit_tests(kvm_rs_riscv_host)]
mod tests {
    use super::*;

    #[test]
    fn host_has_h_extension() {
        assert!(csr::has_h_extension());
    }

    #[test]
    fn vs_mode_is_64_bit() {
        // hstatus.VSXL = 2 means VS-mode XLEN is 64 (the only value an RV64
        // host that supports KVM guests may report here).
        assert_eq!(csr::hstatus_vsxl(csr::hstatus()), 2);
    }

    #[test]
    fn host_is_not_virtualized() {
        // hstatus.SPV set while the kernel runs would mean we trapped in from
        // a guest and never left; at rest it must be clear.
        assert_eq!(csr::hstatus() & csr::HSTATUS_SPV, 0);
    }
}
