//! The store's error type. It imports nothing else of the crate, so every layer that runs
//! inside a store transaction (the bucket rules, identity resolution) can name it without
//! depending on the store itself.

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The database connection machinery stopped (a panicked or cancelled operation).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unreadable {what} in the database: {detail}")]
    Corrupt { what: &'static str, detail: String },
    #[error("cannot open the database: {0}")]
    Open(String),
    /// A request the data cannot satisfy (e.g. an identity with no key).
    #[error("{0}")]
    Invalid(String),
}

impl StoreError {
    pub fn corrupt(what: &'static str, detail: impl std::fmt::Display) -> Self {
        StoreError::Corrupt {
            what,
            detail: detail.to_string(),
        }
    }
}
