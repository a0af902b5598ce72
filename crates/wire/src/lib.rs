//! Nebula's wire contract as Rust types.
//!
//! Every JSON body the server sends or accepts, and every WebSocket event, is defined here
//! once. The server, its integration tests and the load simulator all use these types, so a
//! change to the wire format is a change in one place that every consumer sees at compile time.
//! `../shared/CONTRACT.md` is the normative text; these types follow it field for field.

pub mod accounts;
pub mod asyncapi;
pub mod notify;
pub mod people;
pub mod problem;
pub mod rest;
pub mod settings;
pub mod ws;

pub use accounts::*;
pub use people::*;
pub use problem::Problem;
pub use rest::*;
pub use settings::*;
pub use ws::{CallMedia, ClientEvent, PresenceStatus, ServerEvent, TypingState};

/// Per-room message sequence number: 1, 2, 3 … with no gaps.
pub type Seq = i64;

/// Per-room change counter: every new message, edit, delete and reaction change takes the
/// next one. Clients compare revs; they never count on them being consecutive.
pub type Rev = i64;
