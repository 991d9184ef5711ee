//! sip-core (work in progress skeleton)
pub mod auth;
pub mod error;
pub use error::{Error, Result};
