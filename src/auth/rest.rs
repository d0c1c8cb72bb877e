//! REST request signatures (PROTOCOL.md §5.2): query parsing, canonical query, verification.

use md5::{Digest, Md5};
use percent_encoding::percent_decode_str;

/// MD5 of the empty body, which pusher-http-python sends on every GET.
pub const EMPTY_BODY_MD5: &str = "d41d8cd98f00b204e9800998ecf8427e";
/// How far `auth_timestamp` may be from the server clock, in seconds.
pub const TIMESTAMP_WINDOW_SECS: u64 = 600;

/// Why a REST request's authentication failed (all answered with 401).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestAuthError {
    /// A required auth parameter is absent.
    Missing(&'static str),
    /// An auth parameter appears more than once.
    Duplicate(&'static str),
    /// `auth_key` is not this app's key.
    UnknownKey,
    /// `auth_version` is not `1.0`.
    Version,
    /// `auth_timestamp` is not a number or not within the window.
    Timestamp {
        /// What the client sent.
        given: String,
        /// Server time.
        now: u64,
    },
    /// Non-empty body without `body_md5`.
    BodyMd5Missing,
    /// `body_md5` does not match the body.
    BodyMd5Mismatch,
    /// The signature does not match.
    Signature {
        /// The string the server signed.
        string_to_sign: String,
        /// What the client sent.
        got: String,
    },
}

impl std::fmt::Display for RestAuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RestAuthError::Missing(p) => write!(f, "Missing required parameter: {p}"),
            RestAuthError::Duplicate(p) => write!(f, "Parameter given more than once: {p}"),
            RestAuthError::UnknownKey => write!(f, "Unknown auth_key"),
            RestAuthError::Version => write!(f, "Version not supported"),
            RestAuthError::Timestamp { given, now } => write!(
                f,
                "Timestamp expired: Given timestamp ({given}) not within {TIMESTAMP_WINDOW_SECS}s of server time ({now})"
            ),
            RestAuthError::BodyMd5Missing => write!(f, "body_md5 is required for a request with a body"),
            RestAuthError::BodyMd5Mismatch => write!(f, "body_md5 does not match the request body"),
            RestAuthError::Signature { string_to_sign, got } => write!(
                f,
                "Invalid signature: you should have sent HmacSHA256Hex({string_to_sign:?}, your_secret_key), but you sent \"{got}\""
            ),
        }
    }
}

impl RestAuthError {
    /// A short, secret-free label for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            RestAuthError::Missing(_) => "missing parameter",
            RestAuthError::Duplicate(_) => "duplicate parameter",
            RestAuthError::UnknownKey => "unknown auth_key",
            RestAuthError::Version => "bad auth_version",
            RestAuthError::Timestamp { .. } => "stale timestamp",
            RestAuthError::BodyMd5Missing => "missing body_md5",
            RestAuthError::BodyMd5Mismatch => "body_md5 mismatch",
            RestAuthError::Signature { .. } => "bad signature",
        }
    }
}

/// Splits a raw query string into percent-decoded `(key, value)` pairs, in order.
/// `+` is kept literally (PROTOCOL.md §5.2); invalid UTF-8 after decoding is replaced.
pub fn parse_query(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// The canonical query: lowercase keys, `auth_signature` dropped, stable sort by key,
/// `key=value` joined with `&`, nothing re-escaped.
pub fn canonical_query(params: &[(String, String)]) -> String {
    let mut pairs: Vec<(String, &str)> = params
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str()))
        .filter(|(k, _)| k != "auth_signature")
        .collect();
    pairs.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

/// A request as needed for verification.
#[derive(Debug)]
pub struct SignedRequest<'a> {
    /// `GET`, `POST`, ...
    pub method: &'a str,
    /// The path as received (not decoded), starting at `/apps/...`.
    pub path: &'a str,
    /// Decoded query pairs.
    pub query: &'a [(String, String)],
    /// Raw body bytes.
    pub body: &'a [u8],
}

fn single<'a>(
    q: &'a [(String, String)],
    name: &'static str,
) -> Result<Option<&'a str>, RestAuthError> {
    let mut found = None;
    for (k, v) in q {
        if k.eq_ignore_ascii_case(name) {
            if found.is_some() {
                return Err(RestAuthError::Duplicate(name));
            }
            found = Some(v.as_str());
        }
    }
    Ok(found)
}

/// The `auth_key` of a request, if given exactly once (used to find the app for key-only routes).
pub fn auth_key(query: &[(String, String)]) -> Option<&str> {
    single(query, "auth_key").ok().flatten()
}

/// Verifies a signed REST request against an app's key and secret at time `now` (Unix seconds).
pub fn verify(
    req: &SignedRequest<'_>,
    key: &str,
    secret: &str,
    now: u64,
) -> Result<(), RestAuthError> {
    let q = req.query;
    let given_key = single(q, "auth_key")?.ok_or(RestAuthError::Missing("auth_key"))?;
    let ts = single(q, "auth_timestamp")?.ok_or(RestAuthError::Missing("auth_timestamp"))?;
    let version = single(q, "auth_version")?.ok_or(RestAuthError::Missing("auth_version"))?;
    let sig = single(q, "auth_signature")?.ok_or(RestAuthError::Missing("auth_signature"))?;
    let body_md5 = single(q, "body_md5")?;
    if given_key != key {
        return Err(RestAuthError::UnknownKey);
    }
    if version != "1.0" {
        return Err(RestAuthError::Version);
    }
    let fresh = ts
        .parse::<u64>()
        .map(|t| t.abs_diff(now) < TIMESTAMP_WINDOW_SECS)
        .unwrap_or(false);
    if !fresh {
        return Err(RestAuthError::Timestamp {
            given: ts.to_string(),
            now,
        });
    }
    match body_md5 {
        None if !req.body.is_empty() => return Err(RestAuthError::BodyMd5Missing),
        None => {}
        Some(m) => {
            let actual = hex::encode(Md5::digest(req.body));
            if !m.eq_ignore_ascii_case(&actual) {
                return Err(RestAuthError::BodyMd5Mismatch);
            }
        }
    }
    let query = canonical_query(q);
    let to_sign = |path: &str| format!("{}\n{}\n{}", req.method, path, query);
    let raw = to_sign(req.path);
    if super::signature_matches(secret, raw.as_bytes(), sig) {
        return Ok(());
    }
    let decoded_path = decode(req.path);
    if decoded_path != req.path
        && super::signature_matches(secret, to_sign(&decoded_path).as_bytes(), sig)
    {
        return Ok(());
    }
    Err(RestAuthError::Signature {
        string_to_sign: raw,
        got: sig.to_string(),
    })
}

/// Builds the query string of a signed request (what the server SDKs send): `auth_*`,
/// `body_md5` for a non-empty body, `extra` parameters, and `auth_signature`.
pub fn signed_query(
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: &[u8],
    key: &str,
    secret: &str,
    timestamp: u64,
) -> String {
    let mut params: Vec<(String, String)> = vec![
        ("auth_key".into(), key.into()),
        ("auth_timestamp".into(), timestamp.to_string()),
        ("auth_version".into(), "1.0".into()),
    ];
    if !body.is_empty() {
        params.push(("body_md5".into(), hex::encode(Md5::digest(body))));
    }
    params.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string())),
    );
    let canonical = canonical_query(&params);
    let signature = super::sign(secret, format!("{method}\n{path}\n{canonical}").as_bytes());
    format!("{canonical}&auth_signature={signature}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "278d425bdf160c739803";
    const SECRET: &str = "7ad3773142a6692b25b8";
    const T: u64 = 1353088179;

    fn q(s: &str) -> Vec<(String, String)> {
        parse_query(s)
    }

    #[test]
    fn post_events_vector() {
        let body = br#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
        assert_eq!(
            hex::encode(Md5::digest(body)),
            "ec365a775a4cd0599faeb73354201b6f"
        );
        let query = q("auth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0&body_md5=ec365a775a4cd0599faeb73354201b6f&auth_signature=da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c");
        assert_eq!(
            canonical_query(&query),
            "auth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0&body_md5=ec365a775a4cd0599faeb73354201b6f"
        );
        let req = SignedRequest {
            method: "POST",
            path: "/apps/3/events",
            query: &query,
            body,
        };
        assert_eq!(verify(&req, KEY, SECRET, T), Ok(()));
        assert_eq!(verify(&req, KEY, SECRET, T + 599), Ok(()));
        assert!(matches!(
            verify(&req, KEY, SECRET, T + 601),
            Err(RestAuthError::Timestamp { .. })
        ));
        assert!(matches!(
            verify(&req, KEY, SECRET, T - 601),
            Err(RestAuthError::Timestamp { .. })
        ));
        assert!(matches!(
            verify(&req, KEY, "other", T),
            Err(RestAuthError::Signature { .. })
        ));
        assert_eq!(
            verify(&req, "otherkey", SECRET, T),
            Err(RestAuthError::UnknownKey)
        );
        let tampered = SignedRequest { body: b"{}", ..req };
        assert_eq!(
            verify(&tampered, KEY, SECRET, T),
            Err(RestAuthError::BodyMd5Mismatch)
        );
    }

    #[test]
    fn get_channels_vectors() {
        let node = q("auth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0&filter_by_prefix=presence-&info=user_count&auth_signature=16819168891cb5dfd72b5c7a5d3d602605b26c6ba1930033b5e2eeeb65010291");
        let req = SignedRequest {
            method: "GET",
            path: "/apps/3/channels",
            query: &node,
            body: b"",
        };
        assert_eq!(verify(&req, KEY, SECRET, T), Ok(()));
        // python style: body_md5 of the empty body, keys in another order
        let py = q("info=user_count&body_md5=d41d8cd98f00b204e9800998ecf8427e&auth_version=1.0&auth_key=278d425bdf160c739803&auth_timestamp=1353088179&filter_by_prefix=presence-&auth_signature=f3f17c61ae491cc9085db68b22076e9b772e3bcb301659d655153ee3f9782aba");
        let req = SignedRequest {
            method: "GET",
            path: "/apps/3/channels",
            query: &py,
            body: b"",
        };
        assert_eq!(verify(&req, KEY, SECRET, T), Ok(()));
    }

    #[test]
    fn terminate_vector_and_encoded_values() {
        let query = q("auth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0&body_md5=99914b932bd37a50b983c5e7c90ae93b&auth_signature=2829710742ff5f799010258297d09016e2366257e3e954039eeda349073a2bcf");
        let req = SignedRequest {
            method: "POST",
            path: "/apps/3/users/42/terminate_connections",
            query: &query,
            body: b"{}",
        };
        assert_eq!(verify(&req, KEY, SECRET, T), Ok(()));
        // PHP encodes ',' as %2C; the signature is over the decoded value.
        let canonical =
            "auth_key=k&auth_timestamp=1&auth_version=1.0&info=user_count,subscription_count";
        let sig = crate::auth::sign(
            SECRET,
            format!("GET\n/apps/3/channels/x\n{canonical}").as_bytes(),
        );
        let query = q(&format!("AUTH_KEY=k&auth_timestamp=1&auth_version=1.0&info=user_count%2Csubscription_count&auth_signature={sig}"));
        assert_eq!(canonical_query(&query), canonical);
        let req = SignedRequest {
            method: "GET",
            path: "/apps/3/channels/x",
            query: &query,
            body: b"",
        };
        assert_eq!(verify(&req, "k", SECRET, 1), Ok(()));
    }

    #[test]
    fn missing_duplicate_and_version() {
        let base = "auth_key=k&auth_timestamp=1&auth_version=1.0&auth_signature=00";
        let req = |s: &str| {
            let query = q(s);
            let r = SignedRequest {
                method: "GET",
                path: "/apps/1/channels",
                query: &query,
                body: b"",
            };
            verify(&r, "k", SECRET, 1)
        };
        assert_eq!(
            req("auth_timestamp=1&auth_version=1.0&auth_signature=00"),
            Err(RestAuthError::Missing("auth_key"))
        );
        assert_eq!(
            req(&format!("{base}&auth_key=k")),
            Err(RestAuthError::Duplicate("auth_key"))
        );
        assert_eq!(
            req("auth_key=k&auth_timestamp=1&auth_version=2.0&auth_signature=00"),
            Err(RestAuthError::Version)
        );
        assert!(matches!(
            req("auth_key=k&auth_timestamp=abc&auth_version=1.0&auth_signature=00"),
            Err(RestAuthError::Timestamp { .. })
        ));
        let with_body = q(base);
        let r = SignedRequest {
            method: "POST",
            path: "/apps/1/events",
            query: &with_body,
            body: b"{}",
        };
        assert_eq!(
            verify(&r, "k", SECRET, 1),
            Err(RestAuthError::BodyMd5Missing)
        );
    }

    #[test]
    fn signed_query_round_trips() {
        let q = signed_query(
            "POST",
            "/apps/3/events",
            &[("info", "user_count")],
            b"{}",
            KEY,
            SECRET,
            T,
        );
        let query = parse_query(&q);
        let req = SignedRequest {
            method: "POST",
            path: "/apps/3/events",
            query: &query,
            body: b"{}",
        };
        assert_eq!(verify(&req, KEY, SECRET, T), Ok(()));
        assert!(q.contains("body_md5=99914b932bd37a50b983c5e7c90ae93b"));
    }

    #[test]
    fn percent_encoded_path_is_also_tried() {
        let canonical = "auth_key=k&auth_timestamp=1&auth_version=1.0";
        let sig = crate::auth::sign(
            SECRET,
            format!("GET\n/apps/1/channels/a;b\n{canonical}").as_bytes(),
        );
        let query = q(&format!("{canonical}&auth_signature={sig}"));
        let r = SignedRequest {
            method: "GET",
            path: "/apps/1/channels/a%3Bb",
            query: &query,
            body: b"",
        };
        assert_eq!(verify(&r, "k", SECRET, 1), Ok(()));
    }
}
