//! Connections to the SQLite file: one writer thread and a pool of readers.
//!
//! SQLite runs in-process and a statement costs a few microseconds, so what matters is not to
//! hop threads per statement. Every write runs as one closure on [`Writer`]'s dedicated thread,
//! inside one `BEGIN IMMEDIATE` transaction, with prepared statements cached on its single
//! connection: a whole ingest batch is one hop. Reads run as one closure on a blocking-pool
//! thread with a connection from [`Readers`], inside a deferred transaction so every statement
//! of a read sees one snapshot (WAL lets them run beside the writer); a point lookup that every
//! request makes runs on the caller's thread instead ([`Readers::read_now`]).
//!
//! `BEGIN IMMEDIATE` takes the write lock up front, so a writer in another process (the CLI, a
//! second host on the same file) waits on the busy timeout instead of failing to upgrade a read
//! lock. This module must not know any table: queries live in the sibling modules.

use crate::store::{StoreError, StoreResult};
use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;
use tokio::sync::{Semaphore, oneshot};

/// How long a statement waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Readers running at once (WAL readers run concurrently; they wait on nothing but the disk).
const MAX_READERS: usize = 8;
/// Prepared statements kept per connection: every query of the backend fits.
const STATEMENT_CACHE: usize = 256;
/// The writer's page cache, in KiB (negative `cache_size`): large enough that the hot parts of
/// the event and contact indexes stay in memory under sustained ingest.
const WRITER_CACHE_KIB: i64 = 64 * 1024;
const READER_CACHE_KIB: i64 = 16 * 1024;
/// How often the checkpointer copies committed WAL frames into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);
/// WAL frames (pages) after which the writer completes the checkpoint itself, between two
/// transactions, so that the WAL starts over from its beginning (about 128 MiB; see
/// [`spawn_checkpointer`]).
const WAL_REWIND_FRAMES: i64 = 32_768;

fn open_connection(path: &Path, cache_kib: i64) -> StoreResult<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| StoreError::Open(format!("{}: {e}", path.display())))?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // WAL: readers never block the writer; NORMAL: a commit is durable once the WAL is synced
    // at checkpoint, and the database is never corrupted by a crash.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.pragma_update(None, "cache_size", -cache_kib)?;
    Ok(conn)
}

/// Checkpoints on a thread of their own, so the writer pays for few of them: SQLite's automatic
/// checkpoint runs inside the commit that crosses the threshold, copying pages into the
/// database file and syncing it while every writer waits. A passive checkpoint here runs beside
/// the writer instead, and a page that many transactions dirty is copied once per checkpoint
/// rather than once per transaction. Stops when `stop` is dropped (when the writer stops).
///
/// A passive checkpoint alone cannot bound the WAL under sustained writes: it copies the
/// frames committed when it started, the writer appends more meanwhile, and the WAL only starts
/// over at a write that finds every frame copied. So the WAL grew for as long as writes went on
/// (1.8 GB in a 10 s benchmark), and every frame landed on new file blocks the kernel zeroes
/// first (a quarter of the writer's time). The writer therefore keeps SQLite's automatic
/// checkpoint at [`WAL_REWIND_FRAMES`]: past that many frames, its next commit copies what this
/// thread has not yet (little, as this thread keeps up), and the next transaction writes the
/// WAL from its beginning again, over pages the kernel already holds. Waiting for the write
/// lock here instead (a `RESTART` checkpoint) starves: the writer takes it back at once.
fn spawn_checkpointer(path: &Path, stop: mpsc::Receiver<()>) -> StoreResult<()> {
    let conn = open_connection(path, 1024)?;
    std::thread::Builder::new()
        .name("waymark-sqlite-checkpoint".into())
        .spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(CHECKPOINT_EVERY) {
                if let Err(error) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                {
                    tracing::warn!("SQLite checkpoint failed: {error}");
                }
            }
            // The last one empties the WAL, so the file is whole on its own.
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                .ok();
        })
        .map_err(|e| StoreError::Open(format!("cannot start the SQLite checkpointer: {e}")))?;
    Ok(())
}

/// A job answers whether its transaction committed.
type Job = Box<dyn FnOnce(&mut Connection) -> bool + Send>;

/// The one write connection, owned by a dedicated thread that runs write transactions in
/// submission order. Cheap to clone.
#[derive(Clone, Debug)]
pub(super) struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Open the write connection on a new thread and run `setup` on it (the migrations) before
    /// anything else. `after_rollback` runs on the writer thread after every transaction that
    /// did not commit, before the next one starts (state the writer keeps beside the database
    /// may hold what the transaction wrote).
    pub(super) fn spawn(
        path: &Path,
        setup: impl FnOnce(&mut Connection) -> StoreResult<()> + Send + 'static,
        after_rollback: impl Fn() + Send + 'static,
    ) -> StoreResult<Writer> {
        Self::spawn_rewinding_at(path, WAL_REWIND_FRAMES, setup, after_rollback)
    }

    /// [`Writer::spawn`], completing a checkpoint past `rewind_frames` WAL frames.
    fn spawn_rewinding_at(
        path: &Path,
        rewind_frames: i64,
        setup: impl FnOnce(&mut Connection) -> StoreResult<()> + Send + 'static,
        after_rollback: impl Fn() + Send + 'static,
    ) -> StoreResult<Writer> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let (opened, open_result) = mpsc::sync_channel::<StoreResult<()>>(1);
        let path = path.to_path_buf();
        std::thread::Builder::new()
            .name("waymark-sqlite-writer".into())
            .spawn(move || {
                let (_stop_checkpoints, checkpoints_stopped) = mpsc::channel::<()>();
                let mut conn = match open_connection(&path, WRITER_CACHE_KIB)
                    .and_then(|mut conn| setup(&mut conn).map(|()| conn))
                    .and_then(|conn| {
                        // Checkpoints are mostly the checkpointer's job; the writer only
                        // completes one now and then (see `spawn_checkpointer`).
                        conn.pragma_update(None, "wal_autocheckpoint", rewind_frames)?;
                        spawn_checkpointer(&path, checkpoints_stopped)?;
                        Ok(conn)
                    }) {
                    Ok(conn) => {
                        opened.send(Ok(())).ok();
                        conn
                    }
                    Err(error) => {
                        opened.send(Err(error)).ok();
                        return;
                    }
                };
                // Ends when every `Writer` handle is dropped.
                for job in queue {
                    // A panicking job loses only its own transaction (rolled back when it is
                    // dropped during unwinding); its caller sees the writer's answer vanish.
                    let outcome =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut conn)));
                    if outcome.is_err() {
                        tracing::error!("a SQLite write transaction panicked; it was rolled back");
                    }
                    if !matches!(outcome, Ok(true)) {
                        after_rollback();
                    }
                }
            })
            .map_err(|e| StoreError::Open(format!("cannot start the SQLite writer: {e}")))?;
        open_result
            .recv()
            .map_err(|_| StoreError::Open("the SQLite writer stopped while opening".into()))??;
        Ok(Writer { jobs })
    }

    /// Run `work` in one `BEGIN IMMEDIATE` transaction on the writer thread: committed when it
    /// returns `Ok`, rolled back when it returns `Err`.
    pub(super) async fn transaction<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> StoreResult<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let result = (|| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let value = work(&tx)?;
                tx.commit()?;
                Ok(value)
            })();
            let committed = result.is_ok();
            reply.send(result).ok();
            committed
        });
        self.jobs.send(job).map_err(|_| writer_gone())?;
        answer.await.map_err(|_| writer_gone())?
    }
}

fn writer_gone() -> StoreError {
    StoreError::Unavailable("the SQLite write transaction did not finish (see the log)".into())
}

/// Reader connections, opened on demand up to [`MAX_READERS`] and reused. Cheap to clone.
#[derive(Clone, Debug)]
pub(super) struct Readers {
    inner: Arc<ReadersInner>,
}

#[derive(Debug)]
struct ReadersInner {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Semaphore,
}

impl Readers {
    pub(super) fn new(path: &Path) -> Readers {
        Readers {
            inner: Arc::new(ReadersInner {
                path: path.to_path_buf(),
                idle: Mutex::new(Vec::new()),
                permits: Semaphore::new(MAX_READERS),
            }),
        }
    }

    /// Run `work` on a reader connection, in one deferred transaction (one snapshot).
    pub(super) async fn read<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> StoreResult<T> + Send + 'static,
    {
        let _permit = self
            .inner
            .permits
            .acquire()
            .await
            .map_err(|_| StoreError::Unavailable("the SQLite readers are closed".into()))?;
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.run(work))
            .await
            .map_err(|e| StoreError::Unavailable(format!("a SQLite read did not finish: {e}")))?
    }

    /// [`Readers::read`] on the calling thread, for a point lookup in a small, hot table (the
    /// API key of every request): handing it to the blocking pool and waking the caller again
    /// costs several times the lookup. Never for work that scans or may wait on the disk. When
    /// every reader is busy it waits for one like [`Readers::read`].
    pub(super) async fn read_now<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> StoreResult<T> + Send + 'static,
    {
        match self.inner.permits.try_acquire() {
            Ok(_permit) => self.inner.run(work),
            Err(_) => self.read(work).await,
        }
    }
}

impl ReadersInner {
    /// `work` in one deferred transaction on an idle connection (or a new one), which goes back
    /// to the idle list afterwards. The caller holds a permit.
    fn run<T>(&self, work: impl FnOnce(&Transaction<'_>) -> StoreResult<T>) -> StoreResult<T> {
        let idle = self.idle.lock().map(|mut idle| idle.pop()).ok().flatten();
        let mut conn = match idle {
            Some(conn) => conn,
            None => open_connection(&self.path, READER_CACHE_KIB)?,
        };
        let result = (|| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
            let value = work(&tx)?;
            tx.finish()?;
            Ok(value)
        })();
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(conn);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn given_a_transaction_that_fails_or_panics_then_the_rollback_hook_runs_and_after_a_commit_it_does_not()
     {
        let dir = tempfile::tempdir().unwrap();
        let rollbacks = Arc::new(AtomicUsize::new(0));
        let counted = rollbacks.clone();
        let writer = Writer::spawn(
            &dir.path().join("hook.db"),
            |conn| Ok(conn.execute_batch("CREATE TABLE t (n INTEGER)")?),
            move || {
                counted.fetch_add(1, Ordering::SeqCst);
            },
        )
        .unwrap();

        // The hook runs on the writer thread before the next transaction starts (the caller
        // may hear back first): what a transaction after the one under test sees.
        let seen_by_the_next = || async {
            writer.transaction(|_| Ok(())).await.unwrap();
            rollbacks.load(Ordering::SeqCst)
        };

        writer
            .transaction(|tx| Ok(tx.execute("INSERT INTO t VALUES (1)", [])?))
            .await
            .unwrap();
        assert_eq!(seen_by_the_next().await, 0);

        let failed = writer
            .transaction(|tx| -> StoreResult<()> {
                tx.execute("INSERT INTO t VALUES (2)", [])?;
                Err(StoreError::Invalid("no".into()))
            })
            .await;
        assert!(failed.is_err());
        assert_eq!(seen_by_the_next().await, 1);

        let panicked = writer
            .transaction(|_| -> StoreResult<()> { panic!("a bug") })
            .await;
        assert!(panicked.is_err());
        assert_eq!(seen_by_the_next().await, 2);

        let rows: i64 = writer
            .transaction(|tx| Ok(tx.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(rows, 1);
    }

    #[tokio::test]
    async fn given_writes_that_never_pause_then_the_wal_starts_over_instead_of_growing() {
        // Given a writer that completes a checkpoint past 256 WAL frames (1 MiB)
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.db");
        let writer = Writer::spawn_rewinding_at(
            &path,
            256,
            |conn| Ok(conn.execute_batch("CREATE TABLE t (n INTEGER, pad BLOB)")?),
            || {},
        )
        .unwrap();

        // When 300 transactions of ~50 fresh pages each (~60 MiB of WAL frames in all) are
        // queued at once, so the writer goes from one to the next without a pause
        const TRANSACTIONS: i64 = 300;
        const ROWS: i64 = 50;
        let commits: Vec<_> = (0..TRANSACTIONS)
            .map(|_| {
                let writer = writer.clone();
                tokio::spawn(async move {
                    writer
                        .transaction(|tx| {
                            let mut insert =
                                tx.prepare("INSERT INTO t VALUES (?1, randomblob(3000))")?;
                            for n in 0..ROWS {
                                insert.execute([n])?;
                            }
                            Ok(())
                        })
                        .await
                })
            })
            .collect();
        for commit in commits {
            commit.await.unwrap().unwrap();
        }

        // Then every row is there, and the WAL file never grew past a few MiB: it was written
        // from its beginning again each time the frames passed the threshold
        let rows: i64 = writer
            .transaction(|tx| Ok(tx.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(rows, TRANSACTIONS * ROWS);
        let wal_bytes = std::fs::metadata(dir.path().join("wal.db-wal"))
            .unwrap()
            .len();
        assert!(
            wal_bytes < 8 << 20,
            "the WAL grew to {wal_bytes} bytes for 60 MiB of writes"
        );
    }
}
