//! The bounded in-memory queue between the collection loop and the InfluxDB sink.
//!
//! The collection loop must never block on a slow database, and memory must stay bounded on a
//! host that runs for months. So the queue has a fixed capacity and, when full, drops the
//! *oldest* item to make room (the newest data is the most useful to a controller) and counts
//! every drop. [`SharedQueue`] wraps it for the two tasks with a `Notify` to wake the sink.
//! The queue is model-checked against a `VecDeque` with proptest below.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// A FIFO with a capacity that drops the oldest item on overflow, counting drops.
#[derive(Debug)]
pub struct BoundedQueue<T> {
    items: VecDeque<T>,
    cap: usize,
    dropped: u64,
}

impl<T> BoundedQueue<T> {
    /// An empty queue holding at most `cap` items (at least 1).
    pub fn new(cap: usize) -> Self {
        Self {
            items: VecDeque::new(),
            cap: cap.max(1),
            dropped: 0,
        }
    }

    /// Appends an item; returns the item dropped to make room, if any.
    pub fn push(&mut self, item: T) -> Option<T> {
        let dropped = if self.items.len() >= self.cap {
            self.dropped += 1;
            self.items.pop_front()
        } else {
            None
        };
        self.items.push_back(item);
        dropped
    }

    /// Removes and returns up to `n` items from the front, oldest first.
    pub fn take(&mut self, n: usize) -> Vec<T> {
        let n = n.min(self.items.len());
        self.items.drain(..n).collect()
    }

    /// Number of queued items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the queue is empty.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Items dropped on overflow since creation.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

/// A [`BoundedQueue`] shared between the producer (collection loop) and the consumer (sink task).
#[derive(Debug, Clone)]
pub struct SharedQueue<T> {
    /// The queue; held only for the short push/take, never across an await.
    inner: Arc<Mutex<BoundedQueue<T>>>,
    /// Wakes the consumer when a push makes the queue reach its batch size or on flush.
    notify: Arc<Notify>,
}

impl<T> SharedQueue<T> {
    /// A shared queue of capacity `cap`.
    pub fn new(cap: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(BoundedQueue::new(cap))),
            notify: Arc::new(Notify::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BoundedQueue<T>> {
        // A panic while holding this lock leaves a queue that is still structurally valid.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Pushes items; returns how many old items were dropped to make room.
    pub fn push_all(&self, items: impl IntoIterator<Item = T>) -> u64 {
        let mut q = self.lock();
        let n = items.into_iter().filter_map(|i| q.push(i)).count() as u64;
        drop(q);
        self.notify.notify_one();
        n
    }

    /// Takes up to `n` items.
    pub fn take(&self, n: usize) -> Vec<T> {
        self.lock().take(n)
    }

    /// Queued items.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits for the next push.
    pub async fn notified(&self) {
        self.notify.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Push(u32),
        Take(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => any::<u32>().prop_map(Op::Push),
            1 => (0usize..6).prop_map(Op::Take),
        ]
    }

    proptest! {
        /// The queue behaves like a VecDeque that pops its front whenever a push would exceed
        /// the capacity, and counts exactly those pops.
        #[test]
        fn matches_vecdeque_model(cap in 1usize..8, ops in proptest::collection::vec(op(), 0..200)) {
            let mut q = BoundedQueue::new(cap);
            let mut model: VecDeque<u32> = VecDeque::new();
            let mut model_dropped = 0u64;
            for o in ops {
                match o {
                    Op::Push(v) => {
                        let expect = if model.len() == cap { model_dropped += 1; model.pop_front() } else { None };
                        model.push_back(v);
                        prop_assert_eq!(q.push(v), expect);
                    }
                    Op::Take(n) => {
                        let k = n.min(model.len());
                        let expect: Vec<u32> = model.drain(..k).collect();
                        prop_assert_eq!(q.take(n), expect);
                    }
                }
                prop_assert_eq!(q.len(), model.len());
                prop_assert!(q.len() <= cap);
                prop_assert_eq!(q.dropped(), model_dropped);
                prop_assert_eq!(q.is_empty(), model.is_empty());
            }
        }
    }

    #[test]
    fn shared_queue_is_send_sync() {
        fn check<T: Send + Sync>() {}
        check::<SharedQueue<String>>();
    }
}
