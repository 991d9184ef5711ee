//! Clustering: registrar and proxy nodes sharing one location store in Redis.
//!
//! - [`RedisLocationStore`] implements the registrar's
//!   [`LocationStore`](crate::registrar::LocationStore) on Redis: one atomic Lua script per
//!   REGISTER (RFC 3261 §10.3), expiry in the Redis server's clock, the node holding each
//!   flow-bound binding recorded, node heartbeats, and registration events over pub/sub
//!   ([`ClusterEvent`]).
//! - [`ClusterRouter`] is the proxy's router over it: a binding whose flow another node holds
//!   is reached through that node.
//!
//! The stateless front-end that spreads requests over the nodes is
//! [`dispatcher`](crate::dispatcher).

mod codec;
mod lua;
mod router;
mod store;
#[cfg(test)]
mod tests;

pub use router::{ClusterRouter, NODE_PARAM};
pub use store::{
    ClusterEvent, ClusterEventKind, Owner, RedisLocationStore, RedisStoreConfig, RedisStoreError,
};
