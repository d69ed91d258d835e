//! Cairn's domain model: everything about assets that can be decided without IO, except
//! reading the definition files themselves (in [`loader`]).
//!
//! Invariant: no database, HTTP, process or async code here (see docs/ARCHITECTURE.md;
//! `tests/architecture.rs` checks the dependency list).

pub mod alerts;
pub mod asset;
pub mod classification;
pub mod code_version;
pub mod diagnostic;
pub mod graph;
pub mod key;
pub mod layout;
pub mod loader;
pub mod openlineage;
pub mod partitions;
pub mod policy;
pub mod schema;
pub mod selection;
pub mod spec;

pub use asset::{AssetDef, AssetId, Command, Dependency, Program};
pub use classification::Classification;
pub use diagnostic::Diagnostic;
pub use graph::AssetGraph;
pub use key::AssetKey;
pub use selection::Selection;
