//! Group commit: concurrent submissions share one store transaction.
//!
//! Submissions queue on a channel; one task takes what is queued (up to a batch size), lingers
//! briefly for more only when there is evidence of concurrency (something else was already
//! waiting), commits the batch with one [`Batch::commit`] and answers every submitter. A
//! submitter's answer comes only after its items' transaction committed.
//!
//! Up to [`GroupCommit::in_flight`] batches commit at once, so the next batch is formed while
//! the one before it commits. A store with several connections (PostgreSQL) commits it beside
//! that one. A store that commits one transaction at a time (SQLite's writer thread,
//! [`GroupCommit::serial_store`]) could only queue it, so it keeps gathering submissions until
//! the one before it has committed, then is handed over: the writer never idles while its
//! submitters' answers travel back and their next requests arrive, and each of its transactions
//! takes everything that arrived meanwhile. Larger transactions are cheaper per item: a page
//! that several of their rows change is written once.
//!
//! The batch reaches the store as one shared slice, so forming it copies no item; only if it
//! fails are its items cloned, to be retried one transaction each, so one bad item sinks only
//! itself. Ingest ([`crate::ingest::writer`]) and activation commits
//! ([`crate::journeys::executor`]) both commit through it. It knows nothing of what the items
//! are: that is the [`Batch`] implementation's business.

use crate::store::{StoreError, StoreResult};
use async_trait::async_trait;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};

/// How batches form.
#[derive(Debug, Clone, Copy)]
pub struct GroupCommit {
    /// Most items in one transaction.
    pub max_batch: usize,
    /// How long to wait for more items once a batch has started to form.
    pub linger: Duration,
    /// Most batches committing at once (at least 1).
    pub in_flight: usize,
    /// The store commits one transaction at a time: a batch formed while another commits
    /// gathers until that one has committed (or it is full) instead of being handed over at
    /// once.
    pub serial_store: bool,
}

impl Default for GroupCommit {
    fn default() -> Self {
        Self {
            max_batch: 4096,
            linger: Duration::from_millis(1),
            in_flight: 2,
            serial_store: false,
        }
    }
}

/// What one transaction commits: items in, one outcome per item out, in order.
#[async_trait]
pub trait Batch: Send + Sync + 'static {
    type Item: Clone + Send + Sync + 'static;
    type Outcome: Send + 'static;

    /// Commit `items` in one transaction.
    async fn commit(&self, items: Arc<[Self::Item]>) -> StoreResult<Vec<Self::Outcome>>;
}

struct Submission<B: Batch> {
    items: Vec<B::Item>,
    reply: oneshot::Sender<Vec<StoreResult<B::Outcome>>>,
}

/// The handle submitters use; cheap to clone.
pub struct GroupCommitter<B: Batch> {
    queue: mpsc::Sender<Submission<B>>,
}

impl<B: Batch> Clone for GroupCommitter<B> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("the group-commit writer has stopped")]
pub struct WriterStopped;

impl<B: Batch> GroupCommitter<B> {
    /// Start the committing task (on the current tokio runtime).
    pub fn spawn(batch: B, config: GroupCommit) -> Self {
        let (queue, receiver) = mpsc::channel(config.max_batch.max(1) * 8);
        tokio::spawn(commit_loop(Arc::new(batch), config, receiver));
        Self { queue }
    }

    /// Commit `items` (in one transaction, or shared with concurrent submissions); outcomes in
    /// input order.
    pub async fn submit(
        &self,
        items: Vec<B::Item>,
    ) -> Result<Vec<StoreResult<B::Outcome>>, WriterStopped> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Submission { items, reply })
            .await
            .map_err(|_| WriterStopped)?;
        answer.await.map_err(|_| WriterStopped)
    }

    /// Commit one item; its outcome.
    pub async fn submit_one(
        &self,
        item: B::Item,
    ) -> Result<StoreResult<B::Outcome>, WriterStopped> {
        let mut outcomes = self.submit(vec![item]).await?;
        Ok(outcomes.pop().unwrap_or_else(|| Err(missing_outcome())))
    }
}

/// Batches still committing, and a signal each time one ends.
#[derive(Default)]
struct Committing {
    batches: AtomicUsize,
    ended: Notify,
}

impl Committing {
    /// Resolves when no batch is committing; whether it had to wait.
    async fn until_idle(&self) -> bool {
        let mut waited = false;
        loop {
            // Registered before the check, so an end between the two is not missed.
            let ended = self.ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            if self.batches.load(Ordering::Acquire) == 0 {
                return waited;
            }
            waited = true;
            ended.await;
        }
    }
}

async fn commit_loop<B: Batch>(
    batch: Arc<B>,
    config: GroupCommit,
    mut receiver: mpsc::Receiver<Submission<B>>,
) {
    let max_batch = config.max_batch.max(1);
    let slots = Arc::new(Semaphore::new(config.in_flight.max(1)));
    let committing = Arc::new(Committing::default());
    loop {
        // Wait for a free slot before taking anything, so submissions queue (and batch) while
        // every slot is committing.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = receiver.recv().await else {
            break;
        };
        // A serial store would only queue this batch while another commits: it gathers what
        // arrives meanwhile instead, and is handed over when the store is free.
        let waited = config.serial_store && committing.until_idle().await;
        let mut count = first.items.len();
        let mut submissions = vec![first];
        while count < max_batch {
            match receiver.try_recv() {
                Ok(next) => {
                    count += next.items.len();
                    submissions.push(next);
                }
                Err(_) => break,
            }
        }
        // Linger only when others were already queued (a lone caller is not kept waiting) and
        // the batch has not just waited for a free store (which it would keep idle).
        if !waited && submissions.len() > 1 && count < max_batch && !config.linger.is_zero() {
            let deadline = tokio::time::Instant::now() + config.linger;
            while count < max_batch {
                match tokio::time::timeout_at(deadline, receiver.recv()).await {
                    Ok(Some(next)) => {
                        count += next.items.len();
                        submissions.push(next);
                    }
                    _ => break,
                }
            }
        }
        tracing::trace!(
            items = count,
            submissions = submissions.len(),
            "group commit"
        );
        let batch = batch.clone();
        let committing = committing.clone();
        committing.batches.fetch_add(1, Ordering::AcqRel);
        tokio::spawn(async move {
            commit(batch.as_ref(), submissions).await;
            committing.batches.fetch_sub(1, Ordering::AcqRel);
            committing.ended.notify_waiters();
            drop(slot);
        });
    }
}

async fn commit<B: Batch>(batch: &B, submissions: Vec<Submission<B>>) {
    let mut counts = Vec::with_capacity(submissions.len());
    let mut replies = Vec::with_capacity(submissions.len());
    let mut items = Vec::with_capacity(submissions.iter().map(|s| s.items.len()).sum());
    for submission in submissions {
        counts.push(submission.items.len());
        replies.push(submission.reply);
        items.extend(submission.items);
    }
    let items: Arc<[B::Item]> = items.into();
    let expected = items.len();
    let error = match batch.commit(items.clone()).await {
        Ok(outcomes) if outcomes.len() == expected => {
            let mut outcomes = outcomes.into_iter();
            for (reply, count) in replies.into_iter().zip(counts) {
                reply
                    .send(outcomes.by_ref().take(count).map(Ok).collect())
                    .ok();
            }
            return;
        }
        Ok(_) => missing_outcome(),
        Err(error) => error,
    };
    if expected == 1 {
        // Nothing to retry apart: the one item's error is its answer.
        let mut error = Some(error);
        for (reply, count) in replies.into_iter().zip(counts) {
            let answer = (0..count)
                .map(|_| Err(error.take().unwrap_or_else(missing_outcome)))
                .collect();
            reply.send(answer).ok();
        }
        return;
    }
    tracing::warn!("a group commit of {expected} items failed, retrying each alone: {error}");
    let mut items = items.iter();
    for (reply, count) in replies.into_iter().zip(counts) {
        let mut results = Vec::with_capacity(count);
        for item in items.by_ref().take(count) {
            let alone: Arc<[B::Item]> = Arc::new([item.clone()]);
            results.push(match batch.commit(alone).await {
                Ok(mut outcomes) if outcomes.len() == 1 => Ok(outcomes.remove(0)),
                Ok(_) => Err(missing_outcome()),
                Err(error) => Err(error),
            });
        }
        reply.send(results).ok();
    }
}

fn missing_outcome() -> StoreError {
    StoreError::corrupt(
        "group commit",
        "the store answered a different number of outcomes than items",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Records each transaction's items; an item equal to `poison` fails its transaction.
    struct Recorder {
        transactions: Mutex<Vec<Vec<u32>>>,
        poison: u32,
    }

    #[async_trait]
    impl Batch for Arc<Recorder> {
        type Item = u32;
        type Outcome = u32;

        async fn commit(&self, items: Arc<[u32]>) -> StoreResult<Vec<u32>> {
            // Give the other submitters time to queue behind this transaction.
            tokio::time::sleep(Duration::from_millis(5)).await;
            self.transactions.lock().unwrap().push(items.to_vec());
            if items.contains(&self.poison) {
                return Err(StoreError::Invalid(format!("{} is poison", self.poison)));
            }
            Ok(items.iter().map(|n| n * 10).collect())
        }
    }

    fn recorder(poison: u32) -> Arc<Recorder> {
        Arc::new(Recorder {
            transactions: Mutex::new(Vec::new()),
            poison,
        })
    }

    /// Waits for spawned submitters in spawn order (they run concurrently meanwhile).
    async fn answers<T>(handles: impl IntoIterator<Item = tokio::task::JoinHandle<T>>) -> Vec<T> {
        let mut answers = Vec::new();
        for handle in handles {
            answers.push(handle.await.unwrap());
        }
        answers
    }

    #[tokio::test]
    async fn given_concurrent_submitters_when_they_submit_at_once_then_they_share_transactions_and_each_gets_its_own_outcomes()
     {
        let recorder = recorder(u32::MAX);
        let committer = GroupCommitter::spawn(recorder.clone(), GroupCommit::default());

        let submissions: Vec<_> = (0..20u32)
            .map(|n| {
                let committer = committer.clone();
                tokio::spawn(async move { committer.submit(vec![2 * n, 2 * n + 1]).await })
            })
            .collect();
        for (n, answer) in answers(submissions).await.into_iter().enumerate() {
            let outcomes: Vec<u32> = answer.unwrap().into_iter().map(Result::unwrap).collect();
            let n = u32::try_from(n).unwrap();
            assert_eq!(outcomes, vec![20 * n, 20 * n + 10]);
        }
        let transactions = recorder.transactions.lock().unwrap();
        assert!(
            transactions.len() < 20,
            "20 submitters shared {} transactions",
            transactions.len()
        );
        assert_eq!(transactions.iter().map(Vec::len).sum::<usize>(), 40);
    }

    #[tokio::test]
    async fn given_a_batch_with_a_bad_item_when_it_fails_then_only_that_item_is_answered_with_the_error()
     {
        let recorder = recorder(7);
        let committer = GroupCommitter::spawn(recorder.clone(), GroupCommit::default());

        let submissions = [vec![1, 2], vec![7], vec![3]].map(|items| {
            let committer = committer.clone();
            tokio::spawn(async move { committer.submit(items).await.unwrap() })
        });
        let answers = answers(submissions).await;

        assert_eq!(
            answers[0]
                .iter()
                .map(|r| *r.as_ref().unwrap())
                .collect::<Vec<_>>(),
            vec![10, 20]
        );
        assert!(
            matches!(&answers[1][..], [Err(StoreError::Invalid(msg))] if msg.contains("poison"))
        );
        assert_eq!(*answers[2][0].as_ref().unwrap(), 30);
        assert!(
            recorder
                .transactions
                .lock()
                .unwrap()
                .iter()
                .any(|t| t == &vec![7]),
            "the bad item was retried alone"
        );
    }

    #[tokio::test]
    async fn given_a_lone_item_when_its_commit_fails_then_the_error_is_its_answer() {
        let committer = GroupCommitter::spawn(recorder(7), GroupCommit::default());
        let answer = committer.submit_one(7).await.unwrap();
        assert!(matches!(answer, Err(StoreError::Invalid(_))));
        assert_eq!(committer.submit_one(4).await.unwrap().unwrap(), 40);
    }

    /// Counts the commits running at once, each held open until `release` is notified.
    struct Overlap {
        running: std::sync::atomic::AtomicUsize,
        most: std::sync::atomic::AtomicUsize,
    }

    #[async_trait]
    impl Batch for Arc<Overlap> {
        type Item = u32;
        type Outcome = u32;

        async fn commit(&self, items: Arc<[u32]>) -> StoreResult<Vec<u32>> {
            use std::sync::atomic::Ordering::SeqCst;
            let now = self.running.fetch_add(1, SeqCst) + 1;
            self.most.fetch_max(now, SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            self.running.fetch_sub(1, SeqCst);
            Ok(items.to_vec())
        }
    }

    async fn most_commits_at_once(in_flight: usize) -> usize {
        let overlap = Arc::new(Overlap {
            running: 0.into(),
            most: 0.into(),
        });
        let committer = GroupCommitter::spawn(
            overlap.clone(),
            GroupCommit {
                max_batch: 1,
                in_flight,
                ..GroupCommit::default()
            },
        );
        let handles: Vec<_> = (0..6)
            .map(|n| {
                let committer = committer.clone();
                tokio::spawn(async move { committer.submit_one(n).await.unwrap().unwrap() })
            })
            .collect();
        assert_eq!(answers(handles).await, vec![0, 1, 2, 3, 4, 5]);
        overlap.most.load(std::sync::atomic::Ordering::SeqCst)
    }

    #[tokio::test]
    async fn given_slow_commits_then_at_most_in_flight_batches_commit_at_once() {
        assert_eq!(most_commits_at_once(1).await, 1);
        assert_eq!(most_commits_at_once(2).await, 2);
    }

    /// Items submitted one every 10 ms, the first alone, while each commit takes 100 ms
    /// (paused clock: deterministic); each transaction's items.
    async fn transactions_while_committing(serial_store: bool) -> Vec<Vec<u32>> {
        struct Slow(Mutex<Vec<Vec<u32>>>);
        #[async_trait]
        impl Batch for Arc<Slow> {
            type Item = u32;
            type Outcome = u32;
            async fn commit(&self, items: Arc<[u32]>) -> StoreResult<Vec<u32>> {
                tokio::time::sleep(Duration::from_millis(100)).await;
                self.0.lock().unwrap().push(items.to_vec());
                Ok(items.to_vec())
            }
        }
        let slow = Arc::new(Slow(Mutex::new(Vec::new())));
        let committer = GroupCommitter::spawn(
            slow.clone(),
            GroupCommit {
                serial_store,
                ..GroupCommit::default()
            },
        );
        let mut handles = Vec::new();
        for n in 0..6 {
            let committer = committer.clone();
            handles.push(tokio::spawn(async move {
                committer.submit_one(n).await.unwrap().unwrap()
            }));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(answers(handles).await, vec![0, 1, 2, 3, 4, 5]);
        slow.0.lock().unwrap().clone()
    }

    #[tokio::test(start_paused = true)]
    async fn given_a_serial_store_when_items_arrive_during_a_commit_then_they_wait_together_for_the_next_one()
     {
        assert_eq!(
            transactions_while_committing(true).await,
            vec![vec![0], vec![1, 2, 3, 4, 5]]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn given_a_concurrent_store_when_items_arrive_during_a_commit_then_the_next_batch_commits_beside_it()
     {
        let transactions = transactions_while_committing(false).await;
        assert_eq!(transactions[0], vec![0]);
        assert_eq!(
            transactions[1],
            vec![1],
            "handed over at once, beside the first"
        );
        assert_eq!(transactions.concat(), vec![0, 1, 2, 3, 4, 5]);
    }
}
