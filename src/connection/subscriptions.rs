//! The subscriptions of one connection, kept small for idle connections.

/// One subscription of this connection.
#[derive(Debug)]
pub(super) struct Subscription {
    /// The presence user id used there (presence channels only).
    pub(super) user_id: Option<String>,
    /// Joined implicitly at sign-in (`#server-to-user-`), not yet confirmed to the client.
    pub(super) implicit: bool,
}

/// A connection's subscriptions: a small vector (most connections have a handful), sized
/// exactly so an idle connection carries no spare capacity.
#[derive(Debug, Default)]
pub(super) struct Subscriptions(Vec<(String, Subscription)>);

impl Subscriptions {
    pub(super) fn position(&self, name: &str) -> Option<usize> {
        self.0.iter().position(|(n, _)| n == name)
    }

    pub(super) fn get(&self, name: &str) -> Option<&Subscription> {
        self.position(name).map(|i| &self.0[i].1)
    }

    pub(super) fn get_mut(&mut self, name: &str) -> Option<&mut Subscription> {
        self.position(name).map(|i| &mut self.0[i].1)
    }

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    pub(super) fn insert(&mut self, name: String, sub: Subscription) {
        match self.position(&name) {
            Some(i) => self.0[i].1 = sub,
            None => {
                self.0.reserve_exact(1);
                self.0.push((name, sub));
            }
        }
    }

    pub(super) fn remove(&mut self, name: &str) -> Option<Subscription> {
        self.position(name).map(|i| self.0.swap_remove(i).1)
    }

    pub(super) fn names(&self) -> Vec<String> {
        self.0.iter().map(|(n, _)| n.clone()).collect()
    }
}
