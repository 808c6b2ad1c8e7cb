//! Places for work that may not all run at once, due work first.
//!
//! Two limits use it: reconciles of each kind (`--concurrent-reconciles`) and requests in flight
//! to the API server (`--api-max-in-flight`). A plain limit serves in arrival order, so a
//! thousand runs requested at once put every scheduled fire and every hand-off that falls due
//! meanwhile behind them: at 1,000 sequences a fire waited 24 s that way. Here due work may
//! take every place and other work at most half of them, so due work never waits behind more
//! than that half.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Whether work is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Priority {
    /// A run in progress (its hand-offs, its step results), a scheduled fire whose time has
    /// come, and everything that is not a reconcile (watches, the leader's lease, Events).
    Due,
    /// A manual request for a new run, a check of an idle object.
    Other,
}

impl Priority {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Priority::Due => "due",
            Priority::Other => "other",
        }
    }
}

tokio::task_local! {
    /// The priority of the reconcile being polled: its requests to the API server wait for a
    /// place with it.
    static CURRENT: Priority;
}

/// Runs `work` with `priority` as the priority of the requests it makes.
pub(crate) async fn with_priority<F: Future>(priority: Priority, work: F) -> F::Output {
    CURRENT.scope(priority, work).await
}

/// The priority of the work being polled now; due outside any reconcile.
pub(crate) fn current() -> Priority {
    CURRENT.try_with(|p| *p).unwrap_or(Priority::Due)
}

/// A limit on work at once; none when built with 0.
pub(crate) struct Admission {
    /// Every piece of work takes one.
    places: Option<Arc<Semaphore>>,
    /// What other work may hold of them.
    others: Option<Arc<Semaphore>>,
}

/// A place, held for as long as the work lasts.
pub(crate) struct Ticket {
    _place: Option<OwnedSemaphorePermit>,
    _other: Option<OwnedSemaphorePermit>,
}

impl Admission {
    /// `limit` at once, other work at most half of them (at least one); 0 for no limit.
    pub(crate) fn new(limit: usize) -> Self {
        if limit == 0 {
            return Admission {
                places: None,
                others: None,
            };
        }
        Admission {
            places: Some(Arc::new(Semaphore::new(limit))),
            others: Some(Arc::new(Semaphore::new(limit.div_ceil(2)))),
        }
    }

    /// Waits for a place. Places are given in the order asked for (tokio's semaphore is
    /// fair), so other work first waits for its share and then in line with due work.
    pub(crate) fn enter(&self, priority: Priority) -> impl Future<Output = Ticket> + use<> {
        let others = match priority {
            Priority::Other => self.others.clone(),
            Priority::Due => None,
        };
        let places = self.places.clone();
        async move {
            // Never closed, so acquiring cannot fail.
            let other = match others {
                Some(others) => others.acquire_owned().await.ok(),
                None => None,
            };
            let place = match places {
                Some(places) => places.acquire_owned().await.ok(),
                None => None,
            };
            Ticket {
                _place: place,
                _other: other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    #[test]
    fn other_work_leaves_half_the_places_to_due_work() {
        let admission = Admission::new(4);
        let others: Vec<_> = (0..2)
            .map(|_| admission.enter(Priority::Other).now_or_never().unwrap())
            .collect();
        // A third piece of other work waits, with places free...
        let mut third = Box::pin(admission.enter(Priority::Other));
        assert!((&mut third).now_or_never().is_none());
        // ...which due work takes at once.
        let due: Vec<_> = (0..2)
            .map(|_| admission.enter(Priority::Due).now_or_never().unwrap())
            .collect();
        // Every place is taken now: more due work waits too.
        assert!(admission.enter(Priority::Due).now_or_never().is_none());
        drop(others);
        // The waiting other work gets its share back once a share is free.
        assert!(third.now_or_never().is_some());
        drop(due);
    }

    #[test]
    fn no_limit_admits_everything() {
        let admission = Admission::new(0);
        let tickets: Vec<_> = (0..1000)
            .map(|i| {
                let p = if i % 2 == 0 {
                    Priority::Due
                } else {
                    Priority::Other
                };
                admission.enter(p).now_or_never().unwrap()
            })
            .collect();
        assert_eq!(tickets.len(), 1000);
    }

    #[test]
    fn a_limit_of_one_still_admits_other_work() {
        let admission = Admission::new(1);
        let ticket = admission.enter(Priority::Other).now_or_never();
        assert!(ticket.is_some());
        assert!(admission.enter(Priority::Due).now_or_never().is_none());
    }

    #[tokio::test]
    async fn the_priority_is_that_of_the_work_being_polled() {
        assert_eq!(current(), Priority::Due);
        let seen = with_priority(Priority::Other, async {
            tokio::task::yield_now().await;
            current()
        })
        .await;
        assert_eq!(seen, Priority::Other);
        // Work spawned from it is not part of it.
        let spawned = with_priority(Priority::Other, async {
            tokio::spawn(async { current() }).await.unwrap()
        })
        .await;
        assert_eq!(spawned, Priority::Due);
    }
}
