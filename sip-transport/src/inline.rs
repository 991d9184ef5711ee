//! Run to completion: a request answered on the task that received it.
//!
//! A UDP request normally travels from the socket's receive task to the endpoint's driver and
//! on to the application's task, and its response comes back the same way: three tasks, two
//! queues and a copy of the message at each step. An [`InlineHandler`] sees each request on
//! the receive task first and may answer it there, through the [`TransportHandle`] it is given,
//! so that a registrar answering REGISTER reads, parses, handles, answers and writes without a
//! hand-off. What it does not take goes on as usual.

use sip_core::{Flow, Message};

use crate::layer::TransportHandle;

/// Sees UDP requests (and, if it wants, responses) on the receive task, before they are
/// queued for the endpoint.
///
/// It runs on the receive loop of a socket: it must be quick and never block. Work that has to
/// wait (a networked store) belongs on a task of its own, or to the usual path (return the
/// request).
pub trait InlineHandler: Send + Sync + 'static {
    /// `request` arrived on `flow` (already checked and stamped as every received request
    /// is). Return it to let it go on to the endpoint; return `None` when it was taken: answered
    /// through `transport` (for instance [`TransportHandle::enqueue_response`]), handed to a
    /// task, or deliberately dropped.
    fn request(&self, request: Message, flow: Flow, transport: &TransportHandle)
        -> Option<Message>;

    /// A response received over UDP, likewise (a stateless relay forwards it here). The
    /// default lets every response go on to the endpoint.
    fn response(
        &self,
        response: Message,
        flow: Flow,
        transport: &TransportHandle,
    ) -> Option<Message> {
        let _ = (flow, transport);
        Some(response)
    }
}
