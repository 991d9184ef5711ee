//! Per-field limits on what one REGISTER may store (on top of the store's count and byte
//! caps, [`StoreLimits`](super::StoreLimits)): a binding keeps its contact, Call-ID, instance
//! and Path as sent, so each is bounded before it reaches the store, and the request is refused
//! with a status and a reason that say which field was too large.

use super::location::RegisterChange;

/// Largest values one REGISTER may store, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldLimits {
    /// One contact URI (default 512).
    pub max_contact: usize,
    /// The Call-ID (default 256).
    pub max_call_id: usize,
    /// One RFC 5626 `+sip.instance` (default 256).
    pub max_instance: usize,
    /// All RFC 3327 Path values together (default 2 048).
    pub max_path: usize,
    /// Contacts in one request (default 16).
    pub max_contacts: usize,
}

impl Default for FieldLimits {
    fn default() -> Self {
        FieldLimits {
            max_contact: 512,
            max_call_id: 256,
            max_instance: 256,
            max_path: 2048,
            max_contacts: 16,
        }
    }
}

/// Why a REGISTER's fields were refused: the status to answer and its reason phrase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldTooLarge {
    /// 400 for a single value too long, 413 for too many contacts in one request.
    pub status: u16,
    /// The reason phrase naming the field.
    pub reason: &'static str,
}

impl FieldLimits {
    /// Checks what `change` would store.
    pub fn check(&self, change: &RegisterChange) -> Result<(), FieldTooLarge> {
        let refuse = |status, reason| Err(FieldTooLarge { status, reason });
        if change.contacts.len() > self.max_contacts {
            return refuse(413, "Too Many Contacts");
        }
        if change.call_id.len() > self.max_call_id {
            return refuse(400, "Call-ID Too Long");
        }
        if change.path.iter().map(String::len).sum::<usize>() > self.max_path {
            return refuse(400, "Path Too Long");
        }
        for c in &change.contacts {
            if c.contact.len() > self.max_contact {
                return refuse(400, "Contact Too Long");
            }
            if c.instance
                .as_ref()
                .is_some_and(|i| i.len() > self.max_instance)
            {
                return refuse(400, "Instance Too Long");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registrar::location::ContactUpdate;
    use sip_core::{Flow, Transport};

    fn change(contact: &str) -> RegisterChange {
        RegisterChange {
            call_id: "c".into(),
            cseq: 1,
            remove_all: false,
            contacts: smallvec::smallvec![ContactUpdate {
                contact: contact.into(),
                expires: 60,
                q: 1000,
                instance: None,
                reg_id: None,
            }],
            flow: Flow {
                transport: Transport::Udp,
                local: "127.0.0.1:5060".parse().unwrap(),
                remote: "127.0.0.1:5070".parse().unwrap(),
            },
            path: vec![],
        }
    }

    #[test]
    fn each_field_is_bounded_with_its_own_reason() {
        let l = FieldLimits::default();
        assert_eq!(l.check(&change("sip:a@h")), Ok(()));
        let long = format!("sip:a@h;x={}", "y".repeat(600));
        let cases: Vec<(RegisterChange, u16, &str)> = vec![
            (change(&long), 400, "Contact Too Long"),
            (
                RegisterChange {
                    call_id: "c".repeat(257).into(),
                    ..change("sip:a@h")
                },
                400,
                "Call-ID Too Long",
            ),
            (
                RegisterChange {
                    path: vec!["<sip:p@h;lr>".repeat(200)],
                    ..change("sip:a@h")
                },
                400,
                "Path Too Long",
            ),
            (
                {
                    let mut c = change("sip:a@h");
                    c.contacts[0].instance = Some("u".repeat(300));
                    c
                },
                400,
                "Instance Too Long",
            ),
            (
                {
                    let mut c = change("sip:a@h");
                    c.contacts = smallvec::smallvec![c.contacts[0].clone(); 17];
                    c
                },
                413,
                "Too Many Contacts",
            ),
        ];
        for (c, status, reason) in cases {
            assert_eq!(l.check(&c), Err(FieldTooLarge { status, reason }));
        }
    }
}
