//! The HTTP fallback across two nodes on Redis: a session lives on the node that its requests
//! reach (sticky routing, deploy/nginx.conf) and exchanges events with WebSocket clients of the
//! other node like any connection.

use serde_json::json;

use crate::cluster::node_config;
use crate::common::{self, WAIT};
use crate::fallback_client::{open_stream, send, xhr_send};
use crate::redis_server::RedisServer;

#[tokio::test]
async fn http_session_on_one_node_and_websocket_on_the_other_exchange_events() {
    let redis = RedisServer::start().await;
    let mut c1 = node_config(&redis);
    c1.server.http_session_timeout = 1;
    let n1 = common::start_with(c1).await;
    let n2 = common::start_with(node_config(&redis)).await;

    let (mut ws, wsid) = common::connect(n2.addr, "key1").await;
    common::subscribe_presence(&mut ws, &wsid, "presence-desk", json!("ws"), json!({})).await;
    let s = "/pusher/app/key1/42/clustr01";
    let (mut stream, sid) = open_stream(n1.addr, s).await;
    let data = json!({"user_id": "http", "user_info": {"via": "xhr"}}).to_string();
    let auth = common::presence_auth("key1", "secret1", &sid, "presence-desk", &data);
    send(
        n1.addr,
        s,
        json!({"event": "pusher:subscribe", "data": {"auth": auth, "channel_data": data, "channel": "presence-desk"}}),
    )
    .await;
    let ok = stream.message().await;
    assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
    let presence = common::data_of(&ok)["presence"].clone();
    assert_eq!(presence["count"], 2, "{presence}");
    assert_eq!(
        common::recv(&mut ws).await,
        json!({"event": "pusher_internal:member_added", "channel": "presence-desk", "data": "{\"user_id\":\"http\",\"user_info\":{\"via\":\"xhr\"}}"})
    );

    // Client events both ways across the nodes.
    send(
        n1.addr,
        s,
        json!({"event": "client-note", "channel": "presence-desk", "data": "from http"}),
    )
    .await;
    let got = common::recv(&mut ws).await;
    assert_eq!(
        got,
        json!({"event": "client-note", "channel": "presence-desk", "data": "from http", "user_id": "http"})
    );
    common::send(
        &mut ws,
        json!({"event": "client-note", "channel": "presence-desk", "data": "from ws"}),
    )
    .await;
    assert_eq!(
        stream.message().await,
        json!({"event": "client-note", "channel": "presence-desk", "data": "from ws", "user_id": "ws"})
    );
    // A REST trigger on the WebSocket's node reaches the session.
    let r = common::trigger(
        n2.addr,
        json!({"name": "e", "channel": "presence-desk", "data": "rest"}),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        stream.message().await,
        json!({"event": "e", "channel": "presence-desk", "data": "rest"})
    );
    assert_eq!(
        common::recv(&mut ws).await,
        json!({"event": "e", "channel": "presence-desk", "data": "rest"})
    );

    // The session is only on node 1: node 2 does not know it.
    assert_eq!(xhr_send(n2.addr, s, "[]").await.status, 404);

    // The session vanishes: its member is removed once, on the other node too.
    drop(stream);
    let removed = tokio::time::timeout(WAIT * 2, common::recv(&mut ws))
        .await
        .expect("member_removed in time");
    assert_eq!(
        removed,
        json!({"event": "pusher_internal:member_removed", "channel": "presence-desk", "data": "{\"user_id\":\"http\"}"})
    );
    common::assert_nothing_queued(&mut ws).await;
}
