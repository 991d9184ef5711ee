//! SIP transports on tokio: UDP, TCP, TLS (RFC 3261 §18) and WebSocket (RFC 7118), flows and
//! connection reuse, RFC 5626 keep-alives, and the limits a server on the open internet needs.
//!
//! This is the only layer of the stack besides the root crate that touches sockets. It turns
//! datagrams and byte streams into parsed, validated [`sip_core::Message`]s whose top Via
//! carries `received`/`rport` (RFC 3261 §18.2.1, RFC 3581), each with the [`Flow`] it arrived
//! on; and it sends bytes back on a flow or to a [`Target`], reusing open connections.
//!
//! - [`TransportLayer::builder`] binds any number of UDP, TCP and TLS listeners (IPv4 and
//!   IPv6) and returns a [`TransportHandle`] (clone it freely) and a bounded receiver of
//!   [`TransportEvent`]s: messages, and flows opened and closed with a [`CloseReason`].
//! - Malformed requests are answered here (400, 505, 513… from
//!   [`sip_core::Error::response_status`]) when they carry what a response copies; otherwise
//!   dropped and counted. On a stream, input that cannot be framed closes the connection.
//! - [`TransportHandle::send`] sends bytes to a [`Destination`] (a flow or a target);
//!   [`TransportHandle::send_request`] adds the `sips:` check and the UDP→TCP switch of
//!   §18.1.1; [`TransportHandle::send_response`] routes per §18.2.2.
//! - Every limit is in [`TransportConfig`]; counters are read with [`TransportHandle::stats`].
//! - Feature `ws` (default): SIP over WebSocket and secure WebSocket (RFC 7118),
//!   [`TransportBuilder::ws`] / [`TransportBuilder::wss`] listeners and outbound connections to
//!   `Ws`/`Wss` targets; [`message_from_frame`] is the one-message-per-frame rule.
//! - Feature `dns` (default): RFC 3263 server location, [`Resolver`] (module [`resolve`]).
//!
//! ```
//! use bytes::Bytes;
//! use sip_core::{Target, Transport};
//! use sip_transport::{TransportEvent, TransportLayer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (handle, mut events) = TransportLayer::builder()
//!     .udp("127.0.0.1:0".parse()?)
//!     .build()
//!     .await?;
//! let me = handle.local_addr(Transport::Udp).unwrap();
//! let options = format!(
//!     "OPTIONS sip:{me} SIP/2.0\r\nVia: SIP/2.0/UDP {me};rport;branch=z9hG4bK1\r\n\
//!      To: <sip:{me}>\r\nFrom: <sip:{me}>;tag=1\r\nCall-ID: a1\r\nCSeq: 1 OPTIONS\r\n\
//!      Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
//! );
//! handle.send(Target::new(Transport::Udp, me), Bytes::from(options)).await?;
//! match events.recv().await {
//!     Some(TransportEvent::Message { msg, flow, .. }) => {
//!         assert_eq!(flow.remote, me);
//!         assert_eq!(msg.via()?.rport(), Some(Some(me.port()))); // stamped (RFC 3581)
//!         let ok = msg.response(200).build()?;
//!         handle.send_response(&ok, Some(flow)).await?;
//!     }
//!     other => panic!("{other:?}"),
//! }
//! # handle.shutdown();
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

mod config;
mod conn;
mod error;
mod event;
mod inbound;
mod inline;
mod layer;
mod queue;
mod registry;
#[cfg(feature = "dns")]
pub mod resolve;
mod response;
mod stats;
mod stream;
mod tls;
mod udp;
mod udp_batch;
mod via;
#[cfg(feature = "ws")]
mod ws;

pub use config::TransportConfig;
pub use error::{SendError, TlsConfigError};
pub use event::{CloseReason, TransportEvent};
pub use inline::InlineHandler;
pub use layer::{Destination, TransportBuilder, TransportHandle, TransportLayer};
#[cfg(feature = "dns")]
pub use resolve::{ResolveError, Resolver, ResolverConfig};
pub use response::destination as response_destination;
pub use sip_core::{Flow, Target, Transport};
pub use stats::{Stats, TransportStats};
pub use tls::{TlsClientConfig, TlsServerConfig};
pub use via::stamp_via;
#[cfg(feature = "ws")]
pub use ws::{message_from_frame, SUBPROTOCOL as WS_SUBPROTOCOL};
