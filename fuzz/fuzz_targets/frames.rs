//! Arbitrary text frames (one per line) driven through a connection's protocol handling:
//! parsing, dispatch, subscriptions, presence, client events, sign-in. Nothing may panic, and
//! every answer must be a JSON object with a string `event`.
#![no_main]

use herald::config::Config;
use herald::connection::harness::Harness;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    rt.block_on(async {
        let Some(mut h) = Harness::new(Config::development()) else {
            return;
        };
        for frame in text.split('\n').take(64) {
            let _ = herald::protocol::inbound::parse(frame);
            h.feed(frame).await;
        }
        for out in h.written() {
            let v: serde_json::Value = serde_json::from_str(&out).expect("answers are JSON");
            assert!(v["event"].is_string(), "{out}");
        }
        h.close().await;
    });
});
