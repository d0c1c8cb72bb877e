//! Channel names, presence channel_data and sign-in user_data validation.
#![no_main]

use herald::protocol::{channel, presence};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(ty) = channel::validate(s, 200) {
        assert!(!s.is_empty() && s.chars().count() <= 200);
        assert_eq!(ty, channel::classify(s));
    }
    let limits = presence::PresenceLimits {
        max_user_id_len: 128,
        max_user_info_bytes: 1024,
    };
    if let Ok(m) = presence::parse_channel_data(s, limits) {
        assert!(!m.user_id.is_empty() && m.user_id.chars().count() <= 128);
        let _ = presence::member_added_data(&m);
    }
    if let Ok(u) = presence::parse_user_data(s, 128, 100) {
        assert!(u.watchlist.len() <= 100);
        assert!(channel::validate(&format!("#server-to-user-{}", u.id), 300).is_ok());
    }
});
