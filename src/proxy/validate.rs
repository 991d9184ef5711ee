//! RFC 3261 §16.3: request validation, in the RFC's order. A request that fails a step is
//! answered by the proxy (a [`Refusal`]) and not forwarded.

use sip_core::{HeaderName, Message, Method, Transport};

use super::branch;
use super::identity::Identity;

/// A response the proxy sends instead of forwarding: a status and what it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The status code.
    pub status: u16,
    /// A reason phrase other than the default.
    pub reason: Option<&'static str>,
    /// Extra header fields (Unsupported, Allow, Proxy-Authenticate…).
    pub headers: Vec<(&'static str, String)>,
}

impl Refusal {
    /// A refusal with only a status.
    pub fn status(status: u16) -> Refusal {
        Refusal {
            status,
            reason: None,
            headers: Vec::new(),
        }
    }

    /// The response to `req`; `None` for an ACK (never answered) or an unbuildable one.
    pub fn response(&self, req: &Message) -> Option<Message> {
        if req.method() == Some(Method::Ack) {
            return None;
        }
        let mut b = req.response(self.status);
        if let Some(r) = self.reason {
            b = b.reason(r);
        }
        for (n, v) in &self.headers {
            b = b.header(n, v);
        }
        b.build().ok()
    }
}

/// Limits and options of validation.
#[derive(Debug, Clone)]
pub struct ValidationConfig {
    /// Largest request forwarded, in bytes (default 65 535; larger: 513).
    pub max_message_size: usize,
    /// Most Via values accepted (default 32; more: 483, as a hop count gone wild).
    pub max_vias: usize,
    /// Proxy-Require option tags we support (default none).
    pub supported: Vec<String>,
    /// Whether to detect loops (§16.3 step 4; default true).
    pub detect_loops: bool,
    /// Whether to run the full syntax check ([`Message::validate`]) in step 1 (default true).
    /// A driver whose transport already validated every message (the Endpoint's default,
    /// `TransportConfig::validate`) turns it off, vouching that every request it hands the
    /// proxy passed [`Message::validate`]: the proxy then only looks for the Via, CSeq, From,
    /// To and Call-ID it relies on instead of parsing them again.
    pub check_syntax: bool,
}

impl Default for ValidationConfig {
    fn default() -> Self {
        ValidationConfig {
            max_message_size: 65_535,
            max_vias: 32,
            supported: Vec::new(),
            detect_loops: true,
            check_syntax: true,
        }
    }
}

/// Methods we can answer OPTIONS for.
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, MESSAGE, SUBSCRIBE, NOTIFY, INFO, UPDATE, PRACK, REFER, REGISTER";

/// What validation concluded for a request that may be forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Valid {
    /// Forward it.
    Forward,
    /// An OPTIONS with Max-Forwards 0: the proxy answers it itself (§16.3 step 3, §11).
    AnswerOptions,
}

/// Runs the §16.3 steps on a received request.
pub fn validate(req: &Message, id: &Identity, cfg: &ValidationConfig) -> Result<Valid, Refusal> {
    checked(req, id, cfg).map(|c| c.valid)
}

/// What [`checked`] found besides the verdict: the fields its checks parsed that the
/// proxy's next steps need, so that they are not parsed again.
pub(crate) struct Checked {
    /// The verdict of [`validate`].
    pub(crate) valid: Valid,
    /// The To header field has a tag (an in-dialog request).
    pub(crate) to_tagged: bool,
}

/// [`validate`], with what its checks parsed.
pub(crate) fn checked(
    req: &Message,
    id: &Identity,
    cfg: &ValidationConfig,
) -> Result<Checked, Refusal> {
    let to_tagged = step1_syntax_and_size(req, cfg)?;
    step2_uri_scheme(req)?;
    let mf_zero = step3_max_forwards(req)?;
    if cfg.detect_loops {
        step4_loop(req, id)?;
    }
    step5_proxy_require(req, cfg)?;
    let valid = if mf_zero {
        Valid::AnswerOptions
    } else {
        Valid::Forward
    };
    Ok(Checked { valid, to_tagged })
}

/// Step 1: reasonable syntax, and our size limits. Returns whether the To has a tag.
fn step1_syntax_and_size(req: &Message, cfg: &ValidationConfig) -> Result<bool, Refusal> {
    if req.source().len() > cfg.max_message_size {
        return Err(Refusal::status(513));
    }
    let to = req.to();
    // Validated here, or by the transport (which is what turning the check off vouches for):
    // then the headers the proxy relies on are known to parse, and are only looked for.
    let needed = if cfg.check_syntax {
        req.validate().is_ok() && req.via().is_ok() && req.cseq().is_ok() && req.from().is_ok()
    } else {
        req.has(HeaderName::Via) && req.has(HeaderName::CSeq) && req.has(HeaderName::From)
    } && to.is_ok()
        && req.call_id().is_some();
    if !needed {
        return Err(Refusal {
            reason: Some("Bad Request"),
            ..Refusal::status(400)
        });
    }
    if req.values(HeaderName::Via).nth(cfg.max_vias).is_some() {
        return Err(Refusal {
            reason: Some("Too Many Hops"),
            ..Refusal::status(483)
        });
    }
    Ok(to.is_ok_and(|t| t.tag().is_some()))
}

/// Step 2: a Request-URI scheme we can route (sip, sips; others: 416).
fn step2_uri_scheme(req: &Message) -> Result<(), Refusal> {
    match req.request_uri() {
        Some(Ok(_)) => Ok(()),
        _ => Err(Refusal::status(416)),
    }
}

/// Step 3: Max-Forwards. Returns whether it is 0 on an OPTIONS (answered by us).
fn step3_max_forwards(req: &Message) -> Result<bool, Refusal> {
    match req.max_forwards() {
        None => Ok(false),
        Some(Err(_)) => Err(Refusal {
            reason: Some("Bad Max-Forwards"),
            ..Refusal::status(400)
        }),
        Some(Ok(0)) if req.method() == Some(Method::Options) => Ok(true),
        Some(Ok(0)) => Err(Refusal::status(483)),
        Some(Ok(_)) => Ok(false),
    }
}

/// Step 4: a Via of ours whose branch carries this request's loop hash: the request looped.
/// One of ours with another hash is a legitimate spiral.
fn step4_loop(req: &Message, id: &Identity) -> Result<(), Refusal> {
    // A branch of ours starts with our prefix: without it in any Via line (the rule: a
    // request fresh from a UA) no Via needs parsing.
    static PREFIX: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(branch::PREFIX.as_bytes()));
    let prefix = &*PREFIX;
    if !req
        .header_lines(HeaderName::Via)
        .any(|l| prefix.find(l).is_some())
    {
        return Ok(());
    }
    let mut ours = req.vias().filter_map(Result::ok).filter(|v| {
        let t = Transport::from_name(v.transport()).unwrap_or(Transport::Udp);
        v.branch().and_then(branch::loop_part).is_some()
            && id.is_our_sent_by(v.host_str(), v.sent_by_port(), t)
    });
    let Some(first) = ours.next() else {
        return Ok(());
    };
    let hash = branch::loop_hash(req);
    let looped = std::iter::once(first)
        .chain(ours)
        .any(|v| v.branch().and_then(branch::loop_part) == Some(hash));
    if looped {
        Err(Refusal::status(482))
    } else {
        Ok(())
    }
}

/// Step 5: every Proxy-Require option tag must be supported (else 420 with Unsupported).
fn step5_proxy_require(req: &Message, cfg: &ValidationConfig) -> Result<(), Refusal> {
    let unsupported: Vec<&str> = req
        .values(HeaderName::ProxyRequire)
        .filter(|t| !cfg.supported.iter().any(|s| s.eq_ignore_ascii_case(t)))
        .collect();
    if unsupported.is_empty() {
        return Ok(());
    }
    Err(Refusal {
        headers: vec![("Unsupported", unsupported.join(", "))],
        ..Refusal::status(420)
    })
}

/// The 200 to an OPTIONS the proxy answers itself (§11.2).
pub fn options_answer(req: &Message) -> Option<Message> {
    req.response(200)
        .header("Allow", ALLOW)
        .header("Accept", "application/sdp")
        .build()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::identity::Interface;

    fn id() -> Identity {
        Identity::new(
            vec![Interface::new(
                Transport::Udp,
                "192.0.2.1:5060".parse().unwrap(),
            )],
            vec!["example.com".into()],
        )
    }

    fn req(method: &str, extra: &str) -> Message {
        Message::parse(
            format!(
                "{method} sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKa\r\n\
                 {extra}From: <sip:alice@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\n\
                 Call-ID: c1\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
            )
            .into_bytes(),
        )
        .unwrap()
    }

    fn check(m: &Message) -> Result<Valid, Refusal> {
        validate(m, &id(), &ValidationConfig::default())
    }

    #[test]
    fn max_forwards() {
        assert_eq!(
            check(&req("INVITE", "Max-Forwards: 70\r\n")),
            Ok(Valid::Forward)
        );
        assert_eq!(check(&req("INVITE", "")), Ok(Valid::Forward));
        assert_eq!(
            check(&req("INVITE", "Max-Forwards: 0\r\n"))
                .unwrap_err()
                .status,
            483
        );
        assert_eq!(
            check(&req("OPTIONS", "Max-Forwards: 0\r\n")),
            Ok(Valid::AnswerOptions)
        );
        let ok = options_answer(&req("OPTIONS", "Max-Forwards: 0\r\n")).unwrap();
        assert_eq!(ok.status(), Some(200));
        assert!(ok.header(HeaderName::Allow).unwrap().contains("INVITE"));
    }

    #[test]
    fn proxy_require_420_with_unsupported() {
        let r = check(&req(
            "INVITE",
            "Proxy-Require: foo, bar\r\nMax-Forwards: 5\r\n",
        ))
        .unwrap_err();
        assert_eq!(r.status, 420);
        let resp = r.response(&req("INVITE", "")).unwrap();
        assert_eq!(resp.header(HeaderName::Unsupported), Some("foo, bar"));
        let cfg = ValidationConfig {
            supported: vec!["foo".into(), "bar".into()],
            ..ValidationConfig::default()
        };
        assert!(validate(&req("INVITE", "Proxy-Require: foo, bar\r\n"), &id(), &cfg).is_ok());
    }

    #[test]
    fn loop_detected_spiral_allowed() {
        let original = req("INVITE", "Max-Forwards: 70\r\n");
        let ours = branch::branch(&original, 0);
        // The request comes back through a downstream element unchanged: a loop.
        let mut back = original.clone();
        back.push_via(&format!("SIP/2.0/UDP 192.0.2.1:5060;branch={ours}"))
            .unwrap();
        back.push_via("SIP/2.0/UDP 192.0.2.50;branch=z9hG4bKdown")
            .unwrap();
        assert_eq!(check(&back).unwrap_err().status, 482);
        // The same with another Request-URI (retargeted downstream): a spiral.
        let mut spiral = back.clone();
        spiral.set_request_uri("sip:carol@example.com").unwrap();
        assert_eq!(check(&spiral), Ok(Valid::Forward));
        // A Via with our branch format but another host is not ours.
        let mut other = original.clone();
        other
            .push_via(&format!("SIP/2.0/UDP 192.0.2.77;branch={ours}"))
            .unwrap();
        assert_eq!(check(&other), Ok(Valid::Forward));
    }

    #[test]
    fn sanity_limits() {
        let mut many = req("INVITE", "");
        for i in 0..40 {
            many.push_via(&format!("SIP/2.0/UDP 10.0.0.{i};branch=z9hG4bK{i}"))
                .unwrap();
        }
        let many = Message::parse(many.to_bytes()).unwrap();
        assert_eq!(check(&many).unwrap_err().status, 483);
        let cfg = ValidationConfig {
            max_message_size: 100,
            ..ValidationConfig::default()
        };
        assert_eq!(
            validate(&req("INVITE", ""), &id(), &cfg)
                .unwrap_err()
                .status,
            513
        );
        let bad = Message::parse(&b"INVITE sip:b@example.com SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"[..]).unwrap();
        assert_eq!(check(&bad).unwrap_err().status, 400);
    }
}
