//! What Redis says it did: `INFO commandstats`, `cpu`, `stats` and `memory` of one or more
//! Redis servers (the masters of a cluster), read before and after a workload and subtracted.

use std::collections::BTreeMap;

use crate::client::Error;

/// One server's counters at one moment.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Command → (calls, microseconds), scripts' inner calls included.
    pub calls: BTreeMap<String, (u64, u64)>,
    /// used_cpu_sys + used_cpu_user, seconds.
    pub cpu: f64,
    pub net_in: u64,
    pub net_out: u64,
    /// Read events on client sockets (one per round trip from a client, however pipelined).
    pub reads: u64,
    pub writes: u64,
    pub used_memory: u64,
    /// Bytes of the INFO reply that produced this snapshot (charged to the next delta).
    pub reply_len: u64,
}

/// Reads the counters of one server.
pub async fn stats(url: &str) -> Result<Stats, Error> {
    let mut c = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .arg("cpu")
        .arg("stats")
        .arg("memory")
        .query_async(&mut c)
        .await?;
    Ok(parse(&info))
}

/// Reads every server in `urls`, in order.
pub async fn all(urls: &[String]) -> Result<Vec<Stats>, Error> {
    let mut v = Vec::with_capacity(urls.len());
    for u in urls {
        v.push(stats(u).await?);
    }
    Ok(v)
}

/// Parses an INFO reply.
pub fn parse(info: &str) -> Stats {
    let mut s = Stats {
        reply_len: info.len() as u64,
        ..Stats::default()
    };
    for line in info.lines() {
        let Some((k, v)) = line.trim_end().split_once(':') else {
            continue;
        };
        if let Some(name) = k.strip_prefix("cmdstat_") {
            let field = |f: &str| {
                v.split(',')
                    .find_map(|kv| kv.strip_prefix(f)?.strip_prefix('='))
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            s.calls
                .insert(name.to_string(), (field("calls"), field("usec")));
            continue;
        }
        let num = || v.parse::<f64>().unwrap_or(0.0);
        match k {
            "used_cpu_sys" | "used_cpu_user" => s.cpu += num(),
            "total_net_input_bytes" => s.net_in = num() as u64,
            "total_net_output_bytes" => s.net_out = num() as u64,
            "total_reads_processed" => s.reads = num() as u64,
            "total_writes_processed" => s.writes = num() as u64,
            "used_memory" => s.used_memory = num() as u64,
            _ => {}
        }
    }
    s
}

/// What happened on one server between two snapshots, the snapshots' own INFO excluded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Delta {
    /// Calls per command (INFO excluded).
    pub calls: BTreeMap<String, f64>,
    /// Microseconds inside commands.
    pub cmd_us: f64,
    /// Process CPU, microseconds (commands, I/O, pub/sub fan-out, background).
    pub cpu_us: f64,
    pub net_in: f64,
    pub net_out: f64,
    pub reads: f64,
    pub writes: f64,
    /// Change of used_memory, bytes.
    pub memory: f64,
    /// CPU of the herald nodes, µs (set by the caller when it knows their pids).
    pub node_cpu_us: f64,
}

impl Delta {
    /// `after - before`, minus the one INFO request and reply between them.
    pub fn between(before: &Stats, after: &Stats) -> Delta {
        let mut d = Delta::default();
        for (name, (calls, us)) in &after.calls {
            if name == "info" {
                continue;
            }
            let (c0, u0) = before.calls.get(name).copied().unwrap_or((0, 0));
            if *calls > c0 {
                d.calls.insert(name.clone(), (calls - c0) as f64);
            }
            d.cmd_us += us.saturating_sub(u0) as f64;
        }
        d.cpu_us = (after.cpu - before.cpu).max(0.0) * 1e6;
        // The before snapshot's reply went out after its counters were read; its request
        // (`INFO commandstats cpu stats memory`, ~60 bytes as RESP) came in before.
        d.net_in = after.net_in.saturating_sub(before.net_in) as f64 - 60.0;
        d.net_out = after.net_out.saturating_sub(before.net_out) as f64 - before.reply_len as f64;
        d.reads = after.reads.saturating_sub(before.reads) as f64 - 1.0;
        d.writes = after.writes.saturating_sub(before.writes) as f64 - 1.0;
        d.memory = after.used_memory as f64 - before.used_memory as f64;
        d
    }

    /// Commands of every kind.
    pub fn commands(&self) -> f64 {
        self.calls.values().sum()
    }

    /// `self - other * k` (a background rate times a duration), clamped at zero; memory is
    /// left as it is.
    pub fn minus(&self, other: &Delta, k: f64) -> Delta {
        let mut calls = self.calls.clone();
        for (name, c) in &other.calls {
            let e = calls.entry(name.clone()).or_insert(0.0);
            *e -= c * k;
        }
        calls.retain(|_, c| *c > 0.005);
        Delta {
            calls,
            cmd_us: (self.cmd_us - other.cmd_us * k).max(0.0),
            cpu_us: (self.cpu_us - other.cpu_us * k).max(0.0),
            net_in: (self.net_in - other.net_in * k).max(0.0),
            net_out: (self.net_out - other.net_out * k).max(0.0),
            reads: (self.reads - other.reads * k).max(0.0),
            writes: (self.writes - other.writes * k).max(0.0),
            // A level, not a rate: the background does not grow it.
            memory: self.memory,
            node_cpu_us: (self.node_cpu_us - other.node_cpu_us * k).max(0.0),
        }
    }

    /// Every figure times `k`.
    pub fn scaled(&self, k: f64) -> Delta {
        Delta {
            calls: self.calls.iter().map(|(n, c)| (n.clone(), c * k)).collect(),
            cmd_us: self.cmd_us * k,
            cpu_us: self.cpu_us * k,
            net_in: self.net_in * k,
            net_out: self.net_out * k,
            reads: self.reads * k,
            writes: self.writes * k,
            memory: self.memory * k,
            node_cpu_us: self.node_cpu_us * k,
        }
    }

    /// Sum over servers.
    pub fn sum(ds: &[Delta]) -> Delta {
        let mut t = Delta::default();
        for d in ds {
            for (n, c) in &d.calls {
                *t.calls.entry(n.clone()).or_insert(0.0) += c;
            }
            t.cmd_us += d.cmd_us;
            t.cpu_us += d.cpu_us;
            t.net_in += d.net_in;
            t.net_out += d.net_out;
            t.reads += d.reads;
            t.writes += d.writes;
            t.memory += d.memory;
            t.node_cpu_us += d.node_cpu_us;
        }
        t
    }

    /// Per-server deltas between two snapshots of the same servers.
    pub fn each(before: &[Stats], after: &[Stats]) -> Vec<Delta> {
        before
            .iter()
            .zip(after)
            .map(|(b, a)| Delta::between(b, a))
            .collect()
    }

    /// As JSON (calls rounded to 2 decimals).
    pub fn json(&self) -> serde_json::Value {
        let r = |x: f64| (x * 100.0).round() / 100.0;
        serde_json::json!({
            "commands": r(self.commands()),
            "calls": self.calls.iter().map(|(n, c)| (n.clone(), serde_json::json!(r(*c)))).collect::<serde_json::Map<_, _>>(),
            "round_trips": r(self.reads), "writes": r(self.writes),
            "bytes_in": r(self.net_in), "bytes_out": r(self.net_out),
            "cmd_us": r(self.cmd_us), "cpu_us": r(self.cpu_us), "memory": r(self.memory),
            "node_cpu_us": r(self.node_cpu_us),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "# Commandstats\r\ncmdstat_evalsha:calls=10,usec=200,usec_per_call=20.00,rejected_calls=0,failed_calls=0\r\ncmdstat_info:calls=3,usec=90,usec_per_call=30.00\r\ncmdstat_hincrby:calls=20,usec=40,usec_per_call=2.00\r\n# CPU\r\nused_cpu_sys:1.500000\r\nused_cpu_user:0.500000\r\n# Stats\r\ntotal_net_input_bytes:1000\r\ntotal_net_output_bytes:5000\r\ntotal_reads_processed:40\r\ntotal_writes_processed:30\r\n# Memory\r\nused_memory:1048576\r\n";

    #[test]
    fn parses_info() {
        let s = parse(INFO);
        assert_eq!(s.calls.get("evalsha"), Some(&(10, 200)));
        assert_eq!(s.calls.get("hincrby"), Some(&(20, 40)));
        assert!((s.cpu - 2.0).abs() < 1e-9);
        assert_eq!(
            (s.net_in, s.net_out, s.reads, s.writes, s.used_memory),
            (1000, 5000, 40, 30, 1_048_576)
        );
        assert_eq!(s.reply_len, INFO.len() as u64);
    }

    #[test]
    fn delta_excludes_info_and_its_own_bytes() {
        let before = parse(INFO);
        let after_text = INFO
            .replace("evalsha:calls=10,usec=200", "evalsha:calls=14,usec=300")
            .replace("info:calls=3", "info:calls=4")
            .replace("used_cpu_user:0.500000", "used_cpu_user:0.500500")
            .replace("total_net_input_bytes:1000", "total_net_input_bytes:1460")
            .replace(
                "total_net_output_bytes:5000",
                &format!("total_net_output_bytes:{}", 5000 + before.reply_len + 100),
            )
            .replace("total_reads_processed:40", "total_reads_processed:45");
        let d = Delta::between(&before, &parse(&after_text));
        assert_eq!(d.calls.len(), 1);
        assert_eq!(d.calls.get("evalsha"), Some(&4.0));
        assert_eq!(d.cmd_us, 100.0);
        assert!((d.cpu_us - 500.0).abs() < 1e-3);
        assert_eq!(d.net_in, 400.0);
        assert_eq!(d.net_out, 100.0);
        assert_eq!(d.reads, 4.0);
        let half = d.minus(&d.scaled(0.5), 1.0);
        assert_eq!(half.calls.get("evalsha"), Some(&2.0));
        assert_eq!(Delta::sum(&[half.clone(), half]).reads, 4.0);
    }
}
