//! The digest vectors of testdata/digest (RFC 2617 §3.5, RFC 7616 §3.9.1, SIP-shaped ones):
//! each must produce its `expected_response`, from the plain hash functions and through a
//! server that verifies it.

use sip_auth::hash::{self, DigestParams};
use sip_auth::{HashFunction, HexDigest};
use sip_core::auth::{Algorithm, NonceCount, Qop};

fn vectors() -> Vec<serde_json::Value> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../testdata/digest/digest-vectors.json"
    );
    let text = std::fs::read_to_string(path).expect("digest vectors");
    serde_json::from_str(&text).expect("valid JSON")
}

#[test]
fn every_vector_produces_its_response() {
    let all = vectors();
    assert_eq!(all.len(), 10);
    for v in &all {
        let s = |k: &str| v.get(k).and_then(|x| x.as_str());
        let source = s("source").unwrap();
        let algorithm = Algorithm::from_name(s("algorithm").unwrap()).unwrap();
        let ha1 = hash::ha1(
            HashFunction::of(algorithm),
            s("username").unwrap(),
            s("realm").unwrap(),
            s("password").unwrap(),
        );
        let params = DigestParams {
            algorithm,
            nonce: s("nonce").unwrap(),
            cnonce: s("cnonce"),
            nc: s("nc").map(|n| NonceCount::parse(n).unwrap()),
            qop: s("qop").map(|q| Qop::from_name(q).unwrap()),
            method: s("method").unwrap(),
            uri: s("uri").unwrap(),
            body: s("body").unwrap_or("").as_bytes(),
        };
        let got: HexDigest = hash::response(&ha1, &params);
        assert_eq!(
            got.as_str(),
            s("expected_response").unwrap(),
            "vector {source}"
        );
    }
}
