//! Benchmarks that write a report (the seed's schedule, per-task overhead against the raw
//! broker) and the stage planner behind `fleet plan`.
//!
//! Layout:
//! - `model`: the slot model of a config: stage work, the pipelined bound, a FIFO simulation
//!   of the fleet and of the seed's barrier schedule. Pure.
//! - the planner (`fleet plan`) is the `planner` crate; `fleet-bench plan` runs the same.
//! - `harness` (feature `runner`): an in-process fleet under a unique prefix, driven over AMQP.
//! - `seed`, `overhead` (feature `runner`): the two benchmarks; `plot` draws slot occupancy;
//!   `report` writes their sections into docs/benchmarks.md.
//!
//! Invariant: a benchmark leaves nothing behind on the broker or in Redis (unique prefix,
//! removed at the end), except Redis keys kept on request (`seed --keep`).
#![forbid(unsafe_code)]

pub mod model;

#[cfg(feature = "runner")]
pub mod harness;
#[cfg(feature = "runner")]
pub mod overhead;
#[cfg(feature = "runner")]
pub mod plot;
#[cfg(feature = "runner")]
pub mod report;
#[cfg(feature = "runner")]
pub mod seed;

/// The planner moved to its own crate; `bench::planner` stays for the benchmark's CLI.
pub use planner;
