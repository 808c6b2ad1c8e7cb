//! The limit on requests in flight, due work first (`crate::admission`): a request waits for a
//! place with the priority of the reconcile that makes it, so the requests of a burst of manual
//! runs hold at most half the places and a fire's or a hand-off's requests find one.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower::{BoxError, Layer, Service, ServiceExt};

use crate::admission::{self, Admission};

#[derive(Clone)]
pub(crate) struct PlacesLayer {
    places: Arc<Admission>,
}

impl PlacesLayer {
    /// `in_flight` requests at once (at least one).
    pub(crate) fn new(in_flight: usize) -> Self {
        PlacesLayer {
            places: Arc::new(Admission::new(in_flight.max(1))),
        }
    }
}

impl<S> Layer<S> for PlacesLayer {
    type Service = Places<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Places {
            inner,
            places: self.places.clone(),
        }
    }
}

#[derive(Clone)]
pub(crate) struct Places<S> {
    inner: S,
    places: Arc<Admission>,
}

impl<S, R> Service<R> for Places<S>
where
    S: Service<R> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    R: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    /// Ready at once: the place, and then the inner service's readiness, are waited for in
    /// the call, so that a request holds neither while it waits for the other.
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: R) -> Self::Future {
        // Read while the caller is being polled: the priority of the reconcile making it.
        let entered = self.places.enter(admission::current());
        let inner = self.inner.clone();
        Box::pin(async move {
            let _ticket = entered.await;
            inner.oneshot(req).await.map_err(Into::into)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::{Priority, with_priority};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// An inner service that answers after 100 ms and counts its calls in flight.
    fn service(
        in_flight: Arc<AtomicUsize>,
        most: Arc<AtomicUsize>,
    ) -> Places<impl Service<u32, Response = u32, Error = BoxError, Future: Send> + Clone + Send>
    {
        let inner = tower::service_fn(move |n: u32| {
            let (in_flight, most) = (in_flight.clone(), most.clone());
            async move {
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, BoxError>(n)
            }
        });
        PlacesLayer::new(4).layer(inner)
    }

    #[tokio::test(start_paused = true)]
    async fn a_due_request_passes_a_burst_of_other_ones() {
        let (in_flight, most) = (Arc::default(), Arc::default());
        let svc = service(Arc::clone(&in_flight), Arc::clone(&most));
        let started = tokio::time::Instant::now();
        // 40 requests of other work, then one of due work.
        let burst: Vec<_> = (0..40)
            .map(|n| {
                let svc = svc.clone();
                tokio::spawn(with_priority(Priority::Other, svc.oneshot(n)))
            })
            .collect();
        tokio::task::yield_now().await;
        let due = svc.clone().oneshot(99).await.unwrap();
        assert_eq!(due, 99);
        // Other work holds two of the four places: due work is answered in the first round.
        assert_eq!(started.elapsed(), Duration::from_millis(100));
        for (n, b) in burst.into_iter().enumerate() {
            assert_eq!(b.await.unwrap().unwrap(), n as u32);
        }
        // 40 requests, two at a time, 100 ms each.
        assert_eq!(started.elapsed(), Duration::from_millis(2000));
        assert_eq!(most.load(Ordering::SeqCst), 3);
    }
}
