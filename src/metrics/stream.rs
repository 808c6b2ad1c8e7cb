//! `/metrics` as a stream of chunks: the encoder writes into [`Chunks`] on a blocking thread,
//! and the response body sends each chunk as it fills, so a scrape holds a few chunks at a
//! time instead of the whole text (megabytes at 10,000 objects).

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

/// How much text a chunk holds before it is sent.
const CHUNK: usize = 64 * 1024;

/// Chunks encoded but not yet sent: with [`CHUNK`], what a scrape holds at most.
pub(crate) const CHUNKS_IN_FLIGHT: usize = 4;

/// How long the encoder waits for room in the channel. The encoder holds each counter
/// family's lock while it writes the family, and a reconcile that creates a series waits for
/// it: a scraper that stops reading loses its scrape rather than stalling the reconciles.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// A `fmt::Write` that sends what is written in chunks of about [`CHUNK`] bytes. Runs on a
/// thread that may block (`spawn_blocking`); writes fail once the receiver is gone or has not
/// taken a chunk for [`SEND_TIMEOUT`], which stops the encoder.
pub(crate) struct Chunks {
    buffer: String,
    sender: mpsc::Sender<Bytes>,
    runtime: tokio::runtime::Handle,
}

impl Chunks {
    /// A writer into `sender`, waiting on `runtime`'s timers.
    pub(crate) fn new(sender: mpsc::Sender<Bytes>, runtime: tokio::runtime::Handle) -> Chunks {
        Chunks {
            buffer: String::with_capacity(CHUNK),
            sender,
            runtime,
        }
    }

    fn send(&mut self) -> std::fmt::Result {
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buffer,
            String::with_capacity(CHUNK),
        ));
        let sent = self
            .runtime
            .block_on(self.sender.send_timeout(chunk, SEND_TIMEOUT));
        sent.map_err(|_| std::fmt::Error)
    }

    /// Sends what is left.
    pub(crate) fn finish(mut self) -> std::fmt::Result {
        match self.buffer.is_empty() {
            true => Ok(()),
            false => self.send(),
        }
    }
}

impl std::fmt::Write for Chunks {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.buffer.push_str(s);
        match self.buffer.len() >= CHUNK {
            true => self.send(),
            false => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write;

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn the_text_arrives_whole_in_bounded_chunks() {
        let (sender, mut receiver) = mpsc::channel(CHUNKS_IN_FLIGHT);
        let runtime = tokio::runtime::Handle::current();
        let line = "syncseq_runs_total{namespace=\"revops\",name=\"crm\"} 1\n";
        let lines = 10_000;
        let writer = tokio::task::spawn_blocking(move || {
            let mut out = Chunks::new(sender, runtime);
            for _ in 0..lines {
                out.write_str(line)?;
            }
            out.finish()
        });
        let mut text = String::new();
        let mut chunks = 0;
        while let Some(chunk) = receiver.recv().await {
            assert!(chunk.len() < CHUNK + line.len(), "{}", chunk.len());
            text.push_str(std::str::from_utf8(&chunk).unwrap());
            chunks += 1;
        }
        assert_eq!(writer.await.unwrap(), Ok(()));
        assert_eq!(text, line.repeat(lines));
        assert!(chunks >= line.len() * lines / CHUNK, "{chunks} chunks");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_scraper_gone_stops_the_encoder() {
        let (sender, receiver) = mpsc::channel(CHUNKS_IN_FLIGHT);
        drop(receiver);
        let runtime = tokio::runtime::Handle::current();
        let result = tokio::task::spawn_blocking(move || {
            let mut out = Chunks::new(sender, runtime);
            out.write_str(&"x".repeat(CHUNK))
        })
        .await
        .unwrap();
        assert_eq!(result, Err(std::fmt::Error));
    }
}
