//! Conformance: every message of RFC 4475 and RFC 5118, the device captures and the benchmark
//! corpus (copied into `testdata/` from the shared conformance set), exact bytes.
//!
//! Two layers of checks:
//! - `expect_json_verdicts`: the generic parse-and-validate verdict of every file listed in an
//!   `EXPECT.json` (ok, kind, method, status, Call-ID, body length);
//! - one test per RFC 4475 §3 message (and the RFC 5118 / device ones) asserting the values the
//!   RFC says a parser must extract, and for the role-dependent ones what the role decides.

use std::borrow::Cow;
use std::path::PathBuf;

use sip_core::addr::ContactValue;
use sip_core::uri::{Host, Scheme};
use sip_core::{Error, HeaderName, Message, Method, StartLine};

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata")
}

fn raw(path: &str) -> Vec<u8> {
    std::fs::read(data_dir().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn parse(path: &str) -> Message {
    Message::parse(raw(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn valid(path: &str) -> Message {
    let m = parse(path);
    m.validate().unwrap_or_else(|e| panic!("{path}: {e}"));
    m
}

/// Parse then validate; the error if either fails.
fn verdict(bytes: &[u8]) -> Result<Message, Error> {
    let m = Message::parse(bytes.to_vec())?;
    m.validate()?;
    Ok(m)
}

fn rejected(path: &str) -> Error {
    match verdict(&raw(path)) {
        Ok(_) => panic!("{path} must be rejected"),
        Err(e) => e,
    }
}

#[test]
fn expect_json_verdicts() {
    let mut checked = 0;
    for folder in ["rfc4475", "rfc5118", "devices", "bench"] {
        let text = std::fs::read_to_string(data_dir().join(folder).join("EXPECT.json")).unwrap();
        let expect: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&text).unwrap();
        for (file, want) in &expect {
            let path = format!("{folder}/{file}");
            let got = verdict(&raw(&path));
            let want_ok = want["ok"].as_bool().unwrap();
            match (&got, want_ok) {
                (Ok(m), true) => {
                    if let Some(kind) = want.get("kind").and_then(|v| v.as_str()) {
                        assert_eq!(kind == "request", m.is_request(), "{path}: kind");
                    }
                    if let Some(method) = want.get("method").and_then(|v| v.as_str()) {
                        assert_eq!(m.method().map(|m| m.as_str()), Some(method), "{path}");
                    }
                    if let Some(status) = want.get("status").and_then(|v| v.as_u64()) {
                        assert_eq!(m.status().map(u64::from), Some(status), "{path}");
                    }
                    if let Some(call_id) = want.get("call_id").and_then(|v| v.as_str()) {
                        assert_eq!(m.call_id(), Some(call_id), "{path}");
                    }
                    if let Some(len) = want.get("body_len").and_then(|v| v.as_u64()) {
                        assert_eq!(m.body().len() as u64, len, "{path}");
                    }
                }
                (Err(e), false) => {
                    if let Some(status) = want.get("status").and_then(|v| v.as_u64()) {
                        assert_eq!(u64::from(e.response_status().0), status, "{path}: {e}");
                    }
                }
                (Ok(_), false) => panic!("{path}: accepted, must be rejected"),
                (Err(e), true) => panic!("{path}: rejected ({e}), must be accepted"),
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 41 + 12 + 8 + 7);
}

/// Every one of the 61 torture messages is covered by this file (EXPECT or a role test).
#[test]
fn all_torture_files_present() {
    let n4475 = std::fs::read_dir(data_dir().join("rfc4475"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "dat")
        })
        .count();
    let n5118 = std::fs::read_dir(data_dir().join("rfc5118"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "dat")
        })
        .count();
    assert_eq!((n4475, n5118), (49, 12));
}

// ---- RFC 4475 §3.1.1: valid messages -------------------------------------------------------

#[test]
fn wsinv_short_tortuous_invite() {
    let m = valid("rfc4475/wsinv.dat");
    assert_eq!(m.method(), Some(Method::Invite));
    assert_eq!(
        m.uri_str(),
        Some("sip:vivekg@chair-dnrc.example.com;unknownparam")
    );
    let to = m.to().unwrap();
    assert_eq!(to.uri_str(), "sip:vivekg@chair-dnrc.example.com");
    assert_eq!(to.tag(), Some("1918181833n"));
    let from = m.from().unwrap();
    assert_eq!(
        from.display_name_decoded().as_deref(),
        Some("J Rosenberg \\\"")
    );
    assert_eq!(from.tag(), Some("98asjd8"));
    assert_eq!(m.max_forwards().unwrap().unwrap(), 68);
    assert_eq!(m.call_id(), Some("wsinv.ndaksdj@192.0.2.1"));
    let cseq = m.cseq().unwrap();
    assert_eq!((cseq.seq, cseq.method), (9, Method::Invite));
    let vias: Vec<_> = m.vias().map(Result::unwrap).collect();
    assert_eq!(vias.len(), 3);
    assert_eq!(vias[0].transport(), "UDP");
    assert_eq!(vias[0].host_str(), "192.0.2.2");
    assert_eq!(vias[0].branch(), Some("390skdjuw"));
    assert_eq!(vias[1].transport(), "TCP");
    assert_eq!(vias[1].host_str(), "spindle.example.com");
    assert_eq!(vias[1].branch(), Some("z9hG4bK9ikj8"));
    assert_eq!(vias[2].host_str(), "192.168.255.111");
    assert_eq!(vias[2].branch(), Some("z9hG4bK30239"));
    assert_eq!(m.header(HeaderName::Subject), Some(""));
    let nf: Vec<_> = m.headers_named("NewFangledHeader").collect();
    assert_eq!(
        nf,
        [&b"newfangled value\r\n continued newfangled value"[..]]
    );
    let odd: Vec<_> = m.headers_named("UnknownHeaderWithUnusualValue").collect();
    assert_eq!(odd, [&b";;,,;;,;"[..]]);
    let route = m.routes().next().unwrap().unwrap();
    let ruri = route.sip_uri().unwrap();
    assert!(ruri.is_lr());
    assert_eq!(ruri.param("unknownwith"), Some(Some("value")));
    assert_eq!(ruri.param("unknown-no-value"), Some(None));
    let contact = m.contacts().next().unwrap().unwrap();
    let c = contact.addr().unwrap();
    assert_eq!(
        c.display_name_decoded().as_deref(),
        Some("Quoted string \"\"")
    );
    assert_eq!(c.param("newparam"), Some(Some("newvalue")));
    assert_eq!(c.param("secondparam"), Some(None));
    assert_eq!(c.q(), Some(330));
    assert_eq!(m.body().len(), 150);
    assert_eq!(
        m.content_type().unwrap().unwrap().to_string(),
        "application/sdp"
    );
}

#[test]
fn intmeth_wide_range_of_valid_characters() {
    let m = valid("rfc4475/intmeth.dat");
    let method = "!interesting-Method0123456789_*+`.%indeed'~";
    assert_eq!(m.method(), Some(Method::Extension(method)));
    assert_eq!(m.cseq().unwrap().method, Method::Extension(method));
    let uri = m.request_uri().unwrap().unwrap();
    assert_eq!(
        uri.user(),
        Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
    );
    assert_eq!(
        uri.password(),
        Some("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
    );
    assert_eq!(uri.host_str(), "example.com");
    assert_eq!(m.via().unwrap().branch(), Some("z9hG4bK-.!%66*_+`'~"));
    let to = m.to().unwrap();
    assert_eq!(
        to.display_name_decoded().as_deref(),
        Some("BEL:\u{7} NUL:\0 DEL:\u{7f}")
    );
    let from = m.from().unwrap();
    assert_eq!(from.display_name(), Some("token1~` token2'+_ token3*%!.-"));
    assert_eq!(
        from.param("fromParam''~+*_!.-%"),
        Some(Some("\"работающий\""))
    );
    assert_eq!(from.tag(), Some("_token~1'+`*%!-."));
    assert_eq!(
        m.call_id(),
        Some("intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{")
    );
    assert_eq!(m.max_forwards().unwrap().unwrap(), 255);
    let ext: Vec<_> = m.headers_named("extensionHeader-!.%*+_`'~").collect();
    assert_eq!(ext, ["\u{feff}大停電".as_bytes()]);
}

#[test]
fn esc01_valid_use_of_percent_escapes() {
    let m = valid("rfc4475/esc01.dat");
    let ruri = m.request_uri().unwrap().unwrap();
    assert_eq!(ruri.user(), Some("sips%3Auser%40example.com"));
    assert_eq!(
        ruri.user_decoded_str().as_deref(),
        Some("sips:user@example.com")
    );
    assert_eq!(ruri.host_str(), "example.net");
    let to = m.to().unwrap();
    assert_eq!(
        to.sip_uri().unwrap().user_decoded_str().as_deref(),
        Some("user")
    );
    let from = m.from().unwrap();
    assert_eq!(
        from.sip_uri().unwrap().user_decoded_str().as_deref(),
        Some("I have spaces")
    );
    // Compact Call-ID (i) and Content-Type (C).
    assert_eq!(m.call_id(), Some("esc01.239409asdfakjkn23onasd0-3234"));
    assert_eq!(m.header(HeaderName::ContentType), Some("application/sdp"));
    // The Contact is on a folded line; its escaped parameters are kept as sent.
    let c = m.contacts().next().unwrap().unwrap();
    let uri = *c.addr().unwrap().sip_uri().unwrap();
    assert_eq!(uri.user_decoded_str().as_deref(), Some("caller"));
    assert_eq!(uri.param("%6C%72"), Some(None));
    assert_eq!(uri.param("n%61me"), Some(Some("v%61lue%25%34%31")));
    assert_eq!(m.body().len(), 150);
}

#[test]
fn escnull_escaped_nulls_in_uris() {
    let m = valid("rfc4475/escnull.dat");
    let to = m.to().unwrap();
    let user = to.sip_uri().unwrap().user_decoded().unwrap();
    assert_eq!(&user[..], b"null-\0-null");
    let users: Vec<Vec<u8>> = m
        .contacts()
        .map(|c| {
            c.unwrap()
                .addr()
                .unwrap()
                .sip_uri()
                .unwrap()
                .user_decoded()
                .unwrap()
                .into_owned()
        })
        .collect();
    assert_eq!(users, [b"\0".to_vec(), b"\0\0".to_vec()]);
}

#[test]
fn esc02_escapes_in_the_wrong_places_are_not_escapes() {
    let m = valid("rfc4475/esc02.dat");
    // The method is an extension token "RE%47IST%45R", not REGISTER.
    assert_eq!(m.method(), Some(Method::Extension("RE%47IST%45R")));
    assert_eq!(
        m.from().unwrap().display_name_decoded().as_deref(),
        Some("%Z%45")
    );
    assert_eq!(m.via().unwrap().branch(), Some("z9hG4bK209%fzsnel234"));
    // "C%6Fntact" is an unknown header, not a Contact.
    assert_eq!(m.contacts().count(), 2);
    assert_eq!(m.headers_named("C%6Fntact").count(), 1);
}

#[test]
fn lwsdisp_no_lws_between_display_name_and_angle() {
    let m = valid("rfc4475/lwsdisp.dat");
    let from = m.from().unwrap();
    assert_eq!(from.display_name(), Some("caller"));
    assert_eq!(from.uri_str(), "sip:caller@example.com");
    assert_eq!(from.tag(), Some("323"));
}

#[test]
fn longreq_long_values() {
    let m = valid("rfc4475/longreq.dat");
    assert!(m.to().unwrap().display_name().unwrap().len() > 80);
    assert!(m.from().unwrap().tag().unwrap().len() > 100);
    assert!(m.call_id().unwrap().len() > 100);
    // Via written with every capitalisation and the compact form: 34 values in order.
    let vias: Vec<_> = m.vias().map(|v| v.unwrap().host_str().to_owned()).collect();
    assert_eq!(vias.len(), 34);
    assert_eq!(vias[0], "sip33.example.com");
    assert_eq!(vias[32], "sip1.example.com");
    assert_eq!(vias[33], "host.example.com");
    assert!(m.vias().last().unwrap().unwrap().branch().unwrap().len() > 200);
    assert_eq!(m.body().len(), m.content_length().unwrap().unwrap());
}

#[test]
fn dblreq_only_the_first_request_is_taken() {
    let m = valid("rfc4475/dblreq.dat");
    assert_eq!(m.method(), Some(Method::Register));
    assert_eq!(m.call_id(), Some("dblreq.0ha0isndaksdj99sdfafnl3lk233412"));
    assert_eq!(m.body(), b"");
}

#[test]
fn semiuri_semicolon_in_user_part() {
    let m = valid("rfc4475/semiuri.dat");
    let uri = m.request_uri().unwrap().unwrap();
    assert_eq!(uri.user(), Some("user;par=u%40example.net"));
    assert_eq!(uri.host_str(), "example.com");
    assert!(uri.params().is_empty());
    // Accept folded over three lines: six values.
    assert_eq!(m.values(HeaderName::Accept).count(), 6);
}

#[test]
fn transports_all_kinds_of_via() {
    let m = valid("rfc4475/transports.dat");
    let t: Vec<_> = m
        .vias()
        .map(|v| v.unwrap().transport().to_owned())
        .collect();
    assert_eq!(t, ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]);
    // Two spaces after the colon of Call-ID are LWS, not part of the value.
    assert_eq!(m.call_id(), Some("transports.kijh4akdnaqjkwendsasfdj"));
}

#[test]
fn mpart01_multipart_body() {
    let m = valid("rfc4475/mpart01.dat");
    let ct = m.content_type().unwrap().unwrap();
    assert!(ct.essence_eq("multipart/mixed"));
    assert_eq!(ct.params().get("boundary"), Some(Some("7a9cbec02ceef655")));
    assert_eq!(m.body().len(), m.content_length().unwrap().unwrap());
    assert!(m.body().windows(16).any(|w| w == b"7a9cbec02ceef655"));
}

#[test]
fn unreason_utf8_reason_phrase() {
    let m = valid("rfc4475/unreason.dat");
    let StartLine::Response { status, reason } = m.start_line() else {
        panic!()
    };
    assert_eq!(status, 200);
    assert!(reason.starts_with("= 2**3 * 5**2 но"));
    assert!(reason.ends_with("простое"));
}

#[test]
fn noreason_empty_reason_phrase() {
    let m = valid("rfc4475/noreason.dat");
    assert_eq!(m.status(), Some(100));
    assert_eq!(m.reason(), Some(""));
}

// ---- RFC 4475 §3.1.2: invalid messages -----------------------------------------------------

#[test]
fn invalid_messages_are_refused_with_the_right_status() {
    let cases: &[(&str, u16)] = &[
        ("badinv01", 400),   // ;;,;,, in Via, ;;;; in Contact
        ("clerr", 400),      // Content-Length larger than the body
        ("ncl", 400),        // negative Content-Length
        ("scalar02", 400),   // CSeq, Max-Forwards, Expires overflow
        ("quotbal", 400),    // unterminated quoted string
        ("ltgtruri", 400),   // <> around the Request-URI
        ("lwsruri", 400),    // LWS inside the Request-URI
        ("lwsstart", 400),   // several SP in the Request-Line
        ("regbadct", 400),   // addr-spec Contact with ?headers
        ("badaspec", 400),   // SP inside <> of To
        ("baddn", 400),      // unquoted display names with commas
        ("mismatch01", 400), // CSeq method differs from the method
        ("mismatch02", 400), // unknown method, CSeq says INVITE
        ("escruri", 400),    // headers in the Request-URI
        ("badvers", 505),    // SIP/7.0
        ("insuf", 400),      // To, From, Call-ID missing
        ("multi01", 400),    // several single-valued headers
        ("mcl01", 400),      // two Content-Length
    ];
    for (file, status) in cases {
        let e = rejected(&format!("rfc4475/{file}.dat"));
        assert_eq!(e.response_status().0, *status, "{file}: {e}");
    }
    assert!(matches!(
        rejected("rfc4475/clerr.dat"),
        Error::ContentLengthMismatch { declared: 9999, .. }
    ));
    assert!(matches!(
        rejected("rfc4475/ncl.dat"),
        Error::InvalidContentLength { .. }
    ));
    assert_eq!(
        rejected("rfc4475/mismatch01.dat"),
        Error::CSeqMethodMismatch
    );
    assert_eq!(
        rejected("rfc4475/insuf.dat"),
        Error::MissingHeader { name: "To" }
    );
    assert!(matches!(
        rejected("rfc4475/mcl01.dat"),
        Error::DuplicateHeader {
            name: "Content-Length"
        }
    ));
    assert!(matches!(
        rejected("rfc4475/badvers.dat"),
        Error::UnsupportedVersion { .. }
    ));
}

#[test]
fn invalid_responses_are_refused() {
    // A response is never answered; the parser refuses it so it is dropped.
    assert!(matches!(
        rejected("rfc4475/scalarlg.dat"),
        Error::InvalidHeader { name: "CSeq", .. }
    ));
    assert!(matches!(
        rejected("rfc4475/bigcode.dat"),
        Error::InvalidStatusCode { .. }
    ));
}

#[test]
fn scalar02_every_overflow_is_caught() {
    let m = parse("rfc4475/scalar02.dat");
    assert!(m.cseq().is_err());
    assert!(m.max_forwards().unwrap().is_err());
}

#[test]
fn may_go_either_way_trws_and_baddate_are_accepted() {
    // trws: trailing SP after SIP/2.0 is tolerated; baddate: Date is not interpreted here.
    let m = valid("rfc4475/trws.dat");
    assert_eq!(m.uri_str(), Some("sip:remote-target@example.com"));
    let m = valid("rfc4475/baddate.dat");
    assert_eq!(
        m.header(HeaderName::Date),
        Some("Fri, 01 Jan 2010 16:00:00 EST")
    );
}

// ---- RFC 4475 §3.2: transport and application semantics -----------------------------------

#[test]
fn inv2543_rfc2543_peer_is_well_formed() {
    let m = valid("rfc4475/inv2543.dat");
    let via = m.via().unwrap();
    assert_eq!(via.branch(), None);
    assert!(!via.has_magic_cookie());
    assert!(m.max_forwards().is_none());
    assert!(m.content_length().is_none());
    // No Content-Length on a datagram: the body is the rest of the datagram.
    assert!(m.body().starts_with(b"v=0"));
    assert!(m.record_routes().next().unwrap().is_ok());
}

#[test]
fn cparam_contact_param_forms() {
    // addr-spec form: ;unknownparam is a contact parameter.
    let m = valid("rfc4475/cparam01.dat");
    let c = m.contacts().next().unwrap().unwrap();
    let a = c.addr().unwrap();
    assert_eq!(a.uri_str(), "sip:+19725552222@gw1.example.net");
    assert_eq!(a.param("unknownparam"), Some(None));
    // name-addr form: it is a URI parameter.
    let m = valid("rfc4475/cparam02.dat");
    let c = m.contacts().next().unwrap().unwrap();
    let a = c.addr().unwrap();
    assert_eq!(a.param("unknownparam"), None);
    assert_eq!(a.sip_uri().unwrap().param("unknownparam"), Some(None));
}

#[test]
fn regescrt_escaped_headers_in_contact_uri() {
    let m = valid("rfc4475/regescrt.dat");
    let c = m.contacts().next().unwrap().unwrap();
    let uri = *c.addr().unwrap().sip_uri().unwrap();
    assert_eq!(uri.headers(), Some("Route=%3Csip:sip.example.com%3E"));
}

#[test]
fn bcast_response_with_broadcast_via() {
    let m = valid("rfc4475/bcast.dat");
    let vias: Vec<_> = m.vias().map(Result::unwrap).collect();
    assert_eq!(
        vias[1].sent_by_host(),
        &Host::Ipv4("255.255.255.255".parse().unwrap())
    );
}

#[test]
fn zeromf_max_forwards_zero_is_well_formed() {
    let m = valid("rfc4475/zeromf.dat");
    assert_eq!(m.max_forwards().unwrap().unwrap(), 0);
    // A proxy answers 483 Too Many Hops; a UAS processes it (the role decides).
}

#[test]
fn invut_and_sdp01_are_well_formed_role_decides() {
    let m = valid("rfc4475/invut.dat");
    let ct = m.content_type().unwrap().unwrap();
    assert!(ct.essence_eq("application/unknownformat"));
    // A UAS that does not understand the body answers 415.
    let m = valid("rfc4475/sdp01.dat");
    assert_eq!(m.header(HeaderName::Accept), Some("text/nobodyKnowsThis"));
    // A UAS that can only produce SDP answers 406.
}

#[test]
fn unknown_request_uri_schemes_are_for_the_role() {
    // A UAS answers 416; a proxy may forward novelsc.
    for file in ["rfc4475/unkscm.dat", "rfc4475/novelsc.dat"] {
        let m = valid(file);
        let e = m.request_uri().unwrap().unwrap_err();
        assert!(matches!(e, Error::UnsupportedUriScheme { .. }), "{file}");
        assert_eq!(e.response_status().0, 416);
    }
}

#[test]
fn unksm2_unknown_scheme_in_to() {
    // To/From/Contact may carry any absoluteURI; the role decides what to do with it.
    let m = valid("rfc4475/unksm2.dat");
    let to = m.to().unwrap();
    assert_eq!(to.uri().scheme_str(), "isbn");
    assert!(to.sip_uri().is_none());
    let c = m.contacts().next().unwrap().unwrap();
    assert_eq!(c.addr().unwrap().uri().scheme_str(), "name");
}

#[test]
fn bext01_unknown_extensions_are_listed_for_420() {
    let m = valid("rfc4475/bext01.dat");
    let require: Vec<_> = m.values(HeaderName::Require).collect();
    assert_eq!(
        require,
        ["nothingSupportsThis", "nothingSupportsThisEither"]
    );
    let proxy_require: Vec<_> = m.values(HeaderName::ProxyRequire).collect();
    assert_eq!(
        proxy_require,
        ["noProxiesSupportThis", "norDoAnyProxiesSupportThis"]
    );
    // A UAS answers 420 with these in Unsupported.
    let resp = m
        .response(420)
        .header("Unsupported", require.join(", "))
        .build()
        .unwrap();
    assert_eq!(resp.values(HeaderName::Unsupported).count(), 2);
}

#[test]
fn regaut01_unknown_authorization_scheme() {
    let m = valid("rfc4475/regaut01.dat");
    let creds = m.credentials(HeaderName::Authorization).unwrap().unwrap();
    assert!(!creds.is_digest());
    assert_eq!(creds.scheme, "NoOneKnowsThisScheme");
    // A registrar answers 401 with a Digest challenge.
}

#[test]
fn badbranch_cookie_only_branch() {
    let m = valid("rfc4475/badbranch.dat");
    let via = m.via().unwrap();
    // The branch is just the cookie: well-formed, but not usable to match a transaction; an
    // element treats it like an RFC 2543 branch.
    assert_eq!(via.branch(), Some("z9hG4bK"));
}

// ---- RFC 5118 ------------------------------------------------------------------------------

#[test]
fn rfc5118_ipv6() {
    let m = valid("rfc5118/ipv6-good.dat");
    let uri = m.request_uri().unwrap().unwrap();
    assert!(matches!(uri.host(), Host::Ipv6(_)));
    let m = valid("rfc5118/port-unambiguous.dat");
    let uri = m.request_uri().unwrap().unwrap();
    assert!(matches!(uri.host(), Host::Ipv6(_)));
    assert_eq!(uri.port(), Some(5070));
    // [2001:db8::10:5070] is one IPv6 address (ending in :5070), with no port.
    let m = valid("rfc5118/port-ambiguous.dat");
    let uri = m.request_uri().unwrap().unwrap();
    assert_eq!(
        uri.host(),
        &Host::Ipv6("2001:db8::10:5070".parse().unwrap())
    );
    assert_eq!(uri.port(), None);
    let m = valid("rfc5118/ipv4-mapped-ipv6.dat");
    let mapped: std::net::Ipv6Addr = "::ffff:192.0.2.10".parse().unwrap();
    assert_eq!(m.via().unwrap().sent_by_host(), &Host::Ipv6(mapped));
    assert_eq!(m.via().unwrap().sent_by_port(), Some(19823));
    let c = m.contacts().next().unwrap().unwrap();
    assert!(matches!(
        c.addr().unwrap().sip_uri().unwrap().host(),
        Host::Ipv6(_)
    ));
    valid("rfc5118/ipv6-correct-abnf-2-colons.dat");
    valid("rfc5118/ipv6-in-sdp.dat");
    valid("rfc5118/mult-ip-in-sdp.dat");
    let m = valid("rfc5118/mult-ip-in-header.dat");
    assert!(m.vias().count() >= 2);
    for file in [
        "rfc5118/via-received-param-with-delim.dat",
        "rfc5118/via-received-param-no-delim.dat",
    ] {
        let m = valid(file);
        let via = m.via().unwrap();
        assert!(via.received_addr().unwrap().is_ipv6(), "{file}");
    }
    for file in ["rfc5118/ipv6-bad.dat", "rfc5118/ipv6-bug-abnf-3-colons.dat"] {
        let e = rejected(file);
        assert_eq!(e.response_status().0, 400, "{file}: {e}");
    }
}

// ---- Devices and the benchmark corpus -------------------------------------------------------

#[test]
fn gb28181_registers() {
    for n in 1..=4 {
        let m = valid(&format!("devices/gb28181_register_{n}.sip"));
        assert_eq!(m.method(), Some(Method::Register));
        let to = m.to().unwrap();
        let user = to.sip_uri().unwrap().user().unwrap();
        assert_eq!(user.len(), 20, "20-digit device id");
        assert!(user.bytes().all(|c| c.is_ascii_digit()));
    }
}

#[test]
fn gb28181_register_auth_without_qop() {
    let m = valid("devices/gb28181_register_auth.sip");
    let c = m.credentials(HeaderName::Authorization).unwrap().unwrap();
    assert!(c.is_digest());
    assert!(c.qop.is_none());
    assert!(c.response.is_some());
}

#[test]
fn gb28181_keepalive() {
    let m = valid("devices/gb28181_keepalive.sip");
    assert_eq!(m.method(), Some(Method::Message));
    assert_eq!(m.body().len(), 169);
    let ct = m.content_type().unwrap().unwrap();
    assert!(ct.essence_eq("application/manscdp+xml"));
    assert!(m.body().windows(9).any(|w| w == b"Keepalive"));
}

#[test]
fn softphone_register_outbound() {
    let m = valid("devices/softphone_register_outbound.sip");
    let to = m.to().unwrap();
    assert!(!to.is_name_addr());
    assert_eq!(to.uri_str(), "sip:carol@example.com");
    assert_eq!(m.values(HeaderName::Accept).count(), 3);
    let c = m.contacts().next().unwrap().unwrap();
    assert_eq!(
        c.instance(),
        Some(Cow::Borrowed(
            "<urn:uuid:4a1a4e0c-56a7-4f3e-9b51-2f8c93f4d1e2>"
        ))
    );
    assert_eq!(c.reg_id(), Some(1));
    let via = m.via().unwrap();
    assert_eq!(via.rport(), Some(None));
    assert!(via.params().contains("alias"));
}

#[test]
fn pbx_401_high_cseq() {
    let m = valid("devices/pbx_401_high_cseq.sip");
    assert_eq!(m.status(), Some(401));
    assert_eq!(m.cseq().unwrap().seq, 2_147_483_649);
    let ch = m.challenge(HeaderName::WwwAuthenticate).unwrap().unwrap();
    assert!(ch.realm.is_some());
}

#[test]
fn bench_corpus_typed_values() {
    let m = valid("bench/invite_small.sip");
    assert_eq!(m.body().len(), 127);
    assert_eq!(
        m.via().unwrap().branch(),
        Some("z9hG4bK.VYWrxJJyeEJfngAjKXELr8aPYuX8tR22")
    );
    let m = valid("bench/ringing_180_compact.sip");
    assert_eq!(m.status(), Some(180));
    assert!(m.to().unwrap().tag().is_some());
    let m = valid("bench/invite_sdp.sip");
    assert_eq!(m.vias().count(), 3);
    assert_eq!(m.record_routes().count(), 2);
    let m = valid("bench/large_4k.sip");
    assert_eq!(m.vias().count(), 16);
    assert_eq!(m.record_routes().count(), 16);
    let m = valid("bench/register_auth.sip");
    let c = m.credentials(HeaderName::Authorization).unwrap().unwrap();
    assert_eq!(c.username.as_deref(), Some("alice"));
    let m = valid("bench/register_gb28181.sip");
    assert_eq!(
        m.expires().unwrap().unwrap(),
        3600.max(m.expires().unwrap().unwrap())
    );
}

#[test]
fn every_corpus_message_round_trips() {
    for folder in ["rfc4475", "rfc5118", "devices", "bench"] {
        for entry in std::fs::read_dir(data_dir().join(folder)).unwrap() {
            let path = entry.unwrap().path();
            if !matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("dat" | "sip")
            ) {
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            let Ok(m) = Message::parse(bytes) else {
                continue;
            };
            let again = Message::parse(m.to_bytes()).unwrap();
            assert_eq!(again, m, "{}", path.display());
        }
    }
}

#[test]
fn uri_scheme_accessor() {
    let m = valid("bench/invite_small.sip");
    assert_eq!(m.request_uri().unwrap().unwrap().scheme(), Scheme::Sip);
    assert!(matches!(
        m.contacts().next().unwrap().unwrap(),
        ContactValue::Addr(_)
    ));
}
