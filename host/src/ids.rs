//! Identifier newtypes shared by every layer. Ids are UUIDv7 strings, so they sort by creation.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            /// A fresh, time-ordered id.
            pub fn generate() -> Self {
                Self(uuid::Uuid::now_v7().to_string())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        // Hash and Eq are the inner string's, so maps keyed by an id can be searched by `&str`.
        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                Self(value)
            }
        }
    };
}

id_type!(
    /// A tenant: the owner of modules, contacts, events, runs and keys.
    TenantId
);
id_type!(
    /// A journey run: one person going through one journey.
    RunId
);
id_type!(
    /// A stored event.
    EventId
);
id_type!(
    /// A queued or sent email.
    EmailId
);
id_type!(
    /// An API key (its id, never the secret).
    ApiKeyId
);
id_type!(
    /// A contact row. Its resolved key (what history is stored under) is its user id, else its
    /// anonymous id, else this id.
    ContactId
);
