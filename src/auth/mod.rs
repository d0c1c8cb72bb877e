//! Signatures: channel auth, user sign-in, REST requests and webhooks (PROTOCOL.md §4, §5.2, §7).
//! Every check compares in constant time.

pub mod rest;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::protocol::ProtocolError;

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &str, message: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length, so this never fails.
    let mut m = HmacSha256::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any size"));
    m.update(message);
    m
}

/// Lowercase hex HMAC-SHA256 of `message` keyed with `secret`.
pub fn sign(secret: &str, message: &[u8]) -> String {
    hex::encode(mac(secret, message).finalize().into_bytes())
}

/// Whether `signature_hex` is the HMAC-SHA256 of `message`, compared in constant time.
pub fn signature_matches(secret: &str, message: &[u8], signature_hex: &str) -> bool {
    match hex::decode(signature_hex) {
        Ok(bytes) => mac(secret, message).verify_slice(&bytes).is_ok(),
        Err(_) => false,
    }
}

/// The string signed for a private or encrypted channel, or presence without channel_data.
pub fn channel_string(socket_id: &str, channel: &str) -> String {
    format!("{socket_id}:{channel}")
}

/// The string signed for a presence channel with channel_data.
pub fn presence_string(socket_id: &str, channel: &str, channel_data: &str) -> String {
    format!("{socket_id}:{channel}:{channel_data}")
}

/// The string signed for `pusher:signin`.
pub fn signin_string(socket_id: &str, user_data: &str) -> String {
    format!("{socket_id}::user::{user_data}")
}

/// Verifies an `auth` value `<app_key>:<hex signature>` over `signed` (PROTOCOL.md §4).
pub fn verify_auth(
    app_key: &str,
    secret: &str,
    auth: &str,
    signed: &str,
) -> Result<(), ProtocolError> {
    let Some((key, sig)) = auth.split_once(':') else {
        return Err(ProtocolError::InvalidKey(auth.to_string()));
    };
    if key != app_key {
        return Err(ProtocolError::InvalidKey(key.to_string()));
    }
    if signature_matches(secret, signed.as_bytes(), sig) {
        Ok(())
    } else {
        Err(ProtocolError::InvalidSignature {
            signed: signed.to_string(),
            got: auth.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "278d425bdf160c739803";
    const SECRET: &str = "7ad3773142a6692b25b8";

    #[test]
    fn vectors_of_protocol_4_1() {
        let cases = [
            (
                "1234.1234:private-foobar",
                "58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4",
            ),
            (
                "1234.1234:private-encrypted-foobar",
                "e6a18892d037c5d5e76a2265df4f086ffc38631605530dfd214aa5bff495f533",
            ),
            (
                r#"1234.1234:presence-foobar:{"user_id":10,"user_info":{"name":"Mr. Channels"}}"#,
                "31935e7d86dba64c2a90aed31fdc61869f9b22ba9d8863bba239c03ca481bc80",
            ),
            (
                r#"1234.1234:presence-foobar:{"user_id":"10","user_info":{"name":"Mr. Channels"}}"#,
                "4c6d8fc42a207ba96a0779844171b0bb819d96ffceef9609f5cce596ab17a800",
            ),
            (
                "1234.1234:presence-foobar",
                "71506e66e7fdca106571b8999a849ad34245bc653772e51e0026c1a2475b92ba",
            ),
            (
                r#"1234.1234::user::{"id":"12345"}"#,
                "4708d583dada6a56435fb8bc611c77c359a31eebde13337c16ab43aa6de336ba",
            ),
        ];
        for (input, sig) in cases {
            assert_eq!(sign(SECRET, input.as_bytes()), sig, "{input}");
            assert!(signature_matches(SECRET, input.as_bytes(), sig));
        }
        assert_eq!(channel_string("1234.1234", "private-foobar"), cases[0].0);
        assert_eq!(
            presence_string(
                "1234.1234",
                "presence-foobar",
                r#"{"user_id":"10","user_info":{"name":"Mr. Channels"}}"#
            ),
            cases[3].0
        );
        assert_eq!(signin_string("1234.1234", r#"{"id":"12345"}"#), cases[5].0);
    }

    #[test]
    fn webhook_vector() {
        let body = r#"{"time_ms":1327078148132,"events":[{"name":"channel_occupied","channel":"my-channel"}]}"#;
        assert_eq!(
            sign(SECRET, body.as_bytes()),
            "c19001ae3963ccb13bf618e5b16ba9848e7e74df0993aa0689168e341c6833cf"
        );
    }

    #[test]
    fn verify_auth_failures() {
        let good =
            format!("{KEY}:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4");
        let signed = "1234.1234:private-foobar";
        assert_eq!(verify_auth(KEY, SECRET, &good, signed), Ok(()));
        assert_eq!(
            verify_auth(KEY, SECRET, "other:58df", signed),
            Err(ProtocolError::InvalidKey("other".into()))
        );
        assert_eq!(
            verify_auth(KEY, SECRET, "nocolon", signed),
            Err(ProtocolError::InvalidKey("nocolon".into()))
        );
        assert!(matches!(
            verify_auth(KEY, SECRET, &format!("{KEY}:zz"), signed),
            Err(ProtocolError::InvalidSignature { .. })
        ));
        assert!(matches!(
            verify_auth(KEY, SECRET, &good, "1234.1235:private-foobar"),
            Err(ProtocolError::InvalidSignature { .. })
        ));
        assert!(matches!(
            verify_auth(KEY, "wrong", &good, signed),
            Err(ProtocolError::InvalidSignature { .. })
        ));
    }
}
