//! The branch parameter of the Via a proxy adds (RFC 3261 §16.6 step 8, §16.11).
//!
//! `z9hG4bKsp.<loop>.<unique>`: `<loop>` is a hash of everything that affects the processing
//! of the request as received (To tag, From tag, Call-ID, Request-URI, CSeq number,
//! Proxy-Require and Route), so that a request that comes back with the same value has looped
//! (§16.3 step 4) while one whose routing changed is spiralling. `<unique>` is a hash of the
//! received top Via's branch and the fork index, so the same request forwarded again (a
//! retransmission through a stateless proxy) gets the same branch: the branch is
//! stateless-safe (§16.11). A CANCEL hashes like its INVITE (same Request-URI, tags, Call-ID,
//! CSeq number, Route and top Via, §9.1) and so gets the INVITE's branch.

use std::hash::{BuildHasher, Hash, Hasher};

use sip_core::{HeaderName, Message};

/// The magic cookie and our marker.
pub const PREFIX: &str = "z9hG4bKsp.";

fn hasher() -> impl Hasher {
    // A fixed seed: the same input gives the same value in every process, which a stateless
    // proxy (and a restarted one, or the next node of a cluster) needs. foldhash's quality
    // variant: SipHash did the same at three times the cost.
    foldhash::quality::FixedState::with_seed(0x7369_702d_7374_6163).build_hasher()
}

/// The loop-detection part: a hash of the fields that affect routing (§16.6 step 8).
pub fn loop_hash(req: &Message) -> u64 {
    let mut h = hasher();
    req.header(HeaderName::To)
        .and_then(sip_core::addr::tag_param)
        .hash(&mut h);
    req.header(HeaderName::From)
        .and_then(sip_core::addr::tag_param)
        .hash(&mut h);
    req.call_id().hash(&mut h);
    req.uri_str().hash(&mut h);
    req.cseq().ok().map(|c| c.seq).hash(&mut h);
    for v in req.values(HeaderName::ProxyRequire) {
        v.hash(&mut h);
    }
    for v in req.values(HeaderName::Route) {
        v.hash(&mut h);
    }
    h.finish()
}

/// The unique part: the received top Via's branch (or the whole Via) and the fork index.
fn unique_hash(req: &Message, index: usize) -> u64 {
    let mut h = hasher();
    match req.values(HeaderName::Via).next() {
        // A Via's parameters follow its sent-by, which holds no `;`.
        Some(v) => match v
            .split_once(';')
            .and_then(|(_, p)| sip_core::addr::header_param(p, "branch"))
        {
            Some(b) => b.hash(&mut h),
            None => v.hash(&mut h),
        },
        None => req.header(HeaderName::Via).hash(&mut h),
    }
    index.hash(&mut h);
    h.finish()
}

/// The branch for the `index`-th forward of `received` (§16.6 step 8).
pub fn branch(received: &Message, index: usize) -> String {
    let mut b = String::with_capacity(PREFIX.len() + 33);
    b.push_str(PREFIX);
    push_hex(&mut b, loop_hash(received));
    b.push('.');
    push_hex(&mut b, unique_hash(received, index));
    b
}

/// Appends `v` as 16 lower-case hex digits (what `{:016x}` gives, without the formatter).
fn push_hex(out: &mut String, v: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for i in (0..16).rev() {
        out.push(char::from(HEX[((v >> (4 * i)) & 15) as usize]));
    }
}

/// The loop part of a branch we made, if it is one of ours.
pub fn loop_part(branch: &str) -> Option<u64> {
    let rest = branch.strip_prefix(PREFIX)?;
    let (l, _) = rest.split_once('.')?;
    u64::from_str_radix(l, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(ruri: &str, via_branch: &str, cseq: u32) -> Message {
        Message::parse(
            format!(
                "INVITE {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP a;branch={via_branch}\r\n\
                 From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>\r\nCall-ID: c\r\nCSeq: {cseq} INVITE\r\n\
                 Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            )
            .into_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn deterministic_and_distinct() {
        let a = req("sip:b@y", "z9hG4bK1", 1);
        assert_eq!(branch(&a, 0), branch(&a, 0));
        assert_ne!(branch(&a, 0), branch(&a, 1));
        // Another hop's Via: same loop part, other unique part.
        let b = req("sip:b@y", "z9hG4bK2", 1);
        assert_eq!(loop_part(&branch(&a, 0)), loop_part(&branch(&b, 0)));
        assert_ne!(branch(&a, 0), branch(&b, 0));
        // Routing changed (Request-URI, CSeq): another loop part.
        let c = req("sip:c@y", "z9hG4bK1", 1);
        assert_ne!(loop_part(&branch(&a, 0)), loop_part(&branch(&c, 0)));
        let d = req("sip:b@y", "z9hG4bK1", 2);
        assert_ne!(loop_part(&branch(&a, 0)), loop_part(&branch(&d, 0)));
        assert!(branch(&a, 0).starts_with("z9hG4bK"));
        assert_eq!(loop_part("z9hG4bKother"), None);
        // The tags are the parser's.
        for v in [
            "<sip:b@y>;tag=1",
            "\"B; <tag=x>\" <sip:b@y;tag=u>;x=2;tag=7",
            "sip:b@y;tag=3;x",
            "<sip:b@y>",
            "\"a\\\"<\" <sip:b@y>;tag=4",
        ] {
            let parsed = sip_core::addr::NameAddr::parse(v).unwrap();
            assert_eq!(sip_core::addr::tag_param(v), parsed.tag(), "{v}");
        }
        let mut h = String::new();
        push_hex(&mut h, 0x0123_4567_89ab_cdef);
        push_hex(&mut h, 7);
        assert_eq!(h, format!("{:016x}{:016x}", 0x0123_4567_89ab_cdef_u64, 7));
    }
}
