//! The `presence` event package (RFC 3856) with PIDF bodies (RFC 3863): the user's
//! publications compose into one document with their tuples. A user with none is derived
//! from its registrations: `open` with a tuple per registered contact while it has live
//! bindings, `closed` when it has none.
//!
//! Publications take precedence over registrations: what a user publishes (`closed` while
//! registered, a note, an away status) is a deliberate statement of its presence, whereas a
//! binding only says a device can be reached. So registrations stand in only for a user who
//! publishes nothing (most plain phones), and a user whose publications expire falls back to
//! its registrations.

use bytes::Bytes;
use sip_dialog::publication::Publication;
use sip_dialog::subscription::Content;

use super::package::{Authorization, Authorizer, EventPackage, PackageKind};
use super::pidf::{Basic, Pidf, Tuple, PIDF_TYPE};

/// The presence package.
#[derive(Default)]
pub struct PresencePackage {
    authorizer: Option<Authorizer>,
}

impl PresencePackage {
    /// Who may watch whom: `authorizer(watcher, presentity)`.
    pub fn with_authorizer(authorizer: Authorizer) -> PresencePackage {
        PresencePackage {
            authorizer: Some(authorizer),
        }
    }
}

/// The composed PIDF of `resource`: the tuples of every publication in order (ids made unique
/// when two publications used the same), or one `closed` tuple when there are none.
pub fn compose_pidf(resource: &str, publications: &[Publication]) -> Pidf {
    let mut doc = Pidf::new(resource);
    for p in publications {
        let Ok(published) = Pidf::parse(&p.content.body) else {
            continue;
        };
        for mut t in published.tuples {
            if t.id.is_empty() || doc.tuples.iter().any(|o| o.id == t.id) {
                t.id = format!("t{}", doc.tuples.len());
            }
            doc.tuples.push(t);
        }
        doc.notes.extend(published.notes);
    }
    if doc.tuples.is_empty() {
        doc.tuples.push(Tuple::new("offline", Basic::Closed));
    }
    doc
}

/// The presence of `resource` derived from registrations: a tuple per registered contact
/// (`open`, with its `<contact>`), or one `closed` tuple when `contacts` is empty.
pub fn registered_pidf(resource: &str, contacts: &[String]) -> Pidf {
    let mut doc = Pidf::new(resource);
    for (i, c) in contacts.iter().enumerate() {
        let mut t = Tuple::new(format!("reg{i}"), Basic::Open);
        t.contact = Some(c.clone());
        doc.tuples.push(t);
    }
    if doc.tuples.is_empty() {
        doc.tuples.push(Tuple::new("offline", Basic::Closed));
    }
    doc
}

impl EventPackage for PresencePackage {
    fn name(&self) -> &str {
        "presence"
    }

    fn accepts(&self) -> &[&str] {
        &[PIDF_TYPE]
    }

    fn kind(&self) -> PackageKind {
        PackageKind::State
    }

    fn authorize(&self, watcher: &str, resource: &str) -> Authorization {
        match &self.authorizer {
            Some(f) => f(watcher, resource),
            None => Authorization::Accept,
        }
    }

    fn check(&self, content: &Content) -> Result<(), u16> {
        let media = content.content_type.split(';').next().unwrap_or_default();
        if !media.trim().eq_ignore_ascii_case(PIDF_TYPE) {
            return Err(415);
        }
        Pidf::parse(&content.body).map(|_| ()).map_err(|_| 400)
    }

    fn compose(&self, resource: &str, publications: &[Publication]) -> Option<Content> {
        Some(Content {
            content_type: PIDF_TYPE.to_owned(),
            body: Bytes::from(compose_pidf(resource, publications).to_xml()),
        })
    }

    /// Publications when there are any (see the module: they take precedence), else the
    /// registrations ([`registered_pidf`]).
    fn compose_registered(
        &self,
        resource: &str,
        publications: &[Publication],
        registered: &[String],
    ) -> Option<Content> {
        if !publications.is_empty() {
            return self.compose(resource, publications);
        }
        Some(Content {
            content_type: PIDF_TYPE.to_owned(),
            body: Bytes::from(registered_pidf(resource, registered).to_xml()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn publication(etag: &str, body: String) -> Publication {
        Publication {
            etag: etag.into(),
            expires_at: Instant::now(),
            content: Content {
                content_type: PIDF_TYPE.into(),
                body: Bytes::from(body),
            },
        }
    }

    fn doc(tuple: &str, basic: &str) -> String {
        format!(
            "<?xml version='1.0'?><presence xmlns='urn:ietf:params:xml:ns:pidf' \
             entity='sip:bob@example.com'><tuple id='{tuple}'><status><basic>{basic}</basic>\
             </status></tuple></presence>"
        )
    }

    #[test]
    fn offline_is_closed_and_publications_are_tuples() {
        let p = PresencePackage::default();
        let c = p.compose("sip:bob@example.com", &[]).unwrap();
        let d = Pidf::parse(&c.body).unwrap();
        assert_eq!(d.entity, "sip:bob@example.com");
        assert_eq!(d.basic(), Basic::Closed);
        assert_eq!(c.content_type, PIDF_TYPE);

        let pubs = [
            publication("e1", doc("phone", "closed")),
            publication("e2", doc("phone", "open")),
        ];
        let d = compose_pidf("sip:bob@example.com", &pubs);
        assert_eq!(d.tuples.len(), 2);
        assert_eq!(d.tuples[0].id, "phone");
        assert_ne!(d.tuples[1].id, "phone");
        assert_eq!(d.basic(), Basic::Open);
    }

    #[test]
    fn registrations_stand_in_for_publications() {
        let p = PresencePackage::default();
        let bob = "sip:bob@example.com";
        let contacts = vec![
            "sip:bob@192.0.2.1:5060".to_owned(),
            "sip:bob@192.0.2.2:5060;transport=tcp".to_owned(),
        ];
        let c = p.compose_registered(bob, &[], &contacts).unwrap();
        let d = Pidf::parse(&c.body).unwrap();
        assert_eq!(d.basic(), Basic::Open);
        assert_eq!(d.tuples.len(), 2);
        assert_eq!(d.tuples[0].contact.as_deref(), Some(contacts[0].as_str()));
        assert_eq!(d.tuples[1].contact.as_deref(), Some(contacts[1].as_str()));
        assert_ne!(d.tuples[0].id, d.tuples[1].id);

        let none = p.compose_registered(bob, &[], &[]).unwrap();
        assert_eq!(Pidf::parse(&none.body).unwrap().basic(), Basic::Closed);

        // A publication wins over the registrations: closed while registered.
        let pubs = [publication("e1", doc("phone", "closed"))];
        let c = p.compose_registered(bob, &pubs, &contacts).unwrap();
        let d = Pidf::parse(&c.body).unwrap();
        assert_eq!(d.basic(), Basic::Closed);
        assert_eq!(d.tuples.len(), 1);
        assert_eq!(d.tuples[0].id, "phone");
    }

    #[test]
    fn checks_published_bodies() {
        let p = PresencePackage::default();
        let ok = Content {
            content_type: "application/pidf+xml".into(),
            body: Bytes::from(doc("a", "open")),
        };
        assert_eq!(p.check(&ok), Ok(()));
        let bad = Content {
            body: Bytes::from_static(b"<nope/>"),
            ..ok.clone()
        };
        assert_eq!(p.check(&bad), Err(400));
        let text = Content {
            content_type: "text/plain".into(),
            ..ok
        };
        assert_eq!(p.check(&text), Err(415));
    }
}
