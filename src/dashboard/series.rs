//! The dashboard's recent history: cumulative counter readings turned into per-sample deltas,
//! kept in a bounded ring per node, and summed over the nodes of a cluster. Pure, no I/O.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

/// Samples kept per node: an hour at the default 10 s interval.
pub const CAPACITY: usize = 360;

/// Declares a struct of `u64` fields with a field-wise sum and delta; `$gauge` fields are
/// readings at the sample instant, the others counters whose delta over the sample is kept.
macro_rules! values {
    ($(#[$m:meta])* $name:ident { gauges: [$($g:ident),*], counters: [$($c:ident),*] }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(default)]
        pub struct $name {
            $(#[allow(missing_docs)] pub $g: u64,)*
            $(#[allow(missing_docs)] pub $c: u64,)*
        }

        impl $name {
            /// Field-wise sum (values of two nodes for the same sample).
            pub fn add(&mut self, o: &$name) {
                $(self.$g = self.$g.saturating_add(o.$g);)*
                $(self.$c = self.$c.saturating_add(o.$c);)*
            }

            /// What happened between `before` and `self` (both cumulative readings): gauges
            /// as read now, counters as differences (0 if a counter went backwards).
            pub fn since(&self, before: &$name) -> $name {
                $name {
                    $($g: self.$g,)*
                    $($c: self.$c.saturating_sub(before.$c),)*
                }
            }
        }
    };
}

values!(
    /// One node's figures over all apps (the same numbers as `/metrics`).
    Totals {
        gauges: [connections],
        counters: [
            messages_in,
            messages_out,
            client_events,
            api_messages,
            rest_2xx,
            rest_4xx,
            rest_5xx,
            webhooks_delivered,
            webhooks_failed,
            webhooks_given_up
        ]
    }
);

values!(
    /// One app's figures on one node (the `herald_app_*` series of `/metrics`).
    AppValues {
        gauges: [connections],
        counters: [
            client_events,
            api_messages,
            webhooks_delivered,
            webhooks_failed,
            webhooks_given_up
        ]
    }
);

/// Cumulative readings at one instant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reading {
    /// All apps.
    pub total: Totals,
    /// By app id.
    pub apps: BTreeMap<String, AppValues>,
}

/// What happened during one sample interval.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Point {
    /// Unix seconds at the end of the interval (a multiple of the interval, so the points of
    /// different nodes line up).
    pub t: u64,
    /// All apps.
    pub total: Totals,
    /// By app id (apps with no connections and no activity are left out).
    #[serde(default)]
    pub apps: BTreeMap<String, AppValues>,
}

/// The last [`CAPACITY`] points of one node, oldest first.
#[derive(Debug, Default)]
pub struct Ring {
    points: VecDeque<Point>,
    last: Option<Reading>,
}

impl Ring {
    /// Records the reading taken at the end of the interval ending at `t`; the first reading
    /// only sets the baseline.
    pub fn record(&mut self, t: u64, now: Reading) {
        if let Some(before) = &self.last {
            let mut apps = BTreeMap::new();
            for (id, v) in &now.apps {
                let d = v.since(&before.apps.get(id).copied().unwrap_or_default());
                if d != AppValues::default() {
                    apps.insert(id.clone(), d);
                }
            }
            if self.points.len() == CAPACITY {
                self.points.pop_front();
            }
            self.points.push_back(Point {
                t,
                total: now.total.since(&before.total),
                apps,
            });
        }
        self.last = Some(now);
    }

    /// The points, oldest first.
    pub fn points(&self) -> Vec<Point> {
        self.points.iter().cloned().collect()
    }
}

/// The cluster's points: the nodes' points summed per instant, oldest first.
pub fn sum<'a>(nodes: impl IntoIterator<Item = &'a [Point]>) -> Vec<Point> {
    let mut by_t: BTreeMap<u64, Point> = BTreeMap::new();
    for points in nodes {
        for p in points {
            let s = by_t.entry(p.t).or_insert_with(|| Point {
                t: p.t,
                ..Point::default()
            });
            s.total.add(&p.total);
            for (id, v) in &p.apps {
                s.apps.entry(id.clone()).or_default().add(v);
            }
        }
    }
    by_t.into_values().collect()
}

/// The end of the interval `now_ms` falls in, in unix seconds (a multiple of `every_s`).
pub fn interval_end(now_ms: u64, every_s: u64) -> u64 {
    let every = every_s.max(1);
    (now_ms / 1000 / every + 1) * every
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(conns: u64, out: u64, app: &[(&str, u64, u64)]) -> Reading {
        Reading {
            total: Totals {
                connections: conns,
                messages_out: out,
                ..Totals::default()
            },
            apps: app
                .iter()
                .map(|(id, c, ev)| {
                    (
                        id.to_string(),
                        AppValues {
                            connections: *c,
                            client_events: *ev,
                            ..AppValues::default()
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn first_reading_is_the_baseline_then_deltas_and_gauges() {
        let mut r = Ring::default();
        r.record(10, reading(3, 100, &[("a", 3, 7)]));
        assert!(r.points().is_empty());
        r.record(20, reading(5, 130, &[("a", 2, 9), ("b", 3, 0)]));
        r.record(30, reading(5, 130, &[("a", 0, 9), ("b", 0, 0)]));
        let p = r.points();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].t, 20);
        assert_eq!(p[0].total.connections, 5);
        assert_eq!(p[0].total.messages_out, 30);
        assert_eq!(
            p[0].apps["a"],
            AppValues {
                connections: 2,
                client_events: 2,
                ..AppValues::default()
            }
        );
        assert_eq!(p[0].apps["b"].connections, 3);
        // Nothing happened and nobody is connected: the apps are left out.
        assert_eq!(p[1].total.messages_out, 0);
        assert_eq!(p[1].total.connections, 5);
        assert!(p[1].apps.is_empty());
    }

    #[test]
    fn a_counter_going_backwards_counts_as_zero() {
        let mut r = Ring::default();
        r.record(10, reading(0, 50, &[]));
        r.record(20, reading(0, 40, &[]));
        assert_eq!(r.points()[0].total.messages_out, 0);
    }

    #[test]
    fn the_ring_keeps_the_last_capacity_points() {
        let mut r = Ring::default();
        for i in 0..=(CAPACITY as u64 + 5) {
            r.record(i * 10, reading(0, i, &[]));
        }
        let p = r.points();
        assert_eq!(p.len(), CAPACITY);
        assert_eq!(p[0].t, 60);
        assert_eq!(p[CAPACITY - 1].t, (CAPACITY as u64 + 5) * 10);
        assert!(p.iter().all(|p| p.total.messages_out == 1));
    }

    #[test]
    fn nodes_are_summed_per_instant() {
        let node = |t: u64, out: u64, app: Option<(&str, u64)>| Point {
            t,
            total: Totals {
                messages_out: out,
                connections: 1,
                ..Totals::default()
            },
            apps: app
                .map(|(id, ev)| {
                    (
                        id.to_string(),
                        AppValues {
                            client_events: ev,
                            ..AppValues::default()
                        },
                    )
                })
                .into_iter()
                .collect(),
        };
        let a = vec![node(10, 1, Some(("x", 2))), node(20, 2, None)];
        let b = vec![node(20, 5, Some(("x", 3))), node(30, 7, Some(("y", 1)))];
        let s = sum([a.as_slice(), b.as_slice()]);
        assert_eq!(s.iter().map(|p| p.t).collect::<Vec<_>>(), [10, 20, 30]);
        assert_eq!(s[0].total.messages_out, 1);
        assert_eq!(s[0].apps["x"].client_events, 2);
        assert_eq!(s[1].total.messages_out, 7);
        assert_eq!(s[1].total.connections, 2);
        assert_eq!(s[1].apps["x"].client_events, 3);
        assert_eq!(s[2].apps["y"].client_events, 1);
        assert!(sum(std::iter::empty::<&[Point]>()).is_empty());
    }

    #[test]
    fn interval_ends_line_up() {
        assert_eq!(interval_end(0, 10), 10);
        assert_eq!(interval_end(9_999, 10), 10);
        assert_eq!(interval_end(10_000, 10), 20);
        assert_eq!(interval_end(1_700_000_001_500, 1), 1_700_000_002);
        assert_eq!(interval_end(5_000, 0), 6);
    }

    #[test]
    fn points_round_trip_through_json() {
        let p = Point {
            t: 30,
            total: Totals {
                rest_4xx: 2,
                ..Totals::default()
            },
            apps: [("a".to_string(), AppValues::default())].into(),
        };
        let back: Point = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(back, p);
    }
}
