//! Real network faults: a node runs in a network namespace the test makes itself (one link to
//! Redis, one to its clients) and is cut off from Redis by taking that link down; no process
//! is killed. Skips with a message where namespaces cannot be made.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;
use crate::redis_server::{free_port, RedisServer};

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A namespace with two veth links to the root namespace: `10.{net}.1.0/24` (Redis side) and
/// `10.{net}.2.0/24` (clients). Deleted when dropped, even after a failed assertion.
struct Netns {
    name: String,
    net: u8,
}

impl Netns {
    fn make() -> Option<Netns> {
        let pid = std::process::id();
        let net = 100 + (pid % 100) as u8;
        let ns = Netns {
            name: format!("hrld{pid}"),
            net,
        };
        let n = &ns.name;
        let ok =
            ip(&["netns", "add", n]) && ip(&["netns", "exec", n, "ip", "link", "set", "lo", "up"]);
        if !ok {
            return None;
        }
        for (side, link) in [("r", 1), ("c", 2)] {
            let (host, inner) = (format!("h{pid}{side}0"), format!("h{pid}{side}1"));
            let host_ip = format!("10.{net}.{link}.1/24");
            let inner_ip = format!("10.{net}.{link}.2/24");
            let ok = ip(&["link", "add", &host, "type", "veth", "peer", "name", &inner])
                && ip(&["link", "set", &inner, "netns", n])
                && ip(&["addr", "add", &host_ip, "dev", &host])
                && ip(&["link", "set", &host, "up"])
                && ip(&[
                    "netns", "exec", n, "ip", "addr", "add", &inner_ip, "dev", &inner,
                ])
                && ip(&["netns", "exec", n, "ip", "link", "set", &inner, "up"]);
            if !ok {
                return None;
            }
        }
        Some(ns)
    }

    /// Takes the node's link to Redis down (`up = false`) or up again.
    fn redis_link(&self, up: bool) {
        self.link("r", up);
    }

    /// Takes the node's link to its clients down or up again.
    fn client_link(&self, up: bool) {
        self.link("c", up);
    }

    fn link(&self, side: &str, up: bool) {
        let inner = format!("h{}{side}1", std::process::id());
        let state = if up { "up" } else { "down" };
        assert!(ip(&[
            "netns", "exec", &self.name, "ip", "link", "set", &inner, state
        ]));
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace deletes its ends of the veth pairs, and so the pairs.
        let _ = ip(&["netns", "del", &self.name]);
        let pid = std::process::id();
        for side in ["r", "c"] {
            let _ = ip(&["link", "del", &format!("h{pid}{side}0")]);
        }
    }
}

/// Node B in the namespace is cut off from Redis for longer than the node timeout while its
/// clients still reach it: its own subscribers keep getting its events, the other node reaps
/// it (its member leaves, once), and once the link is back the events it accepted meanwhile
/// reach the other node's subscribers in order, and its member is back. Then B is cut off from
/// its clients instead: it finds the silent client itself and its member leaves, once.
#[tokio::test]
async fn a_node_cut_off_from_redis_by_the_network() {
    let Some(ns) = Netns::make() else {
        eprintln!("SKIPPED: cannot create network namespaces here (needs root and iproute2)");
        return;
    };
    let net = ns.net;
    let redis_port = free_port();
    let redis_ip = format!("10.{net}.1.1");
    // Bound to loopback and the test's own link only; protected mode would refuse the node.
    let _redis = RedisServer::start_with(
        redis_port,
        &["--bind", "127.0.0.1", &redis_ip, "--protected-mode", "no"],
    )
    .await;
    let mut ca = config();
    ca.adapter = herald::config::AdapterKind::Redis;
    ca.redis.url = format!("redis://127.0.0.1:{redis_port}/0");
    ca.redis.heartbeat_ms = 200;
    ca.redis.node_timeout_ms = 1000;
    let a = start_with(ca).await;

    let port = free_port();
    let file = write_config(&format!("netns-{port}.toml"), "");
    let toml = format!(
        "adapter = \"redis\"\n[metrics]\nenabled = false\n[server]\nhost = \"0.0.0.0\"\nport = {port}\n\
         activity_timeout = 2\npong_timeout = 1\n\
         [redis]\nurl = \"redis://{redis_ip}:{redis_port}/0\"\nheartbeat_ms = 200\nnode_timeout_ms = 1000\n\
         [[apps]]\nid = \"1\"\nkey = \"key1\"\nsecret = \"secret1\"\nenable_client_messages = true\n"
    );
    std::fs::write(&file, toml).unwrap();
    let _b_process = crate::spawned::herald(&["ip", "netns", "exec", &ns.name], &file);
    let b: std::net::SocketAddr = format!("10.{net}.2.2:{port}").parse().unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::net::TcpStream::connect(b).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "node B did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    const CH: &str = "presence-netcut";
    let (mut w, sw) = connect(a.addr, "key1").await;
    subscribe_presence(&mut w, &sw, CH, json!("w"), Value::Null).await;
    let (mut o, so) = connect(b, "key1").await;
    subscribe_presence(&mut o, &so, CH, json!("O"), Value::Null).await;
    assert_eq!(data_of(&recv(&mut w).await)["user_id"], "O");

    ns.redis_link(false);
    // B notices (its calls time out), then accepts events: its own subscriber gets them at once.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while request(b, "GET", "/ready", b"", &[]).await.status != 503 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "node B never noticed the cut"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for i in 1..=3 {
        let body = json!({"name": "cut", "channel": CH, "data": i.to_string()});
        assert_eq!(trigger(b, body).await.status, 200);
        assert_eq!(recv(&mut o).await["data"], i.to_string());
    }
    // The other node reaps B: its member leaves, once.
    assert_eq!(
        recv(&mut w).await,
        json!({"event": "pusher_internal:member_removed", "channel": CH, "data": "{\"user_id\":\"O\"}"})
    );
    // Node A, which still reaches Redis, publishes too: B's subscriber gets these once B is
    // back (from the channel's log, or late over the old connection), once and in order.
    for i in 1..=3 {
        let body = json!({"name": "from-a", "channel": CH, "data": i.to_string()});
        assert_eq!(trigger(a.addr, body).await.status, 200);
        assert_eq!(recv(&mut w).await["data"], i.to_string());
    }

    ns.redis_link(true);
    // B's member comes back and the events it accepted arrive, in order.
    let mut cut = Vec::new();
    let mut back = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while cut.len() < 3 || !back {
        assert!(
            tokio::time::Instant::now() < deadline,
            "after the cut: events {cut:?}, member back {back}"
        );
        let f = tokio::time::timeout(Duration::from_secs(20), recv(&mut w))
            .await
            .expect("frames after the cut");
        match f["event"].as_str() {
            Some("cut") => cut.push(f["data"].as_str().unwrap_or_default().to_string()),
            Some("pusher_internal:member_added") if data_of(&f)["user_id"] == "O" => back = true,
            _ => panic!("unexpected {f}"),
        }
    }
    assert_eq!(cut, ["1", "2", "3"]);
    for i in 1..=3 {
        let f = tokio::time::timeout(Duration::from_secs(20), recv(&mut o))
            .await
            .expect("A's events reach B's subscriber after the cut");
        assert_eq!(
            (f["event"].as_str(), f["data"].as_str()),
            (Some("from-a"), Some(i.to_string().as_str())),
            "{f}"
        );
    }
    let r = api(
        a.addr,
        "GET",
        &format!("/apps/1/channels/{CH}/users"),
        &[],
        b"",
    )
    .await;
    let mut ids: Vec<&str> = r.body["users"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|u| u["id"].as_str())
        .collect();
    ids.sort();
    assert_eq!(ids, ["O", "w"]);

    // Now B's clients are cut off (B keeps Redis): B finds its silent client by its own
    // liveness check (ping, then the pong timeout) and removes its member, once.
    ns.client_link(false);
    let f = tokio::time::timeout(Duration::from_secs(15), recv(&mut w))
        .await
        .expect("member_removed after the client cut");
    assert_eq!(
        f,
        json!({"event": "pusher_internal:member_removed", "channel": CH, "data": "{\"user_id\":\"O\"}"})
    );
    ns.client_link(true);
    assert_nothing_queued(&mut w).await;
    drop(o);
}
