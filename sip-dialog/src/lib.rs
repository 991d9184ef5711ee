//! The SIP dialog layer (RFC 3261 §12–§15), sans-IO: no sockets, no clock, no tasks. The
//! driver (sip-stack's `UserAgent`) feeds it the messages of a dialog and the current time and
//! gets back the dialog's state, the requests to send in it and what to answer.
//!
//! - [`Dialog`]: state (early, confirmed, terminated), ID for either role ([`DialogId`]:
//!   Call-ID, local tag, remote tag), route set ([`RouteSet`]: Record-Route, reversed for the
//!   UAC), remote target (Contact, updated by target refreshes), local and remote CSeq,
//!   `secure`. [`Dialog::request`] builds a request per §12.2.1.1 (loose and strict routing),
//!   [`Dialog::check_request`] checks one received per §12.2.2 (481, 500).
//! - [`DialogTable`]: dialogs by ID with the usage state on each, matching of requests and of
//!   responses from forks, removal on termination, caps on count and memory, [`Stats`].
//! - [`invite`]: the INVITE usage. [`invite::InviteClient`] follows one INVITE through its
//!   forks (early dialog per To-tag, the ACK of each 2xx built here and re-sent for every
//!   retransmitted 2xx, extra forks handed out for ACK + BYE, Timer B);
//!   [`invite::InviteUsage`] keeps a dialog's pending INVITEs, glare (491 and the §14.1 retry
//!   timer) and the UAS's 2xx retransmission until the ACK ([`invite::TwoXxRetransmit`]).
//! - [`prack`]: RFC 3262 reliable provisionals (RSeq/RAck, their retransmission, PRACK
//!   matching, the 2xx held behind an unacknowledged SDP) for the UAS and the UAC.
//! - [`session_timer`]: RFC 4028 (Session-Expires / Min-SE negotiation, 422, the refresher,
//!   refresh at half the interval, BYE at expiry) on injected time.
//!
//! - [`subscription`]: RFC 6665 SUBSCRIBE/NOTIFY for both roles ([`subscription::Subscriber`],
//!   [`subscription::Notifier`]), each subscription a [`Dialog`].
//! - [`publication`]: RFC 3903 PUBLISH: the event state compositor
//!   ([`publication::Compositor`]) and the [`publication::Publisher`].
//!
//! ```
//! use std::time::{Duration, Instant};
//! use sip_core::{Message, Method};
//! use sip_dialog::invite::{ClientEvent, InviteClient};
//! use sip_dialog::{DialogTable, State};
//!
//! let invite = Message::parse(&b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
//!     Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n\
//!     From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
//!     To: Bob <sip:bob@biloxi.example.com>\r\nCall-ID: a84b4c76e66710\r\n\
//!     CSeq: 314159 INVITE\r\nContact: <sip:alice@pc33.atlanta.example.com>\r\n\
//!     Content-Length: 0\r\n\r\n"[..])?;
//! let t0 = Instant::now();
//! let mut client = InviteClient::new(invite.clone(), "sip:alice@pc33.atlanta.example.com",
//!     Duration::from_millis(500))?;
//! let ok = invite.response(200).to_tag("a6c85cf")
//!     .header("Record-Route", "<sip:ss1.example.com;lr>")
//!     .header("Contact", "<sip:bob@192.0.2.4>").build()?;
//! let ClientEvent::Answered { dialog, ack, .. } =
//!     client.on_response(t0, &ok, "SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKack1")
//! else { panic!() };
//! // §13.2.2.4: the ACK goes to the remote target along the route set, with the INVITE's CSeq.
//! assert_eq!(ack.uri_str(), Some("sip:bob@192.0.2.4"));
//! assert_eq!(ack.header(sip_core::HeaderName::Route), Some("<sip:ss1.example.com;lr>"));
//! assert_eq!(ack.cseq()?.seq, 314159);
//!
//! let mut table: DialogTable<()> = DialogTable::default();
//! let entry = table.insert(*dialog, ())?;
//! assert_eq!(entry.dialog.state(), State::Confirmed);
//! let bye = entry.dialog.request(Method::Bye, "SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKb1")?
//!     .build()?;
//! assert_eq!(bye.cseq()?.seq, 314160);
//! assert_eq!(bye.header(sip_core::HeaderName::To), Some("Bob <sip:bob@biloxi.example.com>;tag=a6c85cf"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod dialog;
mod error;
mod id;
pub mod invite;
pub mod prack;
pub mod publication;
pub mod refer;
mod route;
pub mod session_timer;
pub mod subscription;
mod table;

pub use dialog::{check_dialog_response, is_target_refresh, Dialog, EndCause, Reject, State};
pub use error::Error;
pub use id::{DialogId, Role};
pub use route::{RequestTarget, RouteSet};
pub use table::{DialogTable, Entry, Limits, Stats};

#[cfg(test)]
mod event_tests;
#[cfg(test)]
mod tests;
