//! Events: SUBSCRIBE/NOTIFY (RFC 6665) and PUBLISH (RFC 3903) on the [`Endpoint`](crate::endpoint::Endpoint),
//! a presence server (RFC 3856 with PIDF, RFC 3863), an IM broker with topics, and MESSAGE
//! (RFC 3428) store-and-forward.
//!
//! The protocol state machines are sans-IO in [`sip_dialog::subscription`] and
//! [`sip_dialog::publication`]; this module runs them:
//!
//! - [`EventPackage`]: a package's name, body types, compositor and authorization hook.
//!   [`PresencePackage`] composes a user's publications into one PIDF document (a tuple per
//!   publication; without publications, `open` with a tuple per registered contact while the
//!   user has live bindings, `closed` when it has none); [`ImPackage`] makes `sip:TOPIC@DOMAIN` a
//!   topic: a MESSAGE or a PUBLISH to it is NOTIFYed to every subscriber, in order.
//! - [`EventServer`]: the notifier side for the domain: SUBSCRIBE and PUBLISH for the
//!   packages, fan-out under caps (503 with Retry-After when one is hit), one NOTIFY
//!   transaction outstanding per subscription, the MESSAGE store ([`MessageStore`]).
//! - [`serve`]: a proxy, a registrar and the event server on one endpoint (`proxy
//!   --presence`): stored messages go out when their user registers.
//! - [`Watcher`]: the subscriber side for an application: SUBSCRIBE, refresh, unsubscribe and
//!   a stream of [`Notification`](sip_dialog::subscription::Notification)s. It owns its
//!   endpoint's requests; a [`UserAgent`](crate::ua::UserAgent) subscribes on its own endpoint
//!   instead ([`UserAgent::subscribe`](crate::ua::UserAgent::subscribe)), and is a notifier
//!   too ([`UserAgent::subscriptions`](crate::ua::UserAgent::subscriptions)).

mod package;
pub mod pidf;
mod presence;
mod serve;
mod server;
mod store;
mod watcher;

pub use package::{Authorization, Authorizer, EventPackage, ImPackage, PackageKind};
pub use presence::{compose_pidf, registered_pidf, PresencePackage};
pub use serve::serve;
pub use server::{BrokerLimits, EventConfig, EventServer, EventStats, Handled};
pub use store::{MessageStore, MessageStoreLimits, StoreFull};
pub use watcher::{Subscription, WatchError, Watcher, WatcherConfig};
