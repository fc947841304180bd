// SPDX-License-Identifier: GPL-2.0

//! Builds the pure-logic files of kvm_rs on the host, so their `#[cfg(test)]`
//! tests run with `cargo test`, no kernel needed. Each file here is the very
//! file compiled into kvm_rs.ko.

#![allow(dead_code)]

#[path = "../../../virt/kvm/abi.rs"]
pub mod abi;

#[path = "../../../virt/kvm/storage.rs"]
pub mod storage;

#[path = "../../../virt/kvm/memslot.rs"]
pub mod memslot;

#[path = "../../../virt/kvm/dirty_log.rs"]
pub mod dirty_log;
