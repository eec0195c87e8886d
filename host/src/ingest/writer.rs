//! Group commit: concurrent ingests share database transactions. Submissions queue on a
//! channel; one writer task takes what is queued (up to a batch size), lingers briefly for more
//! only when there is evidence of concurrency (something else was already waiting), commits the
//! batch in one `Store::ingest` transaction and answers every submitter. A caller's answer —
//! and so its 202 — comes only after its event's transaction committed.
//!
//! If a batch fails, its items are retried one transaction each, so one bad item sinks only
//! itself.

use crate::store::{IngestItem, IngestOutcome, IngestRouting, Store, StoreError, StoreResult};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

#[derive(Debug, Clone, Copy)]
pub struct GroupCommit {
    /// Most events in one transaction.
    pub max_batch: usize,
    /// How long to wait for more events once a batch has started to form.
    pub linger: Duration,
}

impl Default for GroupCommit {
    fn default() -> Self {
        Self {
            max_batch: 4096,
            linger: Duration::from_millis(1),
        }
    }
}

struct Submission {
    items: Vec<IngestItem>,
    reply: oneshot::Sender<Vec<StoreResult<IngestOutcome>>>,
}

/// The handle ingest submits to; cheap to clone.
#[derive(Clone)]
pub struct IngestWriter {
    queue: mpsc::Sender<Submission>,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("the ingest writer has stopped")]
pub struct WriterStopped;

impl IngestWriter {
    /// Start the writer; `routing` answers, per batch, which journeys and buckets the events
    /// reach.
    pub fn spawn(
        store: Arc<dyn Store>,
        routing: Arc<dyn IngestRouting>,
        config: GroupCommit,
    ) -> Self {
        let (queue, receiver) = mpsc::channel(config.max_batch * 8);
        tokio::spawn(write_loop(store, routing, config, receiver));
        Self { queue }
    }

    /// Commit `items` (in one transaction or shared with concurrent submissions); outcomes in
    /// input order.
    pub async fn submit(
        &self,
        items: Vec<IngestItem>,
    ) -> Result<Vec<StoreResult<IngestOutcome>>, WriterStopped> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Submission { items, reply })
            .await
            .map_err(|_| WriterStopped)?;
        answer.await.map_err(|_| WriterStopped)
    }
}

async fn write_loop(
    store: Arc<dyn Store>,
    routing: Arc<dyn IngestRouting>,
    config: GroupCommit,
    mut receiver: mpsc::Receiver<Submission>,
) {
    while let Some(first) = receiver.recv().await {
        let mut batch = vec![first];
        let mut count = batch[0].items.len();
        while count < config.max_batch {
            match receiver.try_recv() {
                Ok(next) => {
                    count += next.items.len();
                    batch.push(next);
                }
                Err(_) => break,
            }
        }
        // Linger only when others were already queued: a lone caller is not kept waiting.
        if batch.len() > 1 && count < config.max_batch && !config.linger.is_zero() {
            let deadline = tokio::time::Instant::now() + config.linger;
            while count < config.max_batch {
                match tokio::time::timeout_at(deadline, receiver.recv()).await {
                    Ok(Some(next)) => {
                        count += next.items.len();
                        batch.push(next);
                    }
                    _ => break,
                }
            }
        }
        commit(store.as_ref(), &routing, batch).await;
    }
}

async fn commit(store: &dyn Store, routing: &Arc<dyn IngestRouting>, batch: Vec<Submission>) {
    let items: Vec<IngestItem> = batch.iter().flat_map(|s| s.items.iter().cloned()).collect();
    match store.ingest(items, routing.clone()).await {
        Ok(outcomes) => {
            let mut outcomes = outcomes.into_iter();
            for submission in batch {
                let mine = outcomes
                    .by_ref()
                    .take(submission.items.len())
                    .map(Ok)
                    .collect();
                submission.reply.send(mine).ok();
            }
        }
        Err(error) if batch.len() == 1 && batch[0].items.len() == 1 => {
            let submission = batch.into_iter().next().expect("one submission");
            submission.reply.send(vec![Err(error)]).ok();
        }
        Err(error) => {
            tracing::warn!(
                "a group commit of {} submissions failed, retrying items alone: {error}",
                batch.len()
            );
            for submission in batch {
                let mut results = Vec::with_capacity(submission.items.len());
                for item in submission.items {
                    results.push(single(store, routing, item).await);
                }
                submission.reply.send(results).ok();
            }
        }
    }
}

async fn single(
    store: &dyn Store,
    routing: &Arc<dyn IngestRouting>,
    item: IngestItem,
) -> StoreResult<IngestOutcome> {
    let mut outcomes = store.ingest(vec![item], routing.clone()).await?;
    outcomes.pop().ok_or_else(|| {
        StoreError::corrupt(
            "ingest outcome",
            "the store answered no outcome for one item",
        )
    })
}
