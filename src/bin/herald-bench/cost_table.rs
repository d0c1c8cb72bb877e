//! The per-operation Redis costs `herald-bench costs` measures, as the model reads them: one
//! operation's (or a rate's) commands, round trips, bytes, CPU and memory, their arithmetic,
//! and the table parsed from the costs JSON line.

use std::collections::BTreeMap;

use crate::client::Error;

/// One operation's cost to Redis, or a rate of them (per second).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Cost {
    pub commands: f64,
    pub round_trips: f64,
    pub bytes_in: f64,
    pub bytes_out: f64,
    pub cpu_us: f64,
    /// used_memory change, bytes.
    pub memory: f64,
    /// CPU of the herald nodes together, µs.
    pub node_cpu_us: f64,
}

impl std::ops::Add for Cost {
    type Output = Cost;
    fn add(self, o: Cost) -> Cost {
        Cost {
            commands: self.commands + o.commands,
            round_trips: self.round_trips + o.round_trips,
            bytes_in: self.bytes_in + o.bytes_in,
            bytes_out: self.bytes_out + o.bytes_out,
            cpu_us: self.cpu_us + o.cpu_us,
            memory: self.memory + o.memory,
            node_cpu_us: self.node_cpu_us + o.node_cpu_us,
        }
    }
}

impl std::ops::Sub for Cost {
    type Output = Cost;
    fn sub(self, o: Cost) -> Cost {
        self + o * -1.0
    }
}

impl std::ops::Mul<f64> for Cost {
    type Output = Cost;
    fn mul(self, k: f64) -> Cost {
        Cost {
            commands: self.commands * k,
            round_trips: self.round_trips * k,
            bytes_in: self.bytes_in * k,
            bytes_out: self.bytes_out * k,
            cpu_us: self.cpu_us * k,
            memory: self.memory * k,
            node_cpu_us: self.node_cpu_us * k,
        }
    }
}

/// The measured costs: the `ops` of a `costs` JSON line.
#[derive(Debug, Clone, Default)]
pub struct Costs {
    pub ops: BTreeMap<String, Cost>,
    /// used_memory of Redis with the nodes up and no channels.
    pub base_memory: f64,
    /// CPU µs per second a Redis server uses with no clients.
    pub idle_cpu_us: f64,
    /// Members a `subscribe.presence.many` join found on average (0: not measured).
    pub many_members: f64,
}

impl Costs {
    /// Parses the JSON line printed by `herald-bench costs`.
    pub fn from_json(text: &str) -> Result<Costs, Error> {
        let line = text
            .lines()
            .rev()
            .find(|l| l.contains("\"scenario\":\"costs\""))
            .ok_or("no costs JSON line")?;
        let v: serde_json::Value = serde_json::from_str(line)?;
        let f = |o: &serde_json::Value, k: &str| o[k].as_f64().unwrap_or(0.0);
        let ops = v["ops"]
            .as_object()
            .ok_or("costs JSON without ops")?
            .iter()
            .map(|(name, o)| {
                (
                    name.clone(),
                    Cost {
                        commands: f(o, "commands"),
                        round_trips: f(o, "round_trips"),
                        bytes_in: f(o, "bytes_in"),
                        bytes_out: f(o, "bytes_out"),
                        cpu_us: f(o, "cpu_us"),
                        memory: f(o, "memory"),
                        node_cpu_us: f(o, "node_cpu_us"),
                    },
                )
            })
            .collect();
        Ok(Costs {
            ops,
            base_memory: f(&v, "used_memory_start"),
            idle_cpu_us: f(&v, "redis_idle_cpu_us"),
            many_members: f(&v, "presence_many_members"),
        })
    }

    /// One operation's cost; a missing one is an error naming it.
    pub fn get(&self, name: &str) -> Result<Cost, Error> {
        self.ops
            .get(name)
            .copied()
            .ok_or_else(|| format!("costs have no `{name}`: run `herald-bench costs` again").into())
    }

    /// The first of `names` that was measured.
    pub(crate) fn first(&self, names: &[&str]) -> Result<Cost, Error> {
        names
            .iter()
            .find_map(|n| self.ops.get(*n).copied())
            .ok_or_else(|| format!("costs have none of {names:?}").into())
    }

    /// The highest k measured for `prefix.k{k}`, and its cost.
    pub(crate) fn widest(&self, prefix: &str) -> Result<(f64, Cost), Error> {
        (0..64)
            .rev()
            .find_map(|k| {
                self.ops
                    .get(&format!("{prefix}.k{k}"))
                    .map(|c| (f64::from(k), *c))
            })
            .ok_or_else(|| format!("costs have no `{prefix}.k*`").into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_costs_line() {
        let text = "table...\n{\"scenario\":\"costs\",\"used_memory_start\":2048,\"ops\":{\"connect\":{\"commands\":0.5,\"round_trips\":0.25,\"bytes_in\":3,\"bytes_out\":4,\"cpu_us\":5,\"memory\":6}}}\n";
        let c = Costs::from_json(text).expect("parses");
        assert_eq!(c.base_memory, 2048.0);
        assert_eq!(
            c.get("connect").expect("present"),
            Cost {
                commands: 0.5,
                round_trips: 0.25,
                bytes_in: 3.0,
                bytes_out: 4.0,
                cpu_us: 5.0,
                memory: 6.0,
                node_cpu_us: 0.0,
            }
        );
        assert!(c.get("signin").is_err());
    }
}
