//! What the database engine is like, for the layers that size themselves to it.

pub trait Engine: Send + Sync {
    /// Bytes the database engine holds in this process's memory (SQLite: page caches, schema
    /// and statements, and the writer's contact cache), or `None` when the database runs in
    /// its own process (PostgreSQL).
    fn in_process_memory(&self) -> Option<u64> {
        None
    }
    /// Whether the store commits one write transaction at a time (SQLite's single writer), so
    /// a group-commit batch waiting for it is better left gathering
    /// ([`crate::group_commit::GroupCommit::serial_store`]).
    fn commits_serially(&self) -> bool {
        false
    }
}
