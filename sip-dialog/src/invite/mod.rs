//! The INVITE usage (RFC 3261 §13–§15): the UAC's forks and ACKs ([`InviteClient`]), the
//! session state on a dialog ([`InviteUsage`]: pending INVITEs, glare, 2xx retransmission) and
//! the 2xx retransmission schedule itself ([`TwoXxRetransmit`]).

mod client;
mod retransmit;
mod usage;

pub use client::{ClientEvent, InviteClient};
pub use retransmit::{TwoXxAction, TwoXxRetransmit};
pub use usage::{glare_delay, InviteUsage, InviteVerdict, Pending, Timers, UsageAction};
