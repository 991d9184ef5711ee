//! Client behaviour: realm binding, host binding, strongest algorithm, qop choice, nc, stale.

use sip_auth::{Account, ClientError, DefaultRandom, DigestClient, DigestRequest};
use sip_core::auth::{Algorithm, Challenge};

const REQ: DigestRequest<'static> = DigestRequest {
    method: "INVITE",
    uri: "sip:bob@biloxi.com",
    body: b"v=0\r\n",
};

fn client() -> DigestClient {
    let mut c = DigestClient::with_random(DefaultRandom::from_seed([5; 32]));
    c.add_account(Account::new("atlanta.com", "alice", "secret"));
    c.add_account(Account::new("biloxi.com", "alice", "other").host("proxy.biloxi.com"));
    c
}

fn ch(s: &str) -> Challenge<'_> {
    Challenge::parse(s).unwrap()
}

#[test]
fn refuses_unconfigured_realm() {
    let mut c = client();
    let evil = [ch(r#"Digest realm="evil.com", nonce="abc", qop="auth""#)];
    assert_eq!(
        c.respond(&evil, "evil.com", &REQ),
        Err(ClientError::UnknownRealm {
            realm: "evil.com".into()
        })
    );
    // Realms compare exactly.
    let upper = [ch(r#"Digest realm="ATLANTA.COM", nonce="abc""#)];
    assert!(matches!(
        c.respond(&upper, "atlanta.com", &REQ),
        Err(ClientError::UnknownRealm { .. })
    ));
    // Host binding.
    let bound = [ch(r#"Digest realm="biloxi.com", nonce="abc""#)];
    assert_eq!(
        c.respond(&bound, "attacker.net", &REQ),
        Err(ClientError::HostNotAllowed {
            realm: "biloxi.com".into(),
            host: "attacker.net".into()
        })
    );
    assert!(c.respond(&bound, "PROXY.biloxi.com", &REQ).is_ok());
    // Other schemes, nothing, or malformed.
    assert_eq!(c.respond(&[], "x", &REQ), Err(ClientError::NoChallenge));
    assert_eq!(
        c.respond(&[ch("Basic realm=\"atlanta.com\"")], "x", &REQ),
        Err(ClientError::NotDigest)
    );
    assert_eq!(
        c.respond(&[ch("Digest realm=\"atlanta.com\"")], "x", &REQ),
        Err(ClientError::Malformed)
    );
    assert_eq!(
        c.respond(
            &[ch(
                r#"Digest realm="atlanta.com", nonce="n", algorithm=AKAv1-MD5"#
            )],
            "x",
            &REQ
        ),
        Err(ClientError::UnsupportedAlgorithm)
    );
    assert_eq!(
        c.respond(
            &[ch(
                r#"Digest realm="atlanta.com", nonce="n", qop="auth-conf""#
            )],
            "x",
            &REQ
        ),
        Err(ClientError::UnsupportedQop)
    );
    assert!(matches!(
        c.authorize("evil.com", &REQ),
        Err(ClientError::NoSession { .. })
    ));
}

#[test]
fn answers_the_configured_realm_among_others_with_the_strongest_algorithm() {
    let mut c = client();
    let challenges = [
        ch(r#"Digest realm="evil.com", nonce="e", algorithm=SHA-512-256, qop="auth""#),
        ch(r#"Digest realm="atlanta.com", nonce="n1", algorithm=MD5, qop="auth", opaque="op""#),
        ch(
            r#"Digest realm="atlanta.com", nonce="n1", algorithm=SHA-256, qop="auth,auth-int", opaque="op""#,
        ),
        ch(r#"Digest realm="atlanta.com", nonce="n1", algorithm=UNKNOWN-1, qop="auth""#),
    ];
    let cr = c.respond(&challenges, "atlanta.com", &REQ).unwrap();
    assert_eq!(cr.realm.as_deref(), Some("atlanta.com"));
    assert_eq!(cr.algorithm(), Ok(Algorithm::Sha256));
    assert_eq!(cr.qop.as_deref(), Some("auth"));
    assert_eq!(cr.opaque.as_deref(), Some("op"));
    assert_eq!(cr.uri.as_deref(), Some("sip:bob@biloxi.com"));
    assert_eq!(cr.nc.map(|n| n.0), Some(1));
    assert_eq!(cr.response.as_deref().map(str::len), Some(64));
    let cnonce = cr.cnonce.clone().unwrap();
    assert_eq!(cnonce.len(), 32);
    // nc increments per nonce, cnonce is fresh.
    let cr2 = c.authorize("atlanta.com", &REQ).unwrap();
    assert_eq!(cr2.nc.map(|n| n.0), Some(2));
    assert_ne!(cr2.cnonce.as_deref(), Some(&*cnonce));
    // auth-int when it is the only qop offered; algorithm absent → MD5, not echoed.
    let only_int = [ch(
        r#"Digest realm="atlanta.com", nonce="n2", qop="auth-int""#,
    )];
    let cr3 = c.respond(&only_int, "atlanta.com", &REQ).unwrap();
    assert_eq!(cr3.qop.as_deref(), Some("auth-int"));
    assert_eq!(cr3.algorithm, None);
    assert_eq!(cr3.response.as_deref().map(str::len), Some(32));
    assert_eq!(cr3.nc.map(|n| n.0), Some(1), "new nonce restarts nc");
    c.prefer_auth_int(true);
    let both = [ch(
        r#"Digest realm="atlanta.com", nonce="n3", qop="auth,auth-int""#,
    )];
    assert_eq!(
        c.respond(&both, "atlanta.com", &REQ)
            .unwrap()
            .qop
            .as_deref(),
        Some("auth-int")
    );
}

#[test]
fn stale_retries_and_a_repeated_nonce_means_refused() {
    let mut c = client();
    let first = [ch(r#"Digest realm="atlanta.com", nonce="n1", qop="auth""#)];
    c.respond(&first, "atlanta.com", &REQ).unwrap();
    // Same nonce again, not stale: the password was wrong; do not loop.
    assert_eq!(
        c.respond(&first, "atlanta.com", &REQ),
        Err(ClientError::Refused {
            realm: "atlanta.com".into()
        })
    );
    c.respond(&first, "atlanta.com", &REQ).unwrap();
    let stale = [ch(
        r#"Digest realm="atlanta.com", nonce="n2", qop="auth", stale=true"#,
    )];
    let cr = c.respond(&stale, "atlanta.com", &REQ).unwrap();
    assert_eq!(cr.nonce.as_deref(), Some("n2"));
    assert_eq!(cr.nc.map(|n| n.0), Some(1));
    // stale=true with the same nonce is answered again too.
    assert!(c.respond(&stale, "atlanta.com", &REQ).is_ok());
}

#[test]
fn debug_output_hides_the_password() {
    let c = client();
    let text = format!("{c:?}");
    assert!(text.contains("alice") && !text.contains("secret"));
}
