//! REST request signing (§15 items 98–108). The fixed-clock vectors are unit tests in
//! `auth::rest`; these go through the real HTTP stack.

use serde_json::json;

use crate::common::*;

const BODY: &[u8] = br#"{"name":"e","channel":"c","data":"x"}"#;

async fn post_events(t: &TestServer, query: &str, body: &[u8]) -> Reply {
    request(
        t.addr,
        "POST",
        &format!("/apps/1/events?{query}"),
        body,
        &[("content-type", "application/json")],
    )
    .await
}

#[tokio::test]
async fn correct_signature_is_accepted() {
    let t = start().await;
    let q = signed_query(
        "POST",
        "/apps/1/events",
        &[],
        BODY,
        "key1",
        "secret1",
        now(),
    );
    let r = post_events(&t, &q, BODY).await;
    assert_eq!((r.status, r.body), (200, json!({})));
    assert_eq!(r.content_type.as_deref(), Some("application/json"));
}

#[tokio::test]
async fn signature_failures_are_401_with_a_json_error() {
    let t = start().await;
    let good = signed_query(
        "POST",
        "/apps/1/events",
        &[],
        BODY,
        "key1",
        "secret1",
        now(),
    );
    let cases: Vec<(String, &[u8], &str)> = vec![
        (
            signed_query("POST", "/apps/1/events", &[], BODY, "key1", "wrong", now()),
            BODY,
            "Invalid signature",
        ),
        (
            signed_query(
                "POST",
                "/apps/1/events",
                &[],
                BODY,
                "key1",
                "secret1",
                now() - 601,
            ),
            BODY,
            "Timestamp expired",
        ),
        (
            signed_query(
                "POST",
                "/apps/1/events",
                &[],
                BODY,
                "key1",
                "secret1",
                now() + 601,
            ),
            BODY,
            "Timestamp expired",
        ),
        (
            signed_query(
                "POST",
                "/apps/1/events",
                &[],
                BODY,
                "key2",
                "secret2",
                now(),
            ),
            BODY,
            "Unknown auth_key",
        ),
        (
            signed_query(
                "POST",
                "/apps/1/events",
                &[],
                BODY,
                "nokey",
                "secret1",
                now(),
            ),
            BODY,
            "Unknown auth_key",
        ),
        (
            good.replace("auth_version=1.0", "auth_version=2.0"),
            BODY,
            "Version not supported",
        ),
        (
            good.clone(),
            br#"{"name":"e","channel":"c","data":"y"}"#,
            "body_md5 does not match",
        ),
        (
            signed_query("POST", "/apps/1/events", &[], b"", "key1", "secret1", now()),
            BODY,
            "body_md5 is required",
        ),
        (
            good.replace("auth_key=key1&", ""),
            BODY,
            "Missing required parameter: auth_key",
        ),
        (format!("{good}&auth_timestamp=1"), BODY, "more than once"),
        (
            signed_query("POST", "/apps/1/other", &[], BODY, "key1", "secret1", now()),
            BODY,
            "Invalid signature",
        ),
    ];
    for (q, body, msg) in cases {
        let r = post_events(&t, &q, body).await;
        assert_eq!(r.status, 401, "{q}: {}", r.raw);
        assert_eq!(r.content_type.as_deref(), Some("application/json"));
        let err = r.body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("error body: {}", r.raw));
        assert!(err.contains(msg), "{err:?} should contain {msg:?}");
    }
}

#[tokio::test]
async fn timestamp_window_edges() {
    let t = start().await;
    for skew in [-599i64, 599] {
        let ts = (now() as i64 + skew) as u64;
        let q = signed_query("POST", "/apps/1/events", &[], BODY, "key1", "secret1", ts);
        assert_eq!(post_events(&t, &q, BODY).await.status, 200, "skew {skew}");
    }
}

#[tokio::test]
async fn python_style_get_with_empty_body_md5() {
    let t = start().await;
    let extra = [
        ("body_md5", "d41d8cd98f00b204e9800998ecf8427e"),
        ("filter_by_prefix", "presence-"),
        ("info", "user_count"),
    ];
    let q = signed_query(
        "GET",
        "/apps/1/channels",
        &extra,
        b"",
        "key1",
        "secret1",
        now(),
    );
    let r = request(t.addr, "GET", &format!("/apps/1/channels?{q}"), b"", &[]).await;
    assert_eq!((r.status, r.body), (200, json!({"channels": {}})));
}

#[tokio::test]
async fn php_style_percent_encoded_values_and_uppercase_keys() {
    let t = start().await;
    let ts = now().to_string();
    // sign over the decoded value, send it encoded (%2C) with an upper-case key
    let canonical =
        format!("auth_key=key1&auth_timestamp={ts}&auth_version=1.0&info=subscription_count");
    let sig = sign(
        "secret1",
        &format!("GET\n/apps/1/channels/my-channel\n{canonical}"),
    );
    let q = format!("AUTH_KEY=key1&auth_timestamp={ts}&auth_version=1.0&info=subscription%5Fcount&auth_signature={sig}");
    let r = request(
        t.addr,
        "GET",
        &format!("/apps/1/channels/my-channel?{q}"),
        b"",
        &[],
    )
    .await;
    assert_eq!(
        (r.status, r.body),
        (200, json!({"occupied": false, "subscription_count": 0})),
        "{}",
        r.raw
    );
    // two attributes, comma encoded as %2C
    let canonical = format!(
        "auth_key=key1&auth_timestamp={ts}&auth_version=1.0&info=user_count,subscription_count"
    );
    let sig = sign("secret1", &format!("POST\n/apps/1/events\n{canonical}"));
    let q = format!("auth_key=key1&auth_timestamp={ts}&auth_version=1.0&info=user_count%2Csubscription_count&auth_signature={sig}");
    // a body requires body_md5; show that a POST without body still verifies
    let r = request(t.addr, "POST", &format!("/apps/1/events?{q}"), b"", &[]).await;
    assert_eq!(
        r.status, 400,
        "signature accepted, then the empty body is refused: {}",
        r.raw
    );
}

#[tokio::test]
async fn unknown_app_is_404_and_disabled_app_403() {
    let t = start().await;
    let r = api(t.addr, "POST", "/apps/999/events", &[], BODY).await;
    assert_eq!(r.status, 404);
    assert!(r.body["error"].is_string());
    let r = api_as(
        t.addr,
        "key3",
        "secret3",
        "POST",
        "/apps/3/events",
        &[],
        BODY,
    )
    .await;
    assert_eq!(r.status, 403);
    // another app's valid credentials do not open app 1
    let r = api_as(
        t.addr,
        "key2",
        "secret2",
        "POST",
        "/apps/1/events",
        &[],
        BODY,
    )
    .await;
    assert_eq!(r.status, 401);
}
