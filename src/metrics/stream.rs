//! `/metrics` as a stream of chunks: the encoder writes into [`Chunks`] on a blocking thread,
//! and the response body sends each chunk as it comes, so a scrape's text is never one string
//! (megabytes at 10,000 objects) and the response starts before the encoder ends.
//!
//! The encoder never waits for the body. It holds each counter family's lock while it writes
//! the family, and a reconcile that creates a series waits for that lock on a runtime worker;
//! the body needs a worker to be written. An encoder that waited for room in the channel
//! (as it once did) hung the whole controller as soon as every worker waited for the lock: at
//! 8,000 objects, scraped while their first reconciles created their series, for good, since
//! the workers also drive the timers a send timeout needs. So the encoder runs to its end, and
//! what the scraper has not taken yet waits in the channel: with a scraper that keeps up, a few
//! chunks; with one that stalls, the whole text, in chunks, until its connection ends.

use bytes::Bytes;
use tokio::sync::mpsc;

/// How much text a chunk holds before it is sent.
const CHUNK: usize = 64 * 1024;

/// A `fmt::Write` that sends what is written in chunks of about [`CHUNK`] bytes, without ever
/// waiting; writes fail once the receiver is gone, which stops the encoder.
pub(crate) struct Chunks {
    buffer: String,
    sender: mpsc::UnboundedSender<Bytes>,
}

impl Chunks {
    pub(crate) fn new(sender: mpsc::UnboundedSender<Bytes>) -> Chunks {
        Chunks {
            buffer: String::with_capacity(CHUNK),
            sender,
        }
    }

    fn send(&mut self) -> std::fmt::Result {
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buffer,
            String::with_capacity(CHUNK),
        ));
        self.sender.send(chunk).map_err(|_| std::fmt::Error)
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
        let (sender, mut receiver) = mpsc::unbounded_channel();
        let line = "syncseq_runs_total{namespace=\"revops\",name=\"crm\"} 1\n";
        let lines = 10_000;
        let writer = tokio::task::spawn_blocking(move || {
            let mut out = Chunks::new(sender);
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
        let (sender, receiver) = mpsc::unbounded_channel();
        drop(receiver);
        let result = tokio::task::spawn_blocking(move || {
            let mut out = Chunks::new(sender);
            out.write_str(&"x".repeat(CHUNK))
        })
        .await
        .unwrap();
        assert_eq!(result, Err(std::fmt::Error));
    }
}
