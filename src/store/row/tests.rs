use serde_json::json;

use super::*;

fn row(v: Value) -> Row {
    let Value::Object(m) = v else {
        panic!("object")
    };
    Row {
        values: m.into_iter().collect(),
        unsupported: BTreeMap::new(),
    }
}

/// A row as Soketi's docs create it (MySQL: tinyint booleans, JSON text webhooks).
fn soketi() -> Value {
    json!({
        "id": "app-1", "key": "key-1", "secret": "secret-1",
        "max_connections": -1, "enable_client_messages": 1, "enabled": 1,
        "max_backend_events_per_sec": -1, "max_client_events_per_sec": -1,
        "max_read_req_per_sec": -1,
        "webhooks": "[{\"url\":\"http://127.0.0.1:9/hook\",\"event_types\":[\"channel_occupied\"]}]",
    })
}

#[test]
fn soketi_row_with_defaults() {
    let a = app(&row(soketi()), &Limits::default()).unwrap();
    assert_eq!(
        (a.id.as_str(), a.key.as_str(), a.secret.as_str()),
        ("app-1", "key-1", "secret-1")
    );
    assert!(a.enabled && a.enable_client_messages);
    assert_eq!(a.max_connections, None);
    assert_eq!(a.max_requests_per_second, None);
    // -1 client events: no limit
    assert_eq!(a.limits.client_events_per_second, Some(u32::MAX));
    assert_eq!(a.signin_timeout, None);
    assert_eq!(a.webhooks.len(), 1);
    assert_eq!(a.webhooks[0].url, "http://127.0.0.1:9/hook");
    assert_eq!(a.webhooks[0].events, ["channel_occupied"]);
    assert_eq!(a.limits.max_presence_members, None);
}

#[test]
fn camel_case_and_pascal_case_columns() {
    let r = row(json!({
        "id": 7, "key": "k", "secret": "s",
        "maxConnections": 3, "enableClientMessages": true, "Enabled": false,
        "maxBackendEventsPerSecond": 50, "maxReadRequestsPerSecond": 20,
        "maxClientEventsPerSecond": 4,
        "maxPresenceMembersPerChannel": 5, "maxPresenceMemberSizeInKb": 0.5,
        "maxChannelNameLength": 30, "maxEventChannelsAtOnce": 2, "maxEventNameLength": 40,
        "maxEventPayloadInKb": 2, "maxEventBatchSize": 3, "enableUserAuthentication": 1,
        "webhooks": [],
    }));
    let a = app(&r, &Limits::default()).unwrap();
    assert_eq!(a.id, "7");
    assert!(!a.enabled && a.enable_client_messages);
    assert_eq!(a.max_connections, Some(3));
    // one REST rate: the stricter of backend and read
    assert_eq!(a.max_requests_per_second, Some(20));
    assert_eq!(a.signin_timeout, Some(DEFAULT_SIGNIN_TIMEOUT));
    let l = Limits::default().merged(&a.limits);
    assert_eq!(l.client_events_per_second, 4);
    assert_eq!(l.max_presence_members, 5);
    assert_eq!(l.max_presence_user_info_bytes, 512);
    assert_eq!(l.max_channel_name_len, 30);
    assert_eq!(l.max_channels_per_trigger, 2);
    assert_eq!(l.max_event_name_len, 40);
    assert_eq!(l.max_event_data_bytes, 2048);
    assert_eq!(l.max_batch_events, 3);
}

#[test]
fn minus_one_zero_and_null() {
    let mut v = soketi();
    v["max_connections"] = json!(0);
    v["max_client_events_per_sec"] = json!(0);
    v["max_backend_events_per_sec"] = json!(0);
    v["max_read_req_per_sec"] = Value::Null;
    v["max_presence_members_per_channel"] = json!(-1);
    v["max_event_payload_in_kb"] = Value::Null;
    v["max_event_batch_size"] = json!(0);
    v["enabled"] = Value::Null;
    v["enable_client_messages"] = json!("");
    let a = app(&row(v), &Limits::default()).unwrap();
    // 0 connections admits nobody; NULL enabled is enabled (Soketi's default)
    assert_eq!(a.max_connections, Some(0));
    assert!(a.enabled && !a.enable_client_messages);
    // 0 and NULL rates: no limit; 0 client events and limit columns: the global [limits]
    assert_eq!(a.max_requests_per_second, None);
    assert_eq!(a.limits, LimitsOverride::default());
}

#[test]
fn heralds_columns_win_over_soketis() {
    let mut v = soketi();
    v["max_event_payload_in_kb"] = json!(1);
    v["max_event_data_bytes"] = json!(3000);
    v["max_backend_events_per_sec"] = json!(5);
    v["max_requests_per_second"] = json!(9);
    v["enable_user_authentication"] = json!(true);
    v["signin_timeout"] = json!(12);
    v["enable_subscription_count"] = json!(1);
    v["enable_watchlist_events"] = json!("true");
    v["max_channels_per_connection"] = json!(0);
    let a = app(&row(v), &Limits::default()).unwrap();
    assert_eq!(a.limits.max_event_data_bytes, Some(3000));
    assert_eq!(a.max_requests_per_second, Some(9));
    assert_eq!(a.signin_timeout, Some(12));
    assert!(a.enable_subscription_count && a.enable_watchlist_events);
    assert_eq!(a.limits.max_channels_per_connection, Some(0));
}

#[test]
fn webhook_json_with_filter_headers_and_batching() {
    let mut v = soketi();
    v["webhooks"] = json!([{
        "url": "https://example.com/h", "event_types": ["member_added", "client_event"],
        "headers": {"Authorization": "Bearer x"},
        "filter": {"channel_name_starts_with": "presence-", "channel_name_ends_with": null},
        "batch_ms": 50, "batch_max": 7,
    }]);
    let a = app(&row(v), &Limits::default()).unwrap();
    let w = &a.webhooks[0];
    assert_eq!(w.channel_prefix, "presence-");
    assert_eq!(
        w.headers.get("Authorization").map(String::as_str),
        Some("Bearer x")
    );
    assert_eq!((w.batch_ms, w.batch_max), (50, 7));
}

#[test]
fn bad_rows_say_why() {
    let reason = |v: Value| app(&row(v), &Limits::default()).unwrap_err().0;
    let mut v = soketi();
    v.as_object_mut().unwrap().remove("key");
    assert_eq!(reason(v), "column key is missing or empty");
    let mut v = soketi();
    v["secret"] = json!("");
    assert_eq!(reason(v), "column secret is missing or empty");
    let mut v = soketi();
    v["max_connections"] = json!("lots");
    assert_eq!(
        reason(v),
        "column max_connections: expected a number, found text"
    );
    let mut v = soketi();
    v["enabled"] = json!(2);
    assert_eq!(
        reason(v),
        "column enabled: expected a boolean (0 or 1), found a number"
    );
    let mut v = soketi();
    v["webhooks"] = json!("[{");
    assert!(reason(v).starts_with("column webhooks: invalid JSON"));
    let mut v = soketi();
    v["webhooks"] = json!([{"lambda_function": "f", "event_types": []}]);
    assert_eq!(
        reason(v),
        "webhooks[1]: AWS Lambda receivers are not supported: use a url"
    );
    let mut v = soketi();
    v["webhooks"] = json!([{"url": "ftp://x", "event_types": ["nope"]}]);
    let r = reason(v);
    assert!(
        r.contains("must be an http:// or https:// URL")
            && r.contains("unknown event type \"nope\""),
        "{r}"
    );
    let mut v = soketi();
    v["key"] = json!("has space");
    assert_eq!(
        reason(v),
        "app key: must be non-empty without '/', '?', ':' or spaces"
    );
    let mut r = row(soketi());
    r.unsupported
        .insert("max_connections".into(), "NUMERIC".into());
    assert_eq!(
        app(&r, &Limits::default()).unwrap_err().0,
        "column max_connections: unsupported SQL type NUMERIC"
    );
    // an unsupported column herald does not read is no problem
    let mut r = row(soketi());
    r.unsupported
        .insert("created_at".into(), "TIMESTAMPTZ".into());
    assert!(app(&r, &Limits::default()).is_ok());
}
