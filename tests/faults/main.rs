//! Fault injection with real processes: `kill -9` of global while zones sync; PostgreSQL stopped
//! and started under write load (a private server, never the shared one); OpenBao stopped, sealed
//! and brought back during certificate rotation; a zone, then global, frozen (SIGSTOP) and resumed.
//!
//! After each fault: every acknowledged write is present at global and in every zone, and every
//! dataplane holds a valid certificate (notAfter in the future, verified against its bundle). Each
//! test prints a summary table (visible with `--nocapture`) and asserts its zeros; with
//! `MESHPLANE_RELIABILITY_REPORT=<file>` it also appends its row there (scripts/reliability.sh).

mod checks;
mod global_kill;
mod openbao;
mod partition;
mod postgres;
mod writer;
mod zone_kill;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use base64::Engine;
use meshplane_test_support::{
    openbao::OpenBao,
    postgres::PrivateCluster,
    process::{bin, init_test_logging},
};
use meshplane_tests::{Agent, Api, Global, Store, Zone, eventually, migrated_db, run};
use serde_json::{Value, json};

/// How long the system may take to converge after a fault on a loaded 2-core machine.
const WAIT: Duration = Duration::from_secs(90);
