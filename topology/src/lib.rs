//! Sessionfleet's topology files: the one description of a fleet that ops check in, and that the
//! hub, the spokes and the edge-clients all load.
//!
//! This crate owns the file format (TOML), its validation with precise errors (every mistake at
//! once, each with file, line, column and field), the views derived from a topology (a
//! datacentre's failover chain, the spokes the hub expects, link settings per datacentre), hot
//! reload that keeps the old topology when a new one is invalid, and the renderings behind
//! `sessionfleet topology check|show|inventory` (including the ansible inventory).
//!
//! # Layout
//! - [`model`]: the typed topology ([`Topology`], [`Hub`], [`Datacentre`], [`Spoke`], ...).
//! - `load`: [`Topology::parse`] and [`Topology::load`], text or file to a checked topology.
//! - `reader`: typed, located access to the parsed TOML tree (spans → line and column).
//! - `parse`: the file's schema: sections, keys, types and per-field rules.
//! - `validate`: rules across fields (unique names and addresses, failover targets).
//! - [`error`]: [`TopologyErrors`], every mistake in a file.
//! - `chain`: derived views: [`Topology::failover_chain`], [`Topology::hub_expected_spokes`], lookups.
//! - [`watch`]: [`TopologyWatcher`], hot reload behind an `ArcSwap`.
//! - `show`, [`inventory`]: human, JSON and ansible renderings.
//! - [`cli`]: the `topology` subcommand of the `sessionfleet` binary.
//!
//! # Must not know
//! Networking beyond parsing socket addresses: no HTTP, no gRPC, no dialling. Addresses here are
//! facts about the fleet; what talks to them lives in `server`, `replicator` and `edge-client`.

#![deny(missing_docs)]

mod chain;
pub mod cli;
pub mod error;
pub mod inventory;
mod load;
pub mod model;
mod parse;
mod reader;
mod show;
mod validate;
pub mod watch;

pub use chain::{Target, TargetKind};
pub use error::{TopologyError, TopologyErrors};
pub use model::{
    check_label, AuthFiles, ClientSettings, DatabaseSpec, Datacentre, DatacentreName, FailoverStep,
    FleetName, Hub, LinkOverride, LinkSettings, Links, NodeName, NodeTlsFiles, Spoke, TlsFiles, Topology,
    DEFAULT_REVS_LIMIT, NODE_PLACEHOLDER,
};
pub use watch::TopologyWatcher;
