//! A counter with an optional cap, for connections per node and per app.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Counts holders and refuses new ones beyond a cap.
#[derive(Debug, Default)]
pub struct CappedCounter(AtomicUsize);

impl CappedCounter {
    /// Counts one more unless the count has reached `max` (`None`: no cap).
    pub fn try_acquire(&self, max: Option<usize>) -> bool {
        let prev = self.0.fetch_add(1, Ordering::AcqRel);
        if max.is_some_and(|m| prev >= m) {
            self.0.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Forgets one counted by [`CappedCounter::try_acquire`].
    pub fn release(&self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }

    /// The current count.
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_is_enforced_and_released() {
        let c = CappedCounter::default();
        assert!(c.try_acquire(Some(2)));
        assert!(c.try_acquire(Some(2)));
        assert!(!c.try_acquire(Some(2)));
        assert_eq!(c.get(), 2);
        c.release();
        assert!(c.try_acquire(Some(2)));
        assert!(c.try_acquire(None));
        assert_eq!(c.get(), 3);
    }
}
