//! # sip-stack
//!
//! An embeddable SIP stack for Rust. This root crate is the one applications add; it re-exports
//! each layer:
//!
//! - [`core`] (`sip-core`): the zero-copy message model, parser, serializer, URIs, typed
//!   headers, builders and the TCP/TLS stream framer.
//! - [`auth`] (`sip-auth`): digest authentication, server and client side, sans-IO.
//! - [`transport`] (`sip-transport`): UDP, TCP, TLS and WebSocket on tokio; RFC 3263 resolution.
//! - [`transaction`] (`sip-transaction`): the RFC 3261 §17 / RFC 6026 state machines, sans-IO.
//! - [`dialog`] (`sip-dialog`): the RFC 3261 §12-§15 dialog layer, sans-IO.
//! - [`ua`]: the UserAgent: calls, registrations and MESSAGE on the endpoint.
//! - [`endpoint`]: the async driver wiring transports and transactions for a TU.
//! - [`registrar`]: RFC 3261 §10.3 with digest, Path, outbound and the GB28181 profile.
//! - [`proxy`]: the RFC 3261 §16 stateful proxy: a sans-IO core and its shell on the Endpoint.
//!
//! ```
//! use sip_stack::core::{HeaderName, Message, Method};
//!
//! let req = Message::parse(&b"REGISTER sip:example.com SIP/2.0\r\n\
//!     Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKnashds7\r\n\
//!     Max-Forwards: 70\r\n\
//!     To: Bob <sip:bob@example.com>\r\n\
//!     From: Bob <sip:bob@example.com>;tag=456248\r\n\
//!     Call-ID: 843817637684230@998sdasdh09\r\n\
//!     CSeq: 1826 REGISTER\r\n\
//!     Contact: <sip:bob@192.0.2.10>;expires=7200\r\n\
//!     Content-Length: 0\r\n\r\n"[..])?;
//! req.validate()?;
//! assert_eq!(req.method(), Some(Method::Register));
//! assert_eq!(req.via()?.branch(), Some("z9hG4bKnashds7"));
//! assert_eq!(req.to()?.uri().to_string(), "sip:bob@example.com");
//!
//! let ok = req.response(200).header("Expires", "7200").build()?;
//! assert_eq!(ok.status(), Some(200));
//! assert_eq!(ok.header(HeaderName::CSeq), Some("1826 REGISTER"));
//! # Ok::<(), sip_stack::core::Error>(())
//! ```
#![warn(missing_docs)]

pub use sip_auth as auth;
pub use sip_core as core;
pub use sip_transaction as transaction;
pub use sip_transport as transport;

#[cfg(feature = "redis")]
pub mod cluster;
pub mod dispatcher;
pub mod endpoint;
pub mod events;
pub mod proxy;
pub mod registrar;
pub mod sipcheck;
pub mod ua;

pub use sip_dialog as dialog;

/// The README's examples, compiled and run as doc-tests so that they stay true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
