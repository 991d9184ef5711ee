//! Event packages (RFC 6665 §7) as a trait: the name, the body types a PUBLISH may carry, how
//! publications compose into the state a NOTIFY carries, and who may subscribe.

use std::sync::Arc;

use sip_dialog::publication::Publication;
use sip_dialog::subscription::{Content, Overflow};

/// The application's answer to a subscription request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authorization {
    /// Subscribe now (200, `Subscription-State: active`).
    Accept,
    /// Subscribe, pending (200, `Subscription-State: pending`, no state until activated).
    Pending,
    /// Refuse with this status (403, 404…).
    Reject(u16),
}

/// What a package's NOTIFYs carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackageKind {
    /// The state of a resource, composed from its publications: a NOTIFY per change, and
    /// only the latest matters when a subscriber lags ([`Overflow::Coalesce`]).
    State,
    /// A stream of messages (the `im` topics): every one is delivered, in order
    /// ([`Overflow::Reject`]: a full queue refuses the publisher with 503).
    Messages,
}

impl PackageKind {
    /// The queue policy of the package's subscriptions.
    pub fn overflow(self) -> Overflow {
        match self {
            PackageKind::State => Overflow::Coalesce,
            PackageKind::Messages => Overflow::Reject,
        }
    }
}

/// An event package.
pub trait EventPackage: Send + Sync + 'static {
    /// The Event header token (`presence`, `im`).
    fn name(&self) -> &str;

    /// The body types a PUBLISH may carry (415 otherwise); empty: any.
    fn accepts(&self) -> &[&str];

    /// State or messages.
    fn kind(&self) -> PackageKind;

    /// The authorization hook: may `watcher` (the subscriber's From URI) subscribe to
    /// `resource`? Accepts everyone by default.
    fn authorize(&self, watcher: &str, resource: &str) -> Authorization {
        let _ = (watcher, resource);
        Authorization::Accept
    }

    /// Checks a published body (415 for a type not in [`EventPackage::accepts`], 400 for one
    /// that does not parse).
    fn check(&self, content: &Content) -> Result<(), u16> {
        let accepts = self.accepts();
        let media = content
            .content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim();
        if accepts.is_empty() || accepts.iter().any(|a| a.eq_ignore_ascii_case(media)) {
            Ok(())
        } else {
            Err(415)
        }
    }

    /// The compositor: the state of `resource` from its live `publications`, for a NOTIFY.
    /// `None`: the package has no state (a NOTIFY without a body).
    fn compose(&self, resource: &str, publications: &[Publication]) -> Option<Content>;

    /// The state of `resource` from its live `publications` and `registered`, the contacts of
    /// its live registration bindings (the registrar's view, fed by
    /// [`EventServer::set_registered`](super::EventServer::set_registered)). By default the
    /// registrations mean nothing and this is [`EventPackage::compose`]; presence overrides
    /// it (a registered user with no publication is `open`).
    fn compose_registered(
        &self,
        resource: &str,
        publications: &[Publication],
        registered: &[String],
    ) -> Option<Content> {
        let _ = registered;
        self.compose(resource, publications)
    }
}

/// The authorization hook of a package as a closure.
pub type Authorizer = Arc<dyn Fn(&str, &str) -> Authorization + Send + Sync>;

/// The `im` package: topics under the domain, one NOTIFY per message published.
#[derive(Default)]
pub struct ImPackage {
    authorizer: Option<Authorizer>,
}

impl ImPackage {
    /// Who may subscribe to which topic.
    pub fn with_authorizer(authorizer: Authorizer) -> ImPackage {
        ImPackage {
            authorizer: Some(authorizer),
        }
    }
}

impl EventPackage for ImPackage {
    fn name(&self) -> &str {
        "im"
    }

    fn accepts(&self) -> &[&str] {
        &[]
    }

    fn kind(&self) -> PackageKind {
        PackageKind::Messages
    }

    fn authorize(&self, watcher: &str, resource: &str) -> Authorization {
        match &self.authorizer {
            Some(f) => f(watcher, resource),
            None => Authorization::Accept,
        }
    }

    fn compose(&self, _resource: &str, _publications: &[Publication]) -> Option<Content> {
        None
    }
}
