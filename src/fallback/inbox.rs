//! An HTTP session's queue of requests: the request handlers put, the session's task takes.
//! Bounded (a handler waits for room), and a `VecDeque` behind a short mutex with a `Notify`,
//! so an idle session's queue holds no buffer: tokio's bounded mpsc allocates a 32-slot block
//! and cache-padded heads for every channel (about 1.5 KiB per idle session, measured with
//! `herald-bench http`), the same reason the outbox is built this way.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::{Notify, Semaphore};

#[derive(Debug)]
struct Shared<T> {
    queue: Mutex<Queue<T>>,
    /// An item was put.
    ready: Notify,
    /// Room left; closed when the receiver is gone.
    room: Semaphore,
}

#[derive(Debug)]
struct Queue<T> {
    items: VecDeque<T>,
    closed: bool,
}

impl<T> Shared<T> {
    fn queue(&self) -> MutexGuard<'_, Queue<T>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The putting side (cloned for every handler).
#[derive(Debug)]
pub struct Sender<T>(Arc<Shared<T>>);

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        Sender(self.0.clone())
    }
}

/// The taking side (the session's task).
#[derive(Debug)]
pub struct Receiver<T>(Arc<Shared<T>>);

/// A queue holding at most `capacity` items.
pub fn inbox<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        queue: Mutex::new(Queue {
            items: VecDeque::new(),
            closed: false,
        }),
        ready: Notify::new(),
        room: Semaphore::new(capacity),
    });
    (Sender(shared.clone()), Receiver(shared))
}

impl<T> Sender<T> {
    /// Puts `item`, waiting for room; gives it back when the receiver is gone.
    pub async fn send(&self, item: T) -> Result<(), T> {
        let Ok(permit) = self.0.room.acquire().await else {
            return Err(item);
        };
        let mut q = self.0.queue();
        if q.closed {
            return Err(item);
        }
        q.items.push_back(item);
        // The room comes back when the item is taken.
        permit.forget();
        drop(q);
        self.0.ready.notify_one();
        Ok(())
    }
}

impl<T> Receiver<T> {
    /// Takes the oldest item, waiting for one. Cancel-safe.
    pub async fn recv(&mut self) -> T {
        loop {
            {
                let mut q = self.0.queue();
                if let Some(item) = q.items.pop_front() {
                    if q.items.is_empty() {
                        q.items = VecDeque::new();
                    }
                    drop(q);
                    self.0.room.add_permits(1);
                    return item;
                }
            }
            // `notify_one` keeps a permit when nobody waits, so a put between the check above
            // and this wait is not missed.
            self.0.ready.notified().await;
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let items = {
            let mut q = self.0.queue();
            q.closed = true;
            std::mem::take(&mut q.items)
        };
        self.0.room.close();
        // Dropped outside the lock: an item may own a socket or a response feed.
        drop(items);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lets the other tasks of this (single-threaded) test runtime run until they wait.
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn bounded_in_order_and_closed_with_the_receiver() {
        let (tx, mut rx) = inbox(2);
        tx.send(1).await.unwrap();
        tx.send(2).await.unwrap();
        // Full: the third waits until an item is taken.
        let third = tokio::spawn({
            let tx = tx.clone();
            async move { tx.send(3).await }
        });
        settle().await;
        assert!(!third.is_finished());
        assert_eq!(rx.recv().await, 1);
        assert_eq!(third.await.unwrap(), Ok(()));
        assert_eq!(rx.recv().await, 2);
        assert_eq!(rx.recv().await, 3);
        // A waiting receiver is woken by a later put.
        let later = tokio::spawn(async move {
            let v = rx.recv().await;
            (v, rx)
        });
        tx.send(4).await.unwrap();
        let (v, rx) = later.await.unwrap();
        assert_eq!(v, 4);
        drop(rx);
        assert_eq!(tx.send(5).await, Err(5));
    }

    #[tokio::test]
    async fn a_waiting_sender_gets_its_item_back_when_the_receiver_goes() {
        let (tx, rx) = inbox(1);
        tx.send("a").await.unwrap();
        let waiting = tokio::spawn({
            let tx = tx.clone();
            async move { tx.send("b").await }
        });
        settle().await;
        drop(rx);
        assert_eq!(waiting.await.unwrap(), Err("b"));
    }
}
