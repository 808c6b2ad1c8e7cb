//! A deadline on every request that should be answered promptly: without it a connection that
//! was accepted and never answered (a hung API server, a load balancer in between) holds a
//! reconcile, and the object it works on, forever. kube's client has no such timeout by
//! default. Watches and followed logs are long-lived by design and are left alone; the
//! watcher has its own idle timeout.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Request;
use tower::{BoxError, Layer, Service};

/// What a request that got no answer in time fails with.
#[derive(Debug, thiserror::Error)]
#[error("the API server did not answer {method} {path} within {seconds} s")]
pub(super) struct TimedOut {
    method: http::Method,
    path: String,
    seconds: u64,
}

#[derive(Clone)]
pub(crate) struct DeadlineLayer {
    timeout: Duration,
}

impl DeadlineLayer {
    pub(crate) fn new(timeout: Duration) -> Self {
        DeadlineLayer { timeout }
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Deadline {
            inner,
            timeout: self.timeout,
        }
    }
}

#[derive(Clone)]
pub(crate) struct Deadline<S> {
    inner: S,
    timeout: Duration,
}

/// Watches (`watch=true`) and followed logs (`follow=true`) stream for as long as they last.
fn long_lived(uri: &http::Uri) -> bool {
    uri.query().is_some_and(|q| {
        q.split('&')
            .any(|kv| matches!(kv, "watch=true" | "watch=1" | "follow=true" | "follow=1"))
    })
}

impl<S, B> Service<Request<B>> for Deadline<S>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if long_lived(req.uri()) {
            let call = self.inner.call(req);
            return Box::pin(async move { call.await.map_err(Into::into) });
        }
        let timed_out = TimedOut {
            method: req.method().clone(),
            path: req.uri().path().to_string(),
            seconds: self.timeout.as_secs(),
        };
        let call = tokio::time::timeout(self.timeout, self.inner.call(req));
        Box::pin(async move {
            match call.await {
                Ok(answer) => answer.map_err(Into::into),
                Err(_) => Err(Box::new(timed_out) as BoxError),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use tower::ServiceExt;

    use super::*;

    /// The inner service never answers.
    async fn send(uri: &str) -> Result<(), BoxError> {
        let inner =
            tower::service_fn(|_: Request<()>| std::future::pending::<Result<(), BoxError>>());
        let svc = DeadlineLayer::new(Duration::from_secs(30)).layer(inner);
        let req = Request::builder().uri(uri).body(()).unwrap();
        svc.oneshot(req).await
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_without_an_answer_fails_at_the_deadline_saying_which() {
        let started = tokio::time::Instant::now();
        let err = send("/apis/batch/v1/namespaces/a/jobs?labelSelector=x")
            .await
            .unwrap_err();
        assert_eq!(started.elapsed(), Duration::from_secs(30));
        assert_eq!(
            err.to_string(),
            "the API server did not answer GET /apis/batch/v1/namespaces/a/jobs within 30 s"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn watches_and_followed_logs_have_no_deadline() {
        for uri in [
            "/api/v1/namespaces/a/pods?watch=true&resourceVersion=1",
            "/api/v1/namespaces/a/pods/p/log?follow=true",
        ] {
            let waited = tokio::time::timeout(Duration::from_secs(3600), send(uri)).await;
            assert!(waited.is_err(), "{uri} was cut by the deadline");
        }
    }
}
