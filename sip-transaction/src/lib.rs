//! The SIP transaction layer (RFC 3261 §17, updated by RFC 6026), sans-IO: no sockets, no
//! clock, no tasks. A driver feeds it what arrived and the current time, and drains what to send
//! and what to tell the transaction user (TU).
//!
//! - The four machines of §17: INVITE client (Calling, Proceeding, Completed, Accepted; Timers
//!   A, B, D, M), non-INVITE client (Trying, Proceeding, Completed; E, F, K), INVITE server
//!   (Proceeding, Completed, Confirmed, Accepted; G, H, I, L, and 100 Trying after 200 ms) and
//!   non-INVITE server (Trying, Proceeding, Completed; J). Retransmissions only over unreliable
//!   transports; D, I, J, K are zero over reliable ones. The ACK of a non-2xx final response is
//!   built and sent by the INVITE client transaction (§17.1.1.3); 2xx responses and their ACKs
//!   belong to the TU (RFC 6026).
//! - Matching (§17.1.3, §17.2.3) with the RFC 2543 fallback, CANCEL targeting (§9.2) and
//!   merged-request detection (§8.2.2.2), in hash maps; a bounded table whose overflow is
//!   answered 503 with Retry-After.
//! - Every timer of every transaction in one queue: a driver sleeps until
//!   [`TransactionLayer::poll_timeout`] once.
//!
//! A non-INVITE client transaction over UDP, driven with injected time:
//!
//! ```
//! use std::time::{Duration, Instant};
//! use sip_core::{Flow, Message, Target, Transport};
//! use sip_transaction::{Destination, Event, TerminationReason, Timer, TransactionLayer};
//!
//! let mut layer = TransactionLayer::default();
//! let t0 = Instant::now();
//! let peer = "192.0.2.2:5060".parse().unwrap();
//! let request = Message::parse(&b"OPTIONS sip:bob@example.com SIP/2.0\r\n\
//!     Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKnashds7\r\n\
//!     From: <sip:alice@example.com>;tag=1928301774\r\nTo: <sip:bob@example.com>\r\n\
//!     Call-ID: a84b4c76e66710\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n\
//!     Content-Length: 0\r\n\r\n"[..])?;
//!
//! let key = layer.send_request(t0, request.clone(), Target::new(Transport::Udp, peer))?;
//! let sent = layer.poll_transmit().unwrap();
//! assert_eq!(sent.destination, Destination::Target(Target::new(Transport::Udp, peer)));
//! // Timer E: the first retransmission is due after T1.
//! assert_eq!(layer.poll_timeout(), Some(t0 + Duration::from_millis(500)));
//!
//! // 300 ms later the 200 OK arrives: Completed, the response goes to the TU.
//! let flow = Flow { transport: Transport::Udp, local: "192.0.2.1:5060".parse().unwrap(), remote: peer };
//! let ok = request.response(200).to_tag("bx").build()?;
//! layer.handle_message(t0 + Duration::from_millis(300), ok, flow)?;
//! match layer.poll_event() {
//!     Some(Event::Response { key: k, response, .. }) => {
//!         assert_eq!(k, key);
//!         assert_eq!(response.status(), Some(200));
//!     }
//!     other => panic!("{other:?}"),
//! }
//!
//! // Timer K (T4 = 5 s over UDP) absorbs response retransmissions, then the transaction ends.
//! let k = layer.poll_timeout().unwrap();
//! assert_eq!(k, t0 + Duration::from_millis(5300));
//! layer.handle_timeout(k);
//! assert!(matches!(
//!     layer.poll_event(),
//!     Some(Event::Terminated { reason: TerminationReason::Completed, .. })
//! ));
//! assert!(layer.is_empty());
//! # let _ = Timer::K;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

mod client;
mod config;
mod error;
mod event;
mod inbound;
mod index;
mod key;
mod layer;
mod messages;
mod server;
mod stats;
mod table;
mod timer;
mod txn;

pub use config::Config;
pub use error::Error;
pub use event::{
    CancelMatch, Destination, Event, IncomingRequest, TerminationReason, TransactionKey, Transmit,
};
pub use layer::TransactionLayer;
pub use stats::{StateCounts, Stats};
pub use table::KeyMap;
pub use timer::Timer;
pub use txn::{Kind, State};
