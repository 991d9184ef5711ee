//! # sip-core
//!
//! The message layer of the SIP stack (RFC 3261 §7, §18.3, §19, §20, §25): a zero-copy parser, the
//! message model, typed header views parsed on demand, editing without re-parsing, builders,
//! and the TCP/TLS stream framer. No I/O, no async.
//!
//! - [`Message`]: one buffer ([`bytes::Bytes`]) and a table of header offsets into it; parsing a
//!   typical datagram allocates nothing. [`Message::parse`] for datagrams,
//!   [`framer::Framer`] for streams, [`Message::validate`] for the role-independent checks.
//! - Typed views: [`uri::Uri`], [`addr::NameAddr`], [`addr::ContactValue`], [`via::Via`],
//!   [`headers::CSeq`], [`headers::MediaType`], [`auth::Challenge`], [`auth::Credentials`]…, reached
//!   through accessors such as [`Message::via`], [`Message::from`], [`Message::cseq`].
//! - Editing ([`Message::push_via`], [`Message::pop_route`], [`Message::set_header`]…) writes
//!   only what changed; serialising copies every other line back byte for byte.
//! - Building: [`builder::RequestBuilder`], [`Message::response`] (RFC 3261 §8.2.6), and
//!   [`random::IdGenerator`] for branches, tags and Call-IDs.
//!
//! ```
//! use sip_core::{HeaderName, Message, Method};
//!
//! let mut msg = Message::parse(&b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
//!     v: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n\
//!     Max-Forwards: 70\r\nt: Bob <sip:bob@biloxi.example.com>\r\n\
//!     f: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
//!     i: a84b4c76e66710@pc33.atlanta.example.com\r\nCSeq: 314159 INVITE\r\n\
//!     Contact: <sip:alice@pc33.atlanta.example.com>\r\nl: 0\r\n\r\n"[..])?;
//! msg.validate()?;
//! assert_eq!(msg.method(), Some(Method::Invite));
//! assert_eq!(msg.from()?.tag(), Some("1928301774"));
//! assert_eq!(msg.cseq()?.seq, 314159);
//!
//! // A proxy adds its Via and forwards: only the new line is written, the rest is copied.
//! msg.push_via("SIP/2.0/UDP proxy.example.com;branch=z9hG4bK2d4790")?;
//! let wire = msg.to_bytes();
//! let again = Message::parse(wire)?;
//! assert_eq!(again.values(HeaderName::Via).count(), 2);
//! # Ok::<(), sip_core::Error>(())
//! ```
#![warn(missing_docs)]

pub mod addr;
pub mod auth;
pub mod builder;
mod edit;
pub mod error;
pub mod framer;
pub mod headers;
pub mod limits;
pub mod message;
pub mod method;
pub mod name;
pub mod net;
pub mod params;
pub mod parser;
pub mod random;
mod serialize;
pub mod text;
mod typed;
pub mod uri;
mod uri_compare;
mod validate;
pub mod via;
pub use error::{Error, Result};
pub use limits::Limits;
pub use message::{HeaderField, Message, StartLine, Values};
pub use method::Method;
pub use name::HeaderName;
pub use net::{Flow, Target, Transport};
pub use parser::Framing;
