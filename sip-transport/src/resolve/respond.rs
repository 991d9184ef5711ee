//! RFC 3263 §5 for the transport layer: a response whose top Via has a sent-by name (and no
//! `received`) is sent to that name's resolved targets, without the caller waiting.

use bytes::Bytes;
use tokio::sync::oneshot;
use tracing::debug;

use crate::error::SendError;
use crate::layer::{Destination, Outcome, TransportHandle};
use crate::queue::{Item, Notice};
use crate::stats::Counters;

use super::SentBy;

impl TransportHandle {
    /// RFC 3263 §5: resolves a response's sent-by name in a task of its own (the caller never
    /// waits), then sends to the first target that takes it; a failure is reported through the
    /// notice like any later send failure.
    pub(crate) fn resolve_response(&self, sent_by: SentBy, data: Bytes, notice: Notice) -> Outcome {
        let handle = self.clone();
        tokio::spawn(async move {
            let Some(resolver) = handle.shared().resolver.clone() else {
                return;
            };
            let targets = resolver
                .resolve_sent_by(sent_by.transport, &sent_by.host, sent_by.port)
                .await
                .unwrap_or_default();
            let mut notice = notice;
            for t in targets {
                debug!(target = %t, host = %sent_by.host, "response to a sent-by name (RFC 3263 §5)");
                let dest = Destination::Target(t.clone());
                let sent = match notice {
                    Notice::Done(tx) => {
                        let (inner, rx) = oneshot::channel();
                        match handle.dispatch(dest, data.clone(), Notice::Done(inner)) {
                            Ok(Outcome::Written(f)) => {
                                let _ = tx.send(Ok(f));
                                return;
                            }
                            Ok(Outcome::Queued(_)) => {
                                let _ = tx.send(rx.await.unwrap_or(Err(SendError::Shutdown)));
                                return;
                            }
                            Err(e) => {
                                notice = Notice::Done(tx);
                                Err(e)
                            }
                        }
                    }
                    other => {
                        let kept = match &other {
                            Notice::Tag(tag) => Notice::Tag(*tag),
                            _ => Notice::None,
                        };
                        let r = handle.dispatch(dest, data.clone(), other);
                        notice = kept;
                        r
                    }
                };
                match sent {
                    Ok(_) => return,
                    Err(e) => {
                        debug!(target = %t, error = %e, "response not sent there; next target");
                        resolver.mark_down(&t);
                    }
                }
            }
            Counters::bump(&handle.shared().stats.send_errors);
            let item = Item { data, notice };
            crate::conn::fail_items(&handle.shared().events, vec![item], || {
                SendError::NoRoute("the sent-by name did not resolve (RFC 3263 §5)")
            })
            .await;
        });
        Outcome::Queued(None)
    }
}
