//! REST request validation: query parsing and canonicalisation, signature verification, and the
//! trigger / batch body rules. Input: `METHOD\npath\nquery\nbody`.
#![no_main]

use herald::api::event;
use herald::auth::rest;
use herald::config::Limits;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(4, |b| *b == b'\n');
    let (Some(method), Some(path), Some(query), body) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next().unwrap_or(b""),
    ) else {
        return;
    };
    let (Ok(method), Ok(path), Ok(query)) = (
        std::str::from_utf8(method),
        std::str::from_utf8(path),
        std::str::from_utf8(query),
    ) else {
        return;
    };
    let pairs = rest::parse_query(query);
    // Values are not re-escaped (as the SDKs sign them), so only the key set is checked.
    let canonical = rest::canonical_query(&pairs);
    let signed_keys = pairs
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("auth_signature"))
        .count();
    assert!(signed_keys == 0 || !canonical.is_empty());
    let req = rest::SignedRequest {
        method,
        path,
        query: &pairs,
        body,
    };
    let _ = rest::verify(&req, "key", "secret", 1_700_000_000);
    // A request signed by the SDK rules for this path and body always verifies.
    let signed = rest::signed_query(method, path, &[], body, "key", "secret", 1_700_000_000);
    let signed_pairs = rest::parse_query(&signed);
    let ok = rest::SignedRequest {
        method,
        path,
        query: &signed_pairs,
        body,
    };
    if !path.contains('%') && !method.is_empty() {
        assert_eq!(
            rest::verify(&ok, "key", "secret", 1_700_000_000),
            Ok(()),
            "{method} {path}"
        );
    }
    let limits = Limits::default();
    if let Ok(b) = serde_json::from_slice::<event::EventBody>(body) {
        if let Ok(e) = event::validate(b, &limits, false) {
            assert!(!e.channels.is_empty() && e.channels.len() <= 100);
            assert!(e.data.len() <= limits.max_event_data_bytes);
        }
    }
    if let Ok(b) = serde_json::from_slice::<event::BatchBody>(body) {
        if let Ok(events) = event::validate_batch(b, &limits) {
            assert!(!events.is_empty() && events.len() <= 10);
        }
    }
});
