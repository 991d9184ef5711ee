//! Typed accessors on [`Message`]: each parses its header on demand from the message's bytes.
//!
//! Nothing is cached: a typed view borrows the message and costs one pass over one header value,
//! so reading only the headers a layer needs is as cheap as it can be.

use crate::addr::{ContactValue, NameAddr};
use crate::error::{Error, Result};
use crate::headers::{self, CSeq, MediaType};
use crate::message::Message;
use crate::name::HeaderName;
use crate::uri::Uri;
use crate::via::Via;

fn required(m: &Message, name: HeaderName) -> Result<&str> {
    let canonical = name.canonical().unwrap_or("(other)");
    match m.header_bytes(name) {
        None => Err(Error::MissingHeader { name: canonical }),
        Some(v) => crate::text::to_str(v).map_err(|e| Error::InvalidHeader {
            name: canonical,
            offset: e.valid_up_to(),
            reason: "not UTF-8",
        }),
    }
}

impl Message {
    /// The Request-URI parsed as a `sip:`, `sips:` or `tel:` URI; `None` for a response.
    /// Another scheme gives [`Error::UnsupportedUriScheme`] (a UAS answers 416).
    pub fn request_uri(&self) -> Option<Result<Uri<'_>>> {
        self.uri_str().map(Uri::parse)
    }

    /// The CSeq (RFC 3261 §20.16).
    #[inline]
    pub fn cseq(&self) -> Result<CSeq<'_>> {
        CSeq::parse(required(self, HeaderName::CSeq)?)
    }

    /// The topmost Via value (RFC 3261 §20.42), the one a transaction is matched on.
    #[inline]
    pub fn via(&self) -> Result<Via<'_>> {
        match self.values(HeaderName::Via).next() {
            Some(v) => Via::parse(v),
            None => Err(Error::MissingHeader { name: "Via" }),
        }
    }

    /// Every Via value, top first.
    pub fn vias(&self) -> impl Iterator<Item = Result<Via<'_>>> + '_ {
        self.values(HeaderName::Via).map(Via::parse)
    }

    /// The From header (RFC 3261 §20.20).
    #[inline]
    pub fn from(&self) -> Result<NameAddr<'_>> {
        NameAddr::parse(required(self, HeaderName::From)?)
    }

    /// The To header (RFC 3261 §20.39).
    #[inline]
    pub fn to(&self) -> Result<NameAddr<'_>> {
        NameAddr::parse(required(self, HeaderName::To)?)
    }

    /// Every Contact value (RFC 3261 §20.10), `*` included.
    pub fn contacts(&self) -> impl Iterator<Item = Result<ContactValue<'_>>> + '_ {
        self.values(HeaderName::Contact).map(ContactValue::parse)
    }

    /// Every Route value, top first.
    pub fn routes(&self) -> impl Iterator<Item = Result<NameAddr<'_>>> + '_ {
        self.values(HeaderName::Route).map(NameAddr::parse)
    }

    /// Every Record-Route value, top first.
    pub fn record_routes(&self) -> impl Iterator<Item = Result<NameAddr<'_>>> + '_ {
        self.values(HeaderName::RecordRoute).map(NameAddr::parse)
    }

    /// Every Path value (RFC 3327), top first.
    pub fn paths(&self) -> impl Iterator<Item = Result<NameAddr<'_>>> + '_ {
        self.values(HeaderName::Path).map(NameAddr::parse)
    }

    /// The Refer-To target of a REFER (RFC 3515 §2.1), if present. Its URI may carry headers
    /// such as `Replaces` (RFC 3891), which require the angle-bracket form.
    pub fn refer_to(&self) -> Option<Result<NameAddr<'_>>> {
        self.header(HeaderName::ReferTo).map(NameAddr::parse)
    }

    /// The Referred-By header (RFC 3892), if present.
    pub fn referred_by(&self) -> Option<Result<NameAddr<'_>>> {
        self.header(HeaderName::ReferredBy).map(NameAddr::parse)
    }

    /// Every P-Asserted-Identity value (RFC 3325 §9.1: at most one `sip:`/`sips:` and one `tel:`
    /// identity, which a trusting element checks).
    pub fn asserted_identities(&self) -> impl Iterator<Item = Result<NameAddr<'_>>> + '_ {
        self.values(HeaderName::PAssertedIdentity)
            .map(NameAddr::parse)
    }

    /// Every Reply-To value (RFC 3261 §20.31).
    pub fn reply_to(&self) -> Option<Result<NameAddr<'_>>> {
        self.header(HeaderName::ReplyTo).map(NameAddr::parse)
    }

    /// Max-Forwards, if present (RFC 3261 §20.22).
    pub fn max_forwards(&self) -> Option<Result<u8>> {
        self.header(HeaderName::MaxForwards)
            .map(headers::parse_max_forwards)
    }

    /// Content-Length, if present (RFC 3261 §20.14).
    pub fn content_length(&self) -> Option<Result<usize>> {
        self.header(HeaderName::ContentLength)
            .map(headers::parse_content_length)
    }

    /// Content-Type, if present (RFC 3261 §20.15).
    pub fn content_type(&self) -> Option<Result<MediaType<'_>>> {
        self.header(HeaderName::ContentType).map(MediaType::parse)
    }

    /// Expires, if present (RFC 3261 §20.19).
    pub fn expires(&self) -> Option<Result<u32>> {
        self.header(HeaderName::Expires).map(headers::parse_expires)
    }

    /// Min-Expires, if present (RFC 3261 §20.23).
    pub fn min_expires(&self) -> Option<Result<u32>> {
        self.header(HeaderName::MinExpires)
            .map(headers::parse_expires)
    }

    /// Whether a list header (Supported, Require, Allow…) holds `token` (case-insensitive).
    pub fn has_token(&self, name: HeaderName, token: &str) -> bool {
        self.values(name).any(|v| v.eq_ignore_ascii_case(token))
    }

    /// The first WWW-Authenticate / Proxy-Authenticate challenge of `name`.
    pub fn challenge(&self, name: HeaderName) -> Option<Result<crate::auth::Challenge<'_>>> {
        self.header(name).map(crate::auth::Challenge::parse)
    }

    /// Every WWW-Authenticate / Proxy-Authenticate challenge of `name`, one per header line, in
    /// order (RFC 3261 §22.3: a proxy that forks may return several, one per realm; RFC 7616 §3.7:
    /// one per algorithm). A client picks among them (sip-auth's `DigestClient::respond`).
    pub fn challenges(
        &self,
        name: HeaderName,
    ) -> impl Iterator<Item = Result<crate::auth::Challenge<'_>>> + '_ {
        self.header_lines(name)
            .map(crate::auth::Challenge::parse_bytes)
    }

    /// The first Authorization / Proxy-Authorization credentials of `name`.
    pub fn credentials(&self, name: HeaderName) -> Option<Result<crate::auth::Credentials<'_>>> {
        self.header(name).map(crate::auth::Credentials::parse)
    }
}

#[cfg(test)]
mod tests {
    use crate::Message;

    #[test]
    fn challenges_reads_every_line() {
        let m = Message::parse(
            &b"SIP/2.0 407 Proxy Authentication Required\r\n\
Via: SIP/2.0/UDP a;branch=z9hG4bK1\r\nFrom: <sip:a@a>;tag=1\r\nTo: <sip:b@b>;tag=2\r\n\
Call-ID: c\r\nCSeq: 1 INVITE\r\n\
Proxy-Authenticate: Digest realm=\"one\", nonce=\"n1\"\r\n\
Proxy-Authenticate: Digest realm=\"two\", nonce=\"n2\", algorithm=SHA-256\r\n\
Content-Length: 0\r\n\r\n"[..],
        )
        .unwrap();
        let realms: Vec<String> = m
            .challenges(crate::HeaderName::ProxyAuthenticate)
            .map(|c| c.unwrap().realm.unwrap().into_owned())
            .collect();
        assert_eq!(realms, ["one", "two"]);
        assert_eq!(m.challenges(crate::HeaderName::WwwAuthenticate).count(), 0);
    }

    #[test]
    fn refer_and_asserted_identity_views() {
        let m = Message::parse(
            &b"REFER sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8\r\n\
To: <sip:bob@biloxi.example.com>;tag=a6c85cf\r\nFrom: <sip:alice@atlanta.example.com>;tag=1928\r\n\
Call-ID: a84b4c76e66710\r\nCSeq: 314160 REFER\r\nMax-Forwards: 70\r\n\
r: <sip:carol@chicago.example.com?Replaces=12345%40192.168.118.3%3Bto-tag%3D12345%3Bfrom-tag%3D5FFE-3994>\r\n\
b: \"Alice\" <sip:alice@atlanta.example.com>\r\n\
P-Asserted-Identity: \"Cullen Jennings\" <sip:fluffy@cisco.example.com>, <tel:+14085264000>\r\n\
Reply-To: Bob <sip:bob@biloxi.example.com>\r\nContent-Length: 0\r\n\r\n"[..],
        )
        .unwrap();
        m.validate().unwrap();
        let target = m.refer_to().unwrap().unwrap();
        let uri = target.sip_uri().unwrap();
        assert_eq!(uri.host_str(), "chicago.example.com");
        assert_eq!(
            uri.header_iter().collect::<Vec<_>>(),
            [(
                "Replaces",
                "12345%40192.168.118.3%3Bto-tag%3D12345%3Bfrom-tag%3D5FFE-3994"
            )]
        );
        assert_eq!(
            m.referred_by().unwrap().unwrap().display_name(),
            Some("Alice")
        );
        let ids: Vec<_> = m.asserted_identities().map(Result::unwrap).collect();
        assert_eq!(ids.len(), 2);
        assert_eq!(ids[0].display_name(), Some("Cullen Jennings"));
        assert_eq!(ids[0].uri_str(), "sip:fluffy@cisco.example.com");
        assert_eq!(ids[1].uri_str(), "tel:+14085264000");
        assert_eq!(
            m.reply_to().unwrap().unwrap().uri_str(),
            "sip:bob@biloxi.example.com"
        );
        let plain = Message::parse(&b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"[..]).unwrap();
        assert!(plain.refer_to().is_none());
        assert_eq!(plain.asserted_identities().count(), 0);
    }
}
