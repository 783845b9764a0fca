//! Fault tools for Sessionfleet's multi-process tests: what breaks, and how to tell whether the
//! store survived it.
//!
//! - [`proxy`]: a TCP fault proxy put between a client and a node, or a spoke and the hub —
//!   delay and jitter, a bandwidth cap, blackhole, reset, a one-way hold — switched at runtime.
//! - [`history`]: every client operation with its invoke and complete times, outcome and answer.
//! - [`checker`]: judges a history against the nodes' final states: lost acknowledged writes,
//!   reads of deleted or expired sessions beyond the staleness bound, divergent final states,
//!   unknown outcomes and how many landed.
//!
//! It knows the nodes only from the outside (TCP and what clients saw): nothing here reaches into
//! a store or a server.

pub mod checker;
pub mod history;
pub mod proxy;

pub use checker::{check, Bounds, FinalDoc, FinalStates, Report};
pub use history::{History, Op, OpKind, Outcome};
pub use proxy::{FaultProxy, Faults, Link};
