//! Hub bookkeeping: joins, leaves, fan-out order, counts and the cache, without sockets.
use super::*;

/// Reads what the hub queued for a connection.
struct Rx(Arc<Outbox>);

impl Rx {
    fn try_recv(&mut self) -> Result<tokio_tungstenite::tungstenite::Utf8Bytes, ()> {
        self.0.pop().ok_or(())
    }
}

fn conn(seq: u64) -> (Arc<Outbox>, Rx) {
    let o = Arc::new(Outbox::new(SocketId { node: 1, seq }, 16));
    (o.clone(), Rx(o))
}

fn join<'a>(channel: &'a str, conn: &'a Arc<Outbox>) -> JoinRequest<'a> {
    JoinRequest {
        channel,
        conn,
        member: None,
        max_members: 100,
        announce: true,
        presence_data: None,
        replay: Replay::Local,
    }
}

#[test]
fn cache_channels_replay_or_miss() {
    let hub = Hub::default();
    let app = hub.app("1");
    let (a, mut ra) = conn(1);
    assert!(app.subscribe(join("cache-x", &a)).unwrap().cache_miss);
    ra.try_recv().unwrap();
    assert_eq!(
        ra.try_recv().unwrap().as_str(),
        r#"{"event":"pusher:cache_miss","channel":"cache-x"}"#
    );
    let b = Broadcast {
        app: "1".into(),
        channel: "cache-x".into(),
        event: "e".into(),
        data: "d".into(),
        except: None,
        user_id: None,
        cache_ttl: Some(Duration::from_secs(60)),
    };
    app.deliver(&b);
    assert_eq!(
        ra.try_recv().unwrap().as_str(),
        r#"{"event":"e","channel":"cache-x","data":"d"}"#
    );
    let (c, mut rc) = conn(2);
    assert!(!app.subscribe(join("cache-x", &c)).unwrap().cache_miss);
    rc.try_recv().unwrap();
    assert_eq!(
        rc.try_recv().unwrap().as_str(),
        r#"{"event":"e","channel":"cache-x","data":"d"}"#
    );
    assert_eq!(
        app.cached("cache-x").map(|(d, ttl)| (d, ttl <= 60)),
        Some(("d".to_string(), true))
    );
}

#[test]
fn subscription_count_throttles_large_channels() {
    let hub = Hub::default();
    let app = hub.app("1");
    let mut rxs = Vec::new();
    for i in 0..101 {
        let (c, rx) = conn(i);
        app.subscribe(join("big", &c)).unwrap();
        rxs.push((c, rx));
    }
    assert_eq!(app.announce_count("big", None), CountUpdate::Done);
    assert!(
        matches!(app.announce_count("big", None), CountUpdate::Later(d) if d <= COUNT_THROTTLE)
    );
    assert_eq!(
        app.announce_count("big", None),
        CountUpdate::Done,
        "one pending retry at a time"
    );
    let (_, rx) = &mut rxs[0];
    rx.try_recv().unwrap();
    assert_eq!(
        rx.try_recv().unwrap().as_str(),
        r#"{"event":"pusher_internal:subscription_count","channel":"big","data":"{\"subscription_count\":101}"}"#
    );
    assert!(rx.try_recv().is_err());
}

#[test]
fn deliver_once_per_subscriber_except_sender() {
    let hub = Hub::default();
    let app = hub.app("1");
    let (a, mut ra) = conn(1);
    let (b, mut rb) = conn(2);
    app.subscribe(join("c", &a)).unwrap();
    app.subscribe(join("c", &b)).unwrap();
    assert_eq!(
        ra.try_recv().unwrap().as_str(),
        r#"{"event":"pusher_internal:subscription_succeeded","channel":"c","data":"{}"}"#
    );
    rb.try_recv().unwrap();
    let b1 = Broadcast {
        app: "1".into(),
        channel: "c".into(),
        event: "e".into(),
        data: "d".into(),
        except: Some(a.id),
        user_id: None,
        cache_ttl: None,
    };
    app.deliver(&b1);
    assert!(ra.try_recv().is_err());
    assert_eq!(
        rb.try_recv().unwrap().as_str(),
        r#"{"event":"e","channel":"c","data":"d"}"#
    );
    assert_eq!(app.channel_stats("c").subscription_count, 2);
    assert_eq!(app.channels("").len(), 1);
    assert!(app.channels("x").is_empty());
    app.unsubscribe("c", a.id, None);
    assert!(app.unsubscribe("c", b.id, None).vacated);
    assert_eq!(app.channel_stats("c"), ChannelStats::default());
    assert!(app.channels("").is_empty());
}
