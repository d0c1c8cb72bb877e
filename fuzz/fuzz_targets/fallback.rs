//! The HTTP-fallback framing: request paths, `xhr_send` bodies, and the frames built from them.
//! Nothing may panic; every accepted body's messages fit the limit and survive the `a[...]`
//! frame unchanged, and a `c[code,"reason"]` frame reads back as what was written.
#![no_main]

use herald::fallback::{frames, is_fallback};
use libfuzzer_sys::fuzz_target;
use tokio_tungstenite::tungstenite::Utf8Bytes;

fuzz_target!(|data: &[u8]| {
    let (path, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    if let Ok(path) = std::str::from_utf8(path) {
        let _ = is_fallback(path);
        let mut close = String::new();
        frames::push_close(&mut close, 4001, path);
        let line = close.strip_suffix('\n').expect("a line");
        let (code, reason): (u16, String) =
            serde_json::from_str(&line[1..]).expect("a close frame is JSON");
        assert_eq!((code, reason.as_str()), (4001, path));
    }
    if let Ok(messages) = frames::parse_send(body, 1024) {
        assert!(messages.iter().all(|m| m.len() <= 1024));
        let frames_in: Vec<Utf8Bytes> = messages.iter().map(|m| Utf8Bytes::from(m.clone())).collect();
        let mut out = String::new();
        frames::push_messages(&mut out, &frames_in);
        assert_eq!(out.matches('\n').count(), 1, "one frame, one line");
        let line = out.strip_suffix('\n').expect("a line");
        let back: Vec<String> = serde_json::from_str(&line[1..]).expect("an a frame is JSON");
        assert_eq!(back, messages);
        assert_eq!(frames::utf16_len(&out), out.encode_utf16().count());
    }
});
