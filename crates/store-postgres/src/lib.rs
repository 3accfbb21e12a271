//! Meshplane's `ResourceStore` on PostgreSQL: the `resources` table (see `migrations/` at the
//! repository root), optimistic versions, owner cascades by foreign key, one transaction per write
//! batch, and change events by LISTEN/NOTIFY so that every replica sees every commit.
//!
//! The schema is applied only by `migrate up` ([`migrate_up`]); a running control plane checks it
//! ([`check_schema`]) and refuses to start on a mismatch.
#![forbid(unsafe_code)]

mod error;
mod listen;
mod open;
mod row;
mod rows;
mod schema;
mod store;
mod write;

pub use error::PgError;
pub use listen::CHANNEL;
pub use open::{migrate_up_command, migrate_up_url, open_store};
pub use schema::{
    DEFAULT_BINARY, MIGRATOR, SchemaError, check_schema, check_schema_for, migrate_command,
    migrate_up,
};
pub use store::{PgOptions, PgStore, connect_pool};
