//! One load per subject at a time.
//!
//! When many readers miss the key cache for the same subject at once, each would take a
//! database connection to read the same row; with a small vault pool the last of them wait
//! past the pool's timeout. [`SingleFlight::turn`] makes them queue per subject instead: the
//! first loads and caches the key, the others find it in the cache when their turn comes.

use kring_domain::access::Subject;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

/// Per-subject turns; entries live only while someone holds or waits for a turn.
#[derive(Default)]
pub(super) struct SingleFlight {
    turns: Mutex<HashMap<Subject, Arc<AsyncMutex<()>>>>,
}

/// A subject's turn: held while its key is loaded, released (and forgotten when nobody else
/// waits) on drop.
pub(super) struct Turn<'a> {
    flight: &'a SingleFlight,
    subject: Subject,
    guard: Option<OwnedMutexGuard<()>>,
}

impl SingleFlight {
    /// Waits until no one else is loading `subject`'s key.
    pub async fn turn(&self, subject: Subject) -> Turn<'_> {
        let lock = {
            let mut turns = self
                .turns
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            Arc::clone(turns.entry(subject).or_default())
        };
        let guard = lock.lock_owned().await;
        Turn {
            flight: self,
            subject,
            guard: Some(guard),
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.turns
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut turns = self
            .flight
            .turns
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Release first, then forget the entry when only the map still refers to it (nobody
        // holds or awaits it); a reader that cloned it meanwhile keeps it alive.
        drop(self.guard.take());
        if let Some(lock) = turns.get(&self.subject) {
            if Arc::strong_count(lock) == 1 {
                turns.remove(&self.subject);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn one_turn_per_subject_at_a_time_and_no_entry_left_behind() {
        let flight = Arc::new(SingleFlight::default());
        let subject = Subject::Person(kring_domain::PersonId::generate());
        let inside = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let (flight, inside, most) = (flight.clone(), inside.clone(), most.clone());
            tasks.push(tokio::spawn(async move {
                let _turn = flight.turn(subject).await;
                let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(1)).await;
                inside.fetch_sub(1, Ordering::SeqCst);
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 1);
        assert_eq!(flight.len(), 0);
    }

    #[tokio::test]
    async fn different_subjects_do_not_wait_for_each_other() {
        let flight = SingleFlight::default();
        let a = flight
            .turn(Subject::Person(kring_domain::PersonId::generate()))
            .await;
        let b = tokio::time::timeout(
            Duration::from_secs(5),
            flight.turn(Subject::Person(kring_domain::PersonId::generate())),
        )
        .await
        .expect("another subject's turn is free");
        assert_eq!(flight.len(), 2);
        drop((a, b));
        assert_eq!(flight.len(), 0);
    }
}
