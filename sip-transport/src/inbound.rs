//! What happens to a received message before it goes up (RFC 3261 §18.2.1, §18.3, RFC 3581):
//! parse, validate, stamp the top Via; or answer a malformed request here; or drop.

use bytes::Bytes;
use sip_core::{Error, Flow, HeaderName, Limits, Message, Method, Target, Transport};
use tracing::debug;

use crate::config::TransportConfig;
use crate::response::stamped_destination;
use crate::stats::Counters;
use crate::via::{apply_stamp, stamp_via, stamped_value};

/// The outcome of processing one received message.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Inbound {
    /// Deliver it upward; for a request received over UDP, where its responses go
    /// (computed while its top Via was at hand: see [`stamped_destination`]).
    Deliver(Message, Option<Target>),
    /// Send these bytes back to the source (an error response), do not deliver.
    Answer(Bytes),
    /// Drop it (already counted and logged).
    Drop,
}

/// A datagram: parse (datagram framing), then as [`process_message`].
pub(crate) fn process_datagram(
    data: Bytes,
    flow: &Flow,
    cfg: &TransportConfig,
    stats: &Counters,
) -> Inbound {
    if data
        .iter()
        .all(|b| matches!(b, b'\r' | b'\n' | b' ' | b'\t' | 0))
    {
        // A keep-alive some devices send over UDP (CRLF, or padding): nothing to answer.
        Counters::bump(&stats.pings_received);
        return Inbound::Drop;
    }
    match Message::parse_with(data.clone(), &cfg.limits, sip_core::Framing::Datagram) {
        Ok(msg) => {
            stats.message_in(flow.transport);
            process_message(msg, flow, cfg, stats)
        }
        Err(e) => {
            Counters::bump(&stats.parse_failures);
            if matches!(e, Error::MessageTooLarge { .. }) {
                Counters::bump(&stats.oversized);
            }
            debug!(%flow, size = data.len(), error = %e, "unparsable datagram");
            answer_unparsed(&data, &e, stats)
        }
    }
}

/// A parsed message: validate, stamp a request's top Via, or answer it with the status its
/// error calls for.
pub(crate) fn process_message(
    mut msg: Message,
    flow: &Flow,
    cfg: &TransportConfig,
    stats: &Counters,
) -> Inbound {
    // The top Via is parsed once: by the validation, which hands it to the stamp.
    let checked = if cfg.validate {
        msg.validate_top_via()
    } else {
        msg.via().map(Some)
    };
    let stamp = match checked {
        Err(e) => {
            Counters::bump(&stats.parse_failures);
            debug!(%flow, error = %e, request = msg.is_request(), "invalid message");
            return answer(&msg, &e, stats);
        }
        Ok(top) if msg.is_request() => Some(top.map(|via| {
            let new = stamped_value(&via, flow.remote);
            // Over UDP, where the response goes (the stream transports answer on the flow).
            let reply = (flow.transport == Transport::Udp)
                .then(|| stamped_destination(&via, flow.remote, new.is_some()))
                .flatten();
            (new, reply)
        })),
        Ok(_) => None,
    };
    let mut reply = None;
    if let Some(stamp) = stamp {
        let stamped = match stamp {
            Some((new, to)) => {
                reply = to;
                apply_stamp(&mut msg, new)
            }
            // Via lines without a value: the stamp reports what is wrong.
            None => stamp_via(&mut msg, flow.remote),
        };
        if let Err(e) = stamped {
            Counters::bump(&stats.parse_failures);
            debug!(%flow, error = %e, "top Via cannot be stamped");
            return answer(&msg, &e, stats);
        }
    }
    Inbound::Deliver(msg, reply)
}

/// The error response to a parsed request, or `Drop` for a response or an ACK (never
/// answered) and for a request missing what a response must copy.
fn answer(msg: &Message, e: &Error, stats: &Counters) -> Inbound {
    if !msg.is_request() || msg.method() == Some(Method::Ack) {
        return Inbound::Drop;
    }
    let answerable = [
        HeaderName::Via,
        HeaderName::From,
        HeaderName::To,
        HeaderName::CallId,
        HeaderName::CSeq,
    ]
    .iter()
    .all(|h| msg.has(*h))
        && msg.via().is_ok();
    if !answerable {
        return Inbound::Drop;
    }
    let (status, reason) = e.response_status();
    match msg.response(status).reason(reason).build() {
        Ok(resp) => {
            Counters::bump(&stats.malformed_answered);
            Inbound::Answer(resp.to_bytes())
        }
        Err(_) => Inbound::Drop,
    }
}

/// A request that did not parse (bad start line, bad header line, too large): when the
/// headers a response copies (Via, From, To, Call-ID, CSeq) can be found as well-formed lines,
/// they are put into a stand-in request so that sip-core's response builder can answer it.
fn answer_unparsed(data: &[u8], e: &Error, stats: &Counters) -> Inbound {
    let text = match data.iter().position(|b| !matches!(b, b'\r' | b'\n')) {
        Some(i) => data.get(i..).unwrap_or_default(),
        None => return Inbound::Drop,
    };
    // Responses and ACKs are never answered (RFC 3261 §17.1.1.3, §18.1.2).
    if text.starts_with(b"SIP/") || text.starts_with(b"ACK ") {
        return Inbound::Drop;
    }
    let mut lines = text.split(|b| *b == b'\n');
    let _start = lines.next();
    let mut stand_in = Vec::with_capacity(512);
    stand_in.extend_from_slice(b"OPTIONS sip:invalid SIP/2.0\r\n");
    for line in lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let name = HeaderName::from_bytes(line.get(..colon).unwrap_or_default().trim_ascii());
        if matches!(
            name,
            HeaderName::Via
                | HeaderName::From
                | HeaderName::To
                | HeaderName::CallId
                | HeaderName::CSeq
        ) && std::str::from_utf8(line).is_ok()
            && !line.contains(&b'\r')
            && !line.first().is_some_and(|b| matches!(b, b' ' | b'\t'))
        {
            stand_in.extend_from_slice(line);
            stand_in.extend_from_slice(b"\r\n");
        }
    }
    stand_in.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    let limits = Limits::default();
    match Message::parse_with(stand_in, &limits, sip_core::Framing::Datagram) {
        Ok(m) => answer(&m, e, stats),
        Err(_) => Inbound::Drop,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sip_core::Transport;

    fn flow() -> Flow {
        Flow {
            transport: Transport::Udp,
            local: "127.0.0.1:5060".parse().unwrap(),
            remote: "192.0.2.9:4444".parse().unwrap(),
        }
    }

    fn run(data: &[u8], cfg: &TransportConfig) -> (Inbound, Counters) {
        let stats = Counters::default();
        let r = process_datagram(Bytes::copy_from_slice(data), &flow(), cfg, &stats);
        (r, stats)
    }

    const HEAD: &str = "Via: SIP/2.0/UDP 10.0.0.1;rport;branch=z9hG4bK1\r\nTo: <sip:b@x>\r\nFrom: <sip:a@x>;tag=1\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\n";

    fn status_of(r: Inbound) -> u16 {
        match r {
            Inbound::Answer(b) => Message::parse(b).unwrap().status().unwrap(),
            Inbound::Deliver(..) => panic!("delivered"),
            Inbound::Drop => panic!("dropped"),
        }
    }

    #[test]
    fn good_request_is_stamped_and_delivered() {
        let raw = format!("OPTIONS sip:b@x SIP/2.0\r\n{HEAD}Content-Length: 0\r\n\r\n");
        match run(raw.as_bytes(), &TransportConfig::default()).0 {
            Inbound::Deliver(m, _) => {
                let v = m.via().unwrap();
                assert_eq!(v.received(), Some("192.0.2.9"));
                assert_eq!(v.rport(), Some(Some(4444)));
            }
            _ => panic!("not delivered"),
        }
    }

    /// The destination computed while stamping is the one read from the stamped Via, for
    /// every kind of top Via: stamped or not, with and without rport, received (right or
    /// wrong), maddr, a domain name, another port, IPv6.
    #[test]
    fn reply_target_is_the_stamped_vias_destination() {
        let vias = [
            "SIP/2.0/UDP 10.0.0.1;rport;branch=z9hG4bK1",
            "SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK1",
            "SIP/2.0/UDP 192.0.2.9:4444;branch=z9hG4bK1",
            "SIP/2.0/UDP 192.0.2.9:5062;rport;branch=z9hG4bK1",
            "SIP/2.0/UDP 192.0.2.9;received=198.51.100.1;branch=z9hG4bK1",
            "SIP/2.0/UDP 10.0.0.1;received=192.0.2.9;rport=7000;branch=z9hG4bK1",
            "SIP/2.0/UDP 10.0.0.1;rport=7000;branch=z9hG4bK1",
            "SIP/2.0/UDP host.example:5080;branch=z9hG4bK1",
            "SIP/2.0/UDP host.example;rport;branch=z9hG4bK1",
            "SIP/2.0/UDP 10.0.0.1;maddr=239.1.1.1;ttl=1;branch=z9hG4bK1",
            "SIP/2.0/UDP [2001:db8::1]:5070;rport;branch=z9hG4bK1",
            "SIP/2.0/TCP 10.0.0.1:5070;branch=z9hG4bK1",
            "SIP/2.0/UDP 10.0.0.1 ; branch = z9hG4bK1 ; rport",
        ];
        for remote in [
            "192.0.2.9:4444",
            "[2001:db8::1]:5070",
            "[::ffff:192.0.2.9]:4444",
        ] {
            let flow = Flow {
                remote: remote.parse().unwrap(),
                ..flow()
            };
            for via in vias {
                let raw = format!(
                    "OPTIONS sip:b@x SIP/2.0\r\nVia: {via}\r\nTo: <sip:b@x>\r\nFrom: <sip:a@x>;tag=1\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\n\r\n"
                );
                let stats = Counters::default();
                let r = process_datagram(
                    Bytes::copy_from_slice(raw.as_bytes()),
                    &flow,
                    &TransportConfig::default(),
                    &stats,
                );
                let Inbound::Deliver(m, reply) = r else {
                    panic!("{via}: not delivered");
                };
                let read = crate::response::destination(&m).ok();
                assert_eq!(reply, read, "{via} from {remote}");
                assert!(reply.is_some() || via.contains("TCP") || via.contains("host."));
            }
        }
    }

    #[test]
    fn invalid_request_gets_400_with_reason() {
        let raw = "OPTIONS sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTo: <sip:b@x>\r\nFrom: <sip:a@x>;tag=1\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\n\r\n";
        let (r, stats) = run(raw.as_bytes(), &TransportConfig::default());
        match r {
            Inbound::Answer(b) => {
                let m = Message::parse(b).unwrap();
                assert_eq!(m.status(), Some(400));
                assert_eq!(m.reason(), Some("CSeq Method Mismatch"));
                assert_eq!(m.call_id(), Some("c1"));
            }
            _ => panic!(),
        }
        assert_eq!(stats.snapshot().malformed_answered, 1);
    }

    #[test]
    fn bad_version_gets_505_and_bad_header_line_400() {
        let raw = format!("OPTIONS sip:b@x SIP/7.0\r\n{HEAD}\r\n");
        assert_eq!(
            status_of(run(raw.as_bytes(), &TransportConfig::default()).0),
            505
        );
        let raw = format!("OPTIONS sip:b@x SIP/2.0\r\n{HEAD}this is no header\r\n\r\n");
        assert_eq!(
            status_of(run(raw.as_bytes(), &TransportConfig::default()).0),
            400
        );
    }

    #[test]
    fn oversized_request_gets_513() {
        let cfg = TransportConfig {
            limits: Limits {
                max_message_size: 300,
                ..Limits::default()
            },
            ..TransportConfig::default()
        };
        let raw = format!(
            "OPTIONS sip:b@x SIP/2.0\r\n{HEAD}X-Pad: {}\r\n\r\n",
            "a".repeat(400)
        );
        let (r, stats) = run(raw.as_bytes(), &cfg);
        assert_eq!(status_of(r), 513);
        assert_eq!(stats.snapshot().oversized, 1);
    }

    #[test]
    fn unanswerable_inputs_are_dropped_and_counted() {
        let cfg = TransportConfig::default();
        for raw in [
            "OPTIONS sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n".to_owned(),
            format!("ACK sip:b@x SIP/2.0\r\n{HEAD}bad line\r\n\r\n"),
            format!("SIP/2.0 200 OK\r\n{HEAD}bad line\r\n\r\n"),
            "garbage".to_owned(),
        ] {
            let (r, stats) = run(raw.as_bytes(), &cfg);
            assert!(matches!(r, Inbound::Drop), "{raw}");
            assert_eq!(stats.snapshot().parse_failures, 1);
        }
        let (r, stats) = run(b"\r\n\r\n", &cfg);
        assert!(matches!(r, Inbound::Drop));
        assert_eq!(stats.snapshot().parse_failures, 0);
    }
}
