//! RFC 3903 event state publication (PUBLISH), sans-IO, both roles.
//!
//! - [`Compositor`]: the event state compositor (ESC) of one event package. Publications per
//!   resource, each under an entity-tag (SIP-ETag): initial (body, no SIP-If-Match), refresh
//!   (SIP-If-Match, no body), modify (SIP-If-Match and a body), remove (SIP-If-Match,
//!   `Expires: 0`), expiry; 412 for an unknown entity-tag, 423 below the minimum Expires;
//!   caps on publications per resource and in all.
//! - [`Publisher`]: the publishing side: remembers the entity-tag and adds SIP-If-Match,
//!   refreshes before expiry, starts over with full state after a 412.
//!
//! 489 (unknown event package) is the caller's check before the compositor: see
//! [`crate::subscription::check_event`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sip_core::builder::RequestBuilder;
use sip_core::{HeaderName, Message};

use crate::subscription::Content;
use crate::Error;

/// One publication of a resource's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    /// Its current entity-tag.
    pub etag: String,
    /// When it expires.
    pub expires_at: Instant,
    /// The published body.
    pub content: Content,
}

/// The compositor's settings.
#[derive(Debug, Clone)]
pub struct CompositorConfig {
    /// Below this a PUBLISH gets 423 with Min-Expires.
    pub min_expires: u32,
    /// Longer requests are cut down to this.
    pub max_expires: u32,
    /// When the PUBLISH has no Expires.
    pub default_expires: u32,
    /// The most publications per resource (one more: 503 with Retry-After).
    pub max_per_resource: usize,
    /// The most publications in all.
    pub max_total: usize,
    /// The largest body accepted (413 above).
    pub max_body: usize,
}

impl Default for CompositorConfig {
    fn default() -> Self {
        CompositorConfig {
            min_expires: 60,
            max_expires: 3600,
            default_expires: 3600,
            max_per_resource: 16,
            max_total: 100_000,
            max_body: 16 * 1024,
        }
    }
}

/// A PUBLISH as the compositor sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishRequest {
    /// SIP-If-Match.
    pub if_match: Option<String>,
    /// Expires, if present.
    pub expires: Option<u32>,
    /// The body, if any.
    pub content: Option<Content>,
}

impl PublishRequest {
    /// The parts of a PUBLISH; 400 for a malformed Expires.
    pub fn of(msg: &Message) -> Result<PublishRequest, u16> {
        let expires = match msg.expires() {
            Some(Ok(e)) => Some(e),
            Some(Err(_)) => return Err(400),
            None => None,
        };
        Ok(PublishRequest {
            if_match: msg
                .header(HeaderName::SipIfMatch)
                .map(|v| v.trim().to_owned()),
            expires,
            content: Content::of(msg),
        })
    }
}

/// What an accepted PUBLISH did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The publication's new entity-tag (the removed one's for a removal).
    pub etag: String,
    /// The Expires granted (0: removed).
    pub expires: u32,
    /// Whether the resource's composed state changed (initial, modify, remove): notify.
    pub changed: bool,
}

impl Published {
    /// The 200 to `publish`: SIP-ETag and Expires.
    pub fn response(&self, publish: &Message) -> Result<Message, Error> {
        Ok(publish
            .response(200)
            .header("SIP-ETag", &self.etag)
            .header("Expires", self.expires.to_string())
            .build()?)
    }
}

/// Why a PUBLISH was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishError {
    /// 400 (no body in an initial PUBLISH), 412 (unknown entity-tag), 413 (body too large),
    /// 423 (Expires too short), 503 (a cap is reached).
    pub status: u16,
    /// For 423: the Min-Expires value.
    pub min_expires: Option<u32>,
}

impl PublishError {
    fn status(status: u16) -> PublishError {
        PublishError {
            status,
            min_expires: None,
        }
    }

    /// The response to `publish` this refusal means.
    pub fn response(&self, publish: &Message) -> Result<Message, Error> {
        let mut b = publish.response(self.status);
        if let Some(m) = self.min_expires {
            b = b.header("Min-Expires", m.to_string());
        }
        if self.status == 503 {
            b = b.header("Retry-After", "5");
        }
        Ok(b.build()?)
    }
}

/// The event state compositor of one event package (RFC 3903 §6).
#[derive(Debug)]
pub struct Compositor {
    resources: HashMap<String, Vec<Publication>>,
    total: usize,
    config: CompositorConfig,
    prefix: String,
    counter: u64,
}

impl Compositor {
    /// An empty compositor. Entity-tags are `salt` (hex) and a counter: give a random salt so
    /// that tags do not repeat across restarts.
    pub fn new(config: CompositorConfig, salt: u64) -> Compositor {
        Compositor {
            resources: HashMap::new(),
            total: 0,
            config,
            prefix: format!("{salt:x}"),
            counter: 0,
        }
    }

    fn next_etag(&mut self) -> String {
        self.counter += 1;
        format!("{}.{}", self.prefix, self.counter)
    }

    /// The live publications of `resource`.
    pub fn publications(&self, resource: &str) -> &[Publication] {
        self.resources.get(resource).map_or(&[], Vec::as_slice)
    }

    /// Resources with publications, and publications in all.
    pub fn counts(&self) -> (usize, usize) {
        (self.resources.len(), self.total)
    }

    /// RFC 3903 §6: processes one PUBLISH for `resource` at `now`.
    pub fn publish(
        &mut self,
        now: Instant,
        resource: &str,
        req: PublishRequest,
    ) -> Result<Published, PublishError> {
        let asked = req.expires.unwrap_or(self.config.default_expires);
        if asked != 0 && asked < self.config.min_expires {
            return Err(PublishError {
                status: 423,
                min_expires: Some(self.config.min_expires),
            });
        }
        let expires = asked.min(self.config.max_expires);
        if req
            .content
            .as_ref()
            .is_some_and(|c| c.body.len() > self.config.max_body)
        {
            return Err(PublishError::status(413));
        }
        let expires_at = now + Duration::from_secs(expires.into());
        let Some(tag) = req.if_match else {
            // Initial publication: a body is required, Expires 0 makes no sense.
            let Some(content) = req.content else {
                return Err(PublishError::status(400));
            };
            if expires == 0 {
                return Err(PublishError::status(400));
            }
            let full = self.total >= self.config.max_total
                || self
                    .resources
                    .get(resource)
                    .is_some_and(|v| v.len() >= self.config.max_per_resource);
            if full {
                return Err(PublishError::status(503));
            }
            let etag = self.next_etag();
            self.resources
                .entry(resource.to_owned())
                .or_default()
                .push(Publication {
                    etag: etag.clone(),
                    expires_at,
                    content,
                });
            self.total += 1;
            return Ok(Published {
                etag,
                expires,
                changed: true,
            });
        };
        let Some(list) = self.resources.get_mut(resource) else {
            return Err(PublishError::status(412));
        };
        let Some(i) = list
            .iter()
            .position(|p| p.etag == tag && p.expires_at > now)
        else {
            return Err(PublishError::status(412));
        };
        if expires == 0 {
            list.remove(i);
            self.total -= 1;
            if list.is_empty() {
                self.resources.remove(resource);
            }
            return Ok(Published {
                etag: tag,
                expires: 0,
                changed: true,
            });
        }
        self.counter += 1;
        let etag = format!("{}.{}", self.prefix, self.counter);
        let p = &mut list[i];
        p.etag = etag.clone();
        p.expires_at = expires_at;
        let changed = match req.content {
            Some(c) => {
                let changed = c != p.content;
                p.content = c;
                changed
            }
            None => false,
        };
        Ok(Published {
            etag,
            expires,
            changed,
        })
    }

    /// The earliest expiry.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.resources
            .values()
            .flat_map(|v| v.iter().map(|p| p.expires_at))
            .min()
    }

    /// Removes the publications expired at `now`; returns the resources whose state changed.
    pub fn expire(&mut self, now: Instant) -> Vec<String> {
        let mut changed = Vec::new();
        let mut removed = 0;
        self.resources.retain(|resource, list| {
            let before = list.len();
            list.retain(|p| p.expires_at > now);
            if list.len() != before {
                removed += before - list.len();
                changed.push(resource.clone());
            }
            !list.is_empty()
        });
        self.total -= removed;
        changed
    }
}

/// What a response to a PUBLISH means for the [`Publisher`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublisherEvent {
    /// Accepted: the entity-tag and Expires granted are stored; refresh by
    /// [`Publisher::poll_timeout`].
    Accepted,
    /// 412: the compositor lost our publication; publish the full state again
    /// ([`Publisher::publish`] with the body).
    Lost,
    /// 423: the Expires was too short; it is raised to the Min-Expires, publish again.
    Retry,
    /// Another failure: publication over.
    Failed(u16),
    /// A provisional.
    Provisional,
}

/// The publishing side (RFC 3903 §4) of one event state.
#[derive(Debug, Clone)]
pub struct Publisher {
    event: String,
    expires: u32,
    etag: Option<String>,
    refresh_at: Option<Instant>,
}

impl Publisher {
    /// A publisher of `event` state for `expires` seconds at a time.
    pub fn new(event: &str, expires: u32) -> Publisher {
        Publisher {
            event: event.to_owned(),
            expires,
            etag: None,
            refresh_at: None,
        }
    }

    /// The entity-tag the compositor gave us last.
    pub fn etag(&self) -> Option<&str> {
        self.etag.as_deref()
    }

    /// Adds Event, Expires, SIP-If-Match (after the first publication) and `content` to a
    /// PUBLISH: the initial publication or a modification with a body, a refresh without.
    pub fn publish(&mut self, b: RequestBuilder, content: Option<&Content>) -> RequestBuilder {
        self.refresh_at = None;
        let mut b = b
            .header("Event", &self.event)
            .header("Expires", self.expires.to_string());
        if let Some(t) = &self.etag {
            b = b.header("SIP-If-Match", t);
        }
        if let Some(c) = content {
            b = b.body(&c.content_type, c.body.clone());
        }
        b
    }

    /// The removal (`Expires: 0` with SIP-If-Match); `None` when nothing is published.
    pub fn remove(&mut self, b: RequestBuilder) -> Option<RequestBuilder> {
        let tag = self.etag.take()?;
        self.refresh_at = None;
        Some(
            b.header("Event", &self.event)
                .header("Expires", "0")
                .header("SIP-If-Match", tag),
        )
    }

    /// The response to our last PUBLISH.
    pub fn on_response(&mut self, now: Instant, response: &Message) -> PublisherEvent {
        let status = response.status().unwrap_or(0);
        match status {
            100..=199 => PublisherEvent::Provisional,
            200..=299 => {
                let granted = match response.expires() {
                    Some(Ok(e)) => e,
                    _ => self.expires,
                };
                if granted == 0 {
                    self.etag = None;
                    return PublisherEvent::Accepted;
                }
                self.etag = response
                    .header(HeaderName::SipETag)
                    .map(|t| t.trim().to_owned());
                let secs = u64::from(granted);
                let delay = (secs * 9 / 10).min(secs.saturating_sub(5)).max(secs / 2);
                self.refresh_at = Some(now + Duration::from_secs(delay.max(1)));
                PublisherEvent::Accepted
            }
            412 => {
                self.etag = None;
                PublisherEvent::Lost
            }
            423 => {
                if let Some(Ok(min)) = response
                    .header(HeaderName::MinExpires)
                    .map(|v| v.trim().parse::<u32>())
                {
                    self.expires = self.expires.max(min);
                }
                PublisherEvent::Retry
            }
            s => {
                self.refresh_at = None;
                PublisherEvent::Failed(s)
            }
        }
    }

    /// When the refresh is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.refresh_at
    }
}
