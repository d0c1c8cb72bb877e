//! How a receiver's failed deliveries reach the log: at warn, so a broken receiver is visible
//! without metrics, but at most one line per receiver per [`EVERY`] (with the number held back
//! since), and with the URL stripped of credentials and query.

use std::time::Duration;

use tokio::time::Instant;

/// At most one warning per receiver per this interval.
pub const EVERY: Duration = Duration::from_secs(60);

/// One receiver's failure-log state.
#[derive(Debug, Default)]
pub struct FailureLog {
    last: Option<Instant>,
    held_back: u64,
}

impl FailureLog {
    /// Records a failure at `now`; `Some(n)` when it is to be logged, `n` being the failures
    /// not logged since the previous line.
    pub fn record(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.duration_since(last) < EVERY => {
                self.held_back += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.held_back))
            }
        }
    }
}

/// The receiver's URL fit for logs and the dashboard: scheme, host, port and path, without
/// user info (`user:password@`) or query string, where tokens tend to live.
pub fn redacted(url: &str) -> String {
    let Ok(uri) = url.parse::<hyper::Uri>() else {
        return "<invalid url>".into();
    };
    let scheme = uri.scheme_str().unwrap_or("http");
    let host = uri.host().unwrap_or("");
    let port = uri.port_u16().map(|p| format!(":{p}")).unwrap_or_default();
    format!("{scheme}://{host}{port}{}", uri.path())
}

/// An error with its causes, for the log ("client error (Connect): tcp connect error: …").
pub fn with_causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count_held_back() {
        let mut log = FailureLog::default();
        let t0 = Instant::now();
        assert_eq!(log.record(t0), Some(0));
        assert_eq!(log.record(t0 + Duration::from_secs(1)), None);
        assert_eq!(log.record(t0 + Duration::from_secs(59)), None);
        assert_eq!(log.record(t0 + EVERY), Some(2));
        assert_eq!(log.record(t0 + EVERY + Duration::from_secs(1)), None);
        assert_eq!(log.record(t0 + 3 * EVERY), Some(1));
    }

    #[test]
    fn urls_lose_credentials_and_query() {
        assert_eq!(
            redacted("https://user:s3cret@hooks.example.com:8443/pusher?token=abc"),
            "https://hooks.example.com:8443/pusher"
        );
        assert_eq!(redacted("http://127.0.0.1/"), "http://127.0.0.1/");
        assert_eq!(redacted("not a url"), "<invalid url>");
    }
}
