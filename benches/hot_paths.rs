//! Micro-benchmarks of the hot paths: signatures, frame parsing, frame building, fan-out (into
//! queues, and straight to loopback sockets).
//! Run with `cargo bench --bench hot_paths`.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use herald::auth;
use herald::broadcast::Broadcast;
use herald::hub::{Hub, JoinRequest, Replay};
use herald::outbox::{Direct, Outbox};
use herald::protocol::{inbound, SocketId};

fn signatures(c: &mut Criterion) {
    let signed = "1234.1234:private-foobar";
    let auth_value = format!(
        "278d425bdf160c739803:{}",
        auth::sign("7ad3773142a6692b25b8", signed.as_bytes())
    );
    c.bench_function("verify channel auth", |b| {
        b.iter(|| {
            auth::verify_auth(
                "278d425bdf160c739803",
                "7ad3773142a6692b25b8",
                &auth_value,
                signed,
            )
            .is_ok()
        })
    });
    let query = auth::rest::parse_query("auth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0&body_md5=ec365a775a4cd0599faeb73354201b6f&auth_signature=da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c");
    let body = br#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
    c.bench_function("verify REST request", |b| {
        b.iter(|| {
            let req = auth::rest::SignedRequest {
                method: "POST",
                path: "/apps/3/events",
                query: &query,
                body,
            };
            auth::rest::verify(
                &req,
                "278d425bdf160c739803",
                "7ad3773142a6692b25b8",
                1353088179,
            )
            .is_ok()
        })
    });
}

fn parsing(c: &mut Criterion) {
    let sub = r#"{"event":"pusher:subscribe","data":{"auth":"278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4","channel":"private-foobar"}}"#;
    let client = r#"{"event":"client-typing","channel":"presence-chat","data":{"typing":true,"user":"ann"}}"#;
    c.bench_function("parse subscribe frame", |b| {
        b.iter(|| inbound::parse(sub).is_ok())
    });
    c.bench_function("parse client event frame", |b| {
        b.iter(|| inbound::parse(client).is_ok())
    });
}

fn broadcast(size: usize) -> Broadcast {
    Broadcast {
        app: "1".into(),
        channel: "hotel-grand".into(),
        event: "clock-status-updated".into(),
        data: format!("{{\"staff\":\"{}\"}}", "x".repeat(size)),
        except: None,
        user_id: None,
        cache_ttl: None,
    }
}

fn frames(c: &mut Criterion) {
    let b100 = broadcast(100);
    c.bench_function("build broadcast frame (100 B data)", |b| {
        b.iter(|| b100.to_frame())
    });
}

/// Connection `i`'s outbox (writing straight to a socket when `direct` is given), subscribed to
/// the benchmarks' channel.
fn subscriber(app: &herald::hub::AppHub, i: usize, direct: Option<Direct>) -> Arc<Outbox> {
    let o = Arc::new(Outbox::new(
        SocketId {
            node: 1,
            seq: i as u64,
        },
        1 << 16,
    ));
    if let Some(d) = direct {
        o.attach(d);
    }
    app.subscribe(JoinRequest {
        channel: "hotel-grand",
        conn: &o,
        member: None,
        max_members: 100,
        announce: false,
        presence_data: None,
        replay: Replay::Local,
    })
    .ok();
    o
}

fn fanout(c: &mut Criterion) {
    let mut group = c.benchmark_group("fan-out");
    for n in [100usize, 1000] {
        let hub = Hub::default();
        let app = hub.app("1");
        let mut rxs = Vec::new();
        for i in 0..n {
            rxs.push(subscriber(&app, i, None));
        }
        let b = broadcast(100);
        group.bench_with_input(
            BenchmarkId::new("deliver to N outboxes", n),
            &n,
            |bench, _| {
                bench.iter(|| {
                    app.deliver(&b);
                    for o in &rxs {
                        let _ = o.pop();
                    }
                })
            },
        );
    }
    group.finish();
}

/// Loopback sockets whose client ends a thread keeps reading, so the server ends never fill.
struct Drained {
    servers: Vec<Arc<tokio::net::TcpStream>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Drained {
    fn new(n: usize) -> Drained {
        use std::io::Read;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut clients = Vec::new();
        let mut servers = Vec::new();
        for _ in 0..n {
            let c = std::net::TcpStream::connect(addr).unwrap();
            let (s, _) = listener.accept().unwrap();
            c.set_nonblocking(true).unwrap();
            s.set_nonblocking(true).unwrap();
            s.set_nodelay(true).unwrap();
            clients.push(c);
            servers.push(Arc::new(tokio::net::TcpStream::from_std(s).unwrap()));
        }
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let halt = stop.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            while !halt.load(std::sync::atomic::Ordering::Relaxed) {
                for c in &mut clients {
                    while let Ok(n) = c.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                    }
                }
            }
        });
        Drained {
            servers,
            stop,
            reader: Some(reader),
        }
    }
}

impl Drop for Drained {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

/// The per-event fan-out as a paced broadcast takes it: each subscriber's frame written straight
/// to its (loopback) socket, one system call each, no task woken.
fn fanout_direct(c: &mut Criterion) {
    // A worker parked on the I/O driver brings back a socket's write readiness after a
    // `WouldBlock` (a current-thread runtime nobody drives never would).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_io()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let metrics = Arc::new(herald::metrics::Metrics::default());
    let mut group = c.benchmark_group("fan-out direct");
    for n in [100usize, 1000] {
        let sockets = Drained::new(n);
        let hub = Hub::default();
        let app = hub.app("1");
        let mut outboxes = Vec::new();
        for (i, s) in sockets.servers.iter().enumerate() {
            let direct = Direct {
                socket: s.clone(),
                metrics: metrics.clone(),
            };
            outboxes.push(subscriber(&app, i, Some(direct)));
        }
        let b = broadcast(100);
        group.bench_with_input(BenchmarkId::new("write to N sockets", n), &n, |bench, _| {
            bench.iter(|| {
                app.deliver(&b);
                // A socket the reader has not emptied yet queues the frame (or keeps the
                // rest of one): drop it, so every iteration takes the direct path.
                for o in &outboxes {
                    if !o.is_empty() {
                        while o.pop().is_some() {}
                        let _ = o.begin_write();
                        o.end_write();
                    }
                }
            })
        });
        drop(sockets);
    }
    group.finish();
    let direct = metrics
        .messages_out_direct
        .load(std::sync::atomic::Ordering::Relaxed);
    let all = metrics
        .messages_out
        .load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("fan-out direct: {direct} frames written directly (of {all} written)");
}

criterion_group!(benches, signatures, parsing, frames, fanout, fanout_direct);
criterion_main!(benches);
