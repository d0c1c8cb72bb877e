//! The costs scenario: what each herald operation costs Redis, measured from Redis itself.
//! Every operation is repeated N times against running nodes; Redis's counters (commands,
//! read events = round trips, bytes, CPU) are read before and after, the nodes' background
//! rate (heartbeats, polls) measured while idle is subtracted, and the rest divided by N.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::client::{self, Error};
use crate::cost_meter::{Meter, SETTLE};
use crate::pusher_ops::{ask, drain, join_all, leave_all, open_id, subscribe_frame, Rest};
use crate::redis_stats::Delta;
use crate::Target;

/// Channels per socket in the subscription workloads (below the default limit of 100).
const PER_SOCKET: usize = 50;

/// Options of the scenario.
pub struct Options {
    pub nodes: Vec<String>,
    pub redis: Vec<String>,
    pub repeat: usize,
    pub heartbeat_ms: u64,
    /// A node the scenario may kill (SIGKILL) to measure reaping: (address, pid).
    pub victim: Option<(String, u32)>,
    /// Port of a local webhook receiver the nodes post `wh-` channels' webhooks to.
    pub webhook_port: Option<u16>,
    /// CPU Redis uses per second with no client at all (µs), measured beforehand.
    pub redis_idle_cpu_us: f64,
    /// Pids of the nodes (not the victim), to charge their CPU to each operation too.
    pub pids: Vec<u32>,
}

/// Members already in each `presence-many-*` channel, and the sockets joining them one after
/// the other: the joins find 48..57 members (52.5 on average), the `node_has` joins 2.
const MANY_FILL: usize = 48;
const MANY_JOINERS: usize = 10;

/// Pause between paced publishes, so each goes out in its own pipeline (the publisher batches
/// whatever queued up during a round trip; `trigger.burst` shows that case).
const PACE: Duration = Duration::from_millis(1);

/// Runs every workload and prints the table and one JSON line.
pub async fn costs(t: Target, o: Options) -> Result<(), Error> {
    let addrs = o
        .nodes
        .iter()
        .map(|a| client::loopback(a))
        .collect::<Result<Vec<_>, _>>()?;
    let a = *addrs.first().ok_or("--nodes needs at least one node")?;
    let n = o.repeat.max(PER_SOCKET);
    let mut m = Meter {
        redis: o.redis.clone(),
        idle: Delta::default(),
        rows: Vec::new(),
        pids: o.pids.clone(),
    };
    // The idle rate: heartbeats and polls of every node (the victim's included).
    let idle_secs = 5.0;
    let s0 = m.start().await?;
    tokio::time::sleep(Duration::from_secs_f64(idle_secs)).await;
    let idle = m
        .since(&s0)
        .await?
        .scaled(1.0 / s0.at.elapsed().as_secs_f64());
    let live = o.nodes.len() + usize::from(o.victim.is_some());
    let beats = live as f64 * 1000.0 / o.heartbeat_ms.max(1) as f64;
    m.idle = idle.clone();
    println!(
        "costs: {} node(s) (+{} victim), {} Redis server(s), {n} repetitions per operation",
        o.nodes.len(),
        usize::from(o.victim.is_some()),
        o.redis.len()
    );
    println!(
        "  {:<30} {:>6} {:>6} {:>8} {:>8} {:>7} {:>7} {:>7}   calls",
        "operation (per repetition)",
        "cmds",
        "rtrips",
        "B in",
        "B out",
        "cmd µs",
        "CPU µs",
        "node µs"
    );
    let mut hb = idle.scaled(1.0 / beats);
    hb.cpu_us = (idle.cpu_us - o.redis_idle_cpu_us).max(0.0) / beats;
    hb.node_cpu_us =
        idle.node_cpu_us / (o.nodes.len() as f64 * 1000.0 / o.heartbeat_ms.max(1) as f64);
    println!(
        "  {:<30} {:>6.2} {:>6.2} {:>8.0} {:>8.0} {:>7.1} {:>7.1} {:>7.1}   (idle rate / {beats:.0} beats/s)",
        "heartbeat", hb.commands(), hb.reads, hb.net_in, hb.net_out, hb.cmd_us, hb.cpu_us, hb.node_cpu_us
    );
    m.rows.push(("heartbeat".into(), 0, hb));

    // Connections without channels.
    let s = m.start().await?;
    let mut socks = Vec::new();
    for i in 0..n {
        socks.push(open_id(a, i, &t.key).await?);
    }
    m.stop("connect", n, s, 1.0).await?;
    let s = m.start().await?;
    for mut k in socks.drain(..) {
        k.ws.close(None).await?;
    }
    m.stop("disconnect", n, s, 1.0).await?;

    // Subscriptions: for each kind, channels new everywhere, new on a second node, already
    // on the node; then the leaves in reverse.
    for kind in ["public", "private", "presence"] {
        let prefix = match kind {
            "public" => "c-pub",
            "private" => "private-c",
            _ => "presence-c",
        };
        let chans: Vec<String> = (0..n).map(|i| format!("{prefix}-{i}")).collect();
        let groups: Vec<&[String]> = chans.chunks(PER_SOCKET).collect();
        let mut holders = Vec::new();
        let mut remote = Vec::new();
        let mut second = Vec::new();
        for (g, _) in groups.iter().enumerate() {
            holders.push(open_id(a, g, &t.key).await?);
            second.push(open_id(a, g + 1, &t.key).await?);
            if let Some(b) = addrs.get(1) {
                remote.push(open_id(*b, g + 2, &t.key).await?);
            }
        }
        let s = m.start().await?;
        for (g, chs) in groups.iter().enumerate() {
            join_all(&t, &mut holders[g], chs, &format!("ua{g}")).await?;
        }
        m.stop(&format!("subscribe.{kind}.new"), n, s, 1.0).await?;
        if !remote.is_empty() {
            let s = m.start().await?;
            for (g, chs) in groups.iter().enumerate() {
                join_all(&t, &mut remote[g], chs, &format!("ub{g}")).await?;
            }
            m.stop(&format!("subscribe.{kind}.node_new"), n, s, 1.0)
                .await?;
        }
        let s = m.start().await?;
        for (g, chs) in groups.iter().enumerate() {
            join_all(&t, &mut second[g], chs, &format!("uc{g}")).await?;
        }
        m.stop(&format!("subscribe.{kind}.node_has"), n, s, 1.0)
            .await?;
        let s = m.start().await?;
        for (g, chs) in groups.iter().enumerate() {
            leave_all(&mut second[g], chs).await?;
        }
        m.stop(&format!("unsubscribe.{kind}.node_keeps"), n, s, 1.0)
            .await?;
        if !remote.is_empty() {
            let s = m.start().await?;
            for (g, chs) in groups.iter().enumerate() {
                leave_all(&mut remote[g], chs).await?;
            }
            m.stop(&format!("unsubscribe.{kind}.node_last"), n, s, 1.0)
                .await?;
        }
        let s = m.start().await?;
        for (g, chs) in groups.iter().enumerate() {
            leave_all(&mut holders[g], chs).await?;
        }
        m.stop(&format!("unsubscribe.{kind}.vacate"), n, s, 1.0)
            .await?;
        for mut k in holders.into_iter().chain(remote).chain(second) {
            let _ = k.ws.close(None).await;
        }
    }

    // Presence channels with many members: a join returns the member list, so its cost grows
    // with the members. Fillers on the first two nodes (as in the rows above), then joiners.
    let chans: Vec<String> = (0..10).map(|i| format!("presence-many-{i}")).collect();
    let mut fillers = Vec::new();
    for f in 0..MANY_FILL {
        let mut sk = open_id(addrs[f % addrs.len().min(2)], f, &t.key).await?;
        join_all(&t, &mut sk, &chans, &format!("f{f}")).await?;
        fillers.push(sk);
    }
    let mut joiners = Vec::new();
    for j in 0..MANY_JOINERS {
        joiners.push(open_id(a, j, &t.key).await?);
    }
    let s = m.start().await?;
    for (j, sk) in joiners.iter_mut().enumerate() {
        join_all(&t, sk, &chans, &format!("j{j}")).await?;
    }
    m.stop(
        "subscribe.presence.many",
        MANY_JOINERS * chans.len(),
        s,
        1.0,
    )
    .await?;
    let s = m.start().await?;
    for sk in &mut joiners {
        leave_all(sk, &chans).await?;
    }
    m.stop(
        "unsubscribe.presence.many",
        MANY_JOINERS * chans.len(),
        s,
        1.0,
    )
    .await?;
    for mut sk in fillers.into_iter().chain(joiners) {
        let _ = sk.ws.close(None).await;
    }
    tokio::time::sleep(SETTLE).await;

    // Sign-in, then the disconnect of signed-in sockets.
    let mut socks = Vec::new();
    for i in 0..n {
        socks.push(open_id(a, i, &t.key).await?);
    }
    let s = m.start().await?;
    for (i, k) in socks.iter_mut().enumerate() {
        let ud = serde_json::json!({"id": format!("signed-{i}")}).to_string();
        let sig = herald::auth::sign(
            &t.secret,
            herald::auth::signin_string(&k.id, &ud).as_bytes(),
        );
        let f = serde_json::json!({"event": "pusher:signin", "data": {"auth": format!("{}:{sig}", t.key), "user_data": ud}});
        ask(&mut k.ws, f, "signin_success").await?;
    }
    m.stop("signin", n, s, 1.0).await?;
    let s = m.start().await?;
    for mut k in socks.drain(..) {
        k.ws.close(None).await?;
    }
    m.stop("disconnect.signed_in", n, s, 1.0).await?;

    // Triggers through the first node, subscribers on it and on k other nodes.
    let mut rest = Rest::connect(&t, a).await?;
    let data = "x".repeat(100);
    let mut drains = Vec::new();
    for k in 0..addrs.len() {
        let ch = format!("t-{k}");
        for (j, addr) in addrs.iter().take(k + 1).enumerate() {
            let mut sk = open_id(*addr, j, &t.key).await?;
            join_all(&t, &mut sk, std::slice::from_ref(&ch), "u").await?;
            drains.push(drain(sk));
        }
    }
    tokio::time::sleep(SETTLE).await;
    let s = m.start().await?;
    for _ in 0..n {
        rest.post(
            "events",
            &serde_json::json!({"name": "e", "channel": "t-none", "data": data}),
        )
        .await?;
        tokio::time::sleep(PACE).await;
    }
    m.stop("trigger.none", n, s, 1.0).await?;
    for k in 0..addrs.len() {
        let s = m.start().await?;
        for _ in 0..n {
            rest.post(
                "events",
                &serde_json::json!({"name": "e", "channel": format!("t-{k}"), "data": data}),
            )
            .await?;
            tokio::time::sleep(PACE).await;
        }
        m.stop(&format!("trigger.k{k}"), n, s, 1.0).await?;
    }
    // The same back to back: the publisher pipelines what queued during a round trip.
    let last = format!("t-{}", addrs.len() - 1);
    let s = m.start().await?;
    for _ in 0..n {
        rest.post(
            "events",
            &serde_json::json!({"name": "e", "channel": last, "data": data}),
        )
        .await?;
    }
    m.stop(&format!("trigger.burst.k{}", addrs.len() - 1), n, s, 1.0)
        .await?;
    // A batch of 10 events to the channel with subscribers on every node.
    let batches = (n / 10).max(1);
    let s = m.start().await?;
    for _ in 0..batches {
        let batch: Vec<_> = (0..10)
            .map(|_| serde_json::json!({"name": "e", "channel": last, "data": data}))
            .collect();
        rest.post("batch_events", &serde_json::json!({ "batch": batch }))
            .await?;
        tokio::time::sleep(PACE).await;
    }
    m.stop(&format!("batch10.k{}", addrs.len() - 1), batches, s, 1.0)
        .await?;
    for d in drains.drain(..) {
        d.abort();
    }

    // Client events: senders on the first node, a receiver on every other node. Client
    // events are limited per connection (10/s), so each sender sends 5.
    let ch = "private-ce".to_string();
    for (j, addr) in addrs.iter().enumerate().skip(1) {
        let mut sk = open_id(*addr, j, &t.key).await?;
        join_all(&t, &mut sk, std::slice::from_ref(&ch), "r").await?;
        drains.push(drain(sk));
    }
    let mut senders = Vec::new();
    for i in 0..n / 5 {
        let mut sk = open_id(a, i, &t.key).await?;
        join_all(&t, &mut sk, std::slice::from_ref(&ch), "s").await?;
        senders.push(sk);
    }
    tokio::time::sleep(SETTLE).await;
    let s = m.start().await?;
    for sk in &mut senders {
        for _ in 0..5 {
            let f = serde_json::json!({"event": "client-e", "channel": ch, "data": data});
            sk.ws.send(Message::Text(f.to_string().into())).await?;
            tokio::time::sleep(PACE).await;
        }
    }
    m.stop(
        &format!("client_event.k{}", addrs.len() - 1),
        (n / 5) * 5,
        s,
        1.0,
    )
    .await?;
    for mut sk in senders {
        let _ = sk.ws.close(None).await;
    }
    for d in drains.drain(..) {
        d.abort();
    }
    tokio::time::sleep(SETTLE).await;

    // Webhooks: occupy and vacate `wh-` channels (the nodes send their webhooks to a local
    // receiver) against the same on plain channels; the difference is the webhooks' cost.
    if let Some(port) = o.webhook_port {
        let got = std::sync::Arc::new(std::sync::Mutex::new(crate::webhooks::Got::default()));
        crate::webhooks::receiver(port, got.clone()).await?;
        let mut per = BTreeMap::new();
        for prefix in ["plain", "wh"] {
            let chans: Vec<String> = (0..n).map(|i| format!("{prefix}-{i}")).collect();
            let mut socks = Vec::new();
            for g in 0..chans.chunks(PER_SOCKET).len() {
                socks.push(open_id(a, g, &t.key).await?);
            }
            let s = m.start().await?;
            for (g, chs) in chans.chunks(PER_SOCKET).enumerate() {
                join_all(&t, &mut socks[g], chs, "w").await?;
                leave_all(&mut socks[g], chs).await?;
            }
            // Let the vacated webhooks (after their grace) be claimed and delivered.
            tokio::time::sleep(Duration::from_secs(2)).await;
            let d = m
                .stop(&format!("occupy_vacate.{prefix}"), n, s, 1.0)
                .await?;
            per.insert(prefix, d);
            for mut k in socks {
                let _ = k.ws.close(None).await;
            }
        }
        let events = got.lock().unwrap_or_else(|e| e.into_inner()).events;
        if let (Some(wh), Some(plain)) = (per.get("wh"), per.get("plain")) {
            // Every event of a `wh-` channel is sent (occupied, vacated and the subscription
            // counts), so the difference is divided by the events the receiver got.
            let d = wh.minus(plain, 1.0).scaled(n as f64 / events.max(1) as f64);
            println!(
                "  {:<30} {:>6.2} {:>6.2} {:>8.0} {:>8.0} {:>7.1} {:>7.1} {:>7.1}   ({events} webhook events received for {n} channels)",
                "webhook", d.commands(), d.reads, d.net_in, d.net_out, d.cmd_us, d.cpu_us, d.node_cpu_us
            );
            m.rows.push(("webhook".into(), events as usize, d));
        }
    }

    // Reaping: sockets on the victim, each in a presence channel watched from the first
    // node; kill the victim and wait until every member_removed arrived.
    if let Some((vaddr, pid)) = &o.victim {
        let v = client::loopback(vaddr)?;
        let members = n;
        let chans: Vec<String> = (0..members / 10)
            .map(|i| format!("presence-r-{i}"))
            .collect();
        let mut watcher = open_id(a, 0, &t.key).await?;
        for ch in &chans {
            let f = subscribe_frame(&t, &watcher.id, ch, "watcher");
            ask(&mut watcher.ws, f, "subscription_succeeded").await?;
        }
        let mut victims = Vec::new();
        for i in 0..members {
            let mut sk = open_id(v, i, &t.key).await?;
            let ch = &chans[i % chans.len()];
            let f = subscribe_frame(&t, &sk.id, ch, &format!("v{i}"));
            ask(&mut sk.ws, f, "subscription_succeeded").await?;
            victims.push(sk);
        }
        tokio::time::sleep(SETTLE).await;
        let s = m.start().await?;
        std::process::Command::new("kill")
            .arg("-9")
            .arg(pid.to_string())
            .status()?;
        let mut removed = 0;
        let deadline = tokio::time::sleep(Duration::from_secs(60));
        tokio::pin!(deadline);
        while removed < members {
            let msg = tokio::select! {
                m = watcher.ws.next() => m,
                () = &mut deadline => break,
            };
            match msg {
                Some(Ok(Message::Text(t))) if t.as_str().contains("member_removed") => removed += 1,
                Some(Ok(_)) => {}
                _ => break,
            }
        }
        drop(victims);
        println!("  reap: {removed} of {members} member_removed seen");
        let share = o.nodes.len() as f64 / live as f64;
        m.stop("reap.per_member", members, s, share).await?;
    }

    let ops: serde_json::Map<String, serde_json::Value> = m
        .rows
        .iter()
        .map(|(name, n, d)| {
            let mut j = d.json();
            j["repetitions"] = serde_json::json!(n);
            (name.clone(), j)
        })
        .collect();
    println!(
        "{}",
        serde_json::json!({"scenario": "costs", "nodes": o.nodes.len(), "redis_servers": o.redis.len(),
            "heartbeat_ms": o.heartbeat_ms, "presence_many_members": MANY_FILL as f64 + (MANY_JOINERS as f64 - 1.0) / 2.0, "redis_idle_cpu_us": o.redis_idle_cpu_us,
            "used_memory_start": s0.redis.iter().map(|x| x.used_memory).sum::<u64>(), "idle_per_s": idle.json(), "ops": ops})
    );
    Ok(())
}
