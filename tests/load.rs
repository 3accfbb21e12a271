//! Load: 50 concurrent API writers on PostgreSQL, all updating the same two resources with
//! optimistic concurrency (GET → `ETag` → modify → PUT with `If-Match`; on 409 re-read and retry),
//! for `MESHPLANE_LOAD_SECONDS` (default 5; scripts/reliability.sh runs 30).
//!
//! Every acknowledged write is checkable: writers append unique tokens to a GlobalSecret's data
//! (a comma list, base64) and increment a counter label on a Mesh. At the end the ledger holds
//! every acknowledged token exactly once, the counter equals the acknowledged increments, every
//! acknowledged write got its own version, and conflicts really happened.

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use base64::Engine;
use meshplane_tests::{Api, Global, Store, migrated_db};
use reqwest::Method;
use serde_json::{Value, json};

const WRITERS: usize = 50;
const LEDGER: &str = "/global-secrets/load-ledger";
const COUNTER: &str = "/meshes/load-counter";

fn load_seconds() -> u64 {
    std::env::var("MESHPLANE_LOAD_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|s| *s > 0)
        .unwrap_or(5)
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn unb64(s: &str) -> String {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s)
        .expect("ledger data is base64");
    String::from_utf8(bytes).expect("ledger data is UTF-8")
}

/// `GET path`: the body and the version from the `ETag` header.
async fn read(api: &Api, path: &str) -> (Value, i64) {
    let r = api
        .request(Method::GET, path)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    assert_eq!(r.status().as_u16(), 200, "GET {path}");
    let version = r
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim_matches('"').parse().ok())
        .expect("a numeric ETag");
    (r.json().await.expect("JSON"), version)
}

/// `PUT path` with `If-Match`: the status and, on success, the new version.
async fn write(api: &Api, path: &str, version: i64, body: &Value) -> (u16, Option<i64>) {
    let r = api
        .request(Method::PUT, path)
        .header("if-match", format!("\"{version}\""))
        .json(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("PUT {path}: the connection failed under load: {e}"));
    let status = r.status().as_u16();
    let new_version = r
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim_matches('"').parse().ok());
    let text = r.text().await.unwrap_or_default();
    assert!(
        matches!(status, 200 | 409 | 503),
        "PUT {path}: unexpected {status}: {text}"
    );
    (status, new_version)
}

#[derive(Default)]
struct Tally {
    /// Ledger tokens whose PUT was answered 200, and the versions those answers carried.
    ledger_acked: Vec<String>,
    ledger_versions: Vec<i64>,
    /// Tokens whose PUT was answered 503: the write may or may not have happened.
    ledger_unsure: Vec<String>,
    counter_acked: u64,
    counter_versions: Vec<i64>,
    counter_unsure: u64,
    attempts: u64,
    conflicts: u64,
    unavailable: u64,
}

/// One writer: alternately appends a token to the ledger and increments the counter, each with
/// read-modify-write and retries on conflict, until the deadline.
async fn writer(api: Api, id: usize, deadline: Instant) -> Tally {
    let mut t = Tally::default();
    let mut n = 0u64;
    while Instant::now() < deadline {
        n += 1;
        let token = format!("w{id}-{n}");
        let ledger = n.is_multiple_of(2);
        // Retry this one change until it is acknowledged or time is up.
        while Instant::now() < deadline {
            t.attempts += 1;
            let (status, version) = if ledger {
                let (doc, v) = read(&api, LEDGER).await;
                let data = unb64(doc["data"].as_str().expect("data"));
                let body = json!({"type": "GlobalSecret", "name": "load-ledger",
                    "data": b64(&format!("{data},{token}"))});
                let (s, nv) = write(&api, LEDGER, v, &body).await;
                (s, nv)
            } else {
                let (doc, v) = read(&api, COUNTER).await;
                let count: u64 = doc["labels"]["count"]
                    .as_str()
                    .and_then(|c| c.parse().ok())
                    .expect("a numeric count label");
                let body = json!({"type": "Mesh", "name": "load-counter",
                    "labels": {"count": (count + 1).to_string(), "last": token}});
                write(&api, COUNTER, v, &body).await
            };
            match status {
                200 => {
                    let v = version.expect("an ETag on success");
                    if ledger {
                        t.ledger_acked.push(token.clone());
                        t.ledger_versions.push(v);
                    } else {
                        t.counter_acked += 1;
                        t.counter_versions.push(v);
                    }
                    break;
                }
                409 => t.conflicts += 1,
                _ => {
                    // 503: the store was busy; the write may have happened. Back off briefly.
                    t.unavailable += 1;
                    if ledger {
                        t.ledger_unsure.push(token.clone());
                    } else {
                        t.counter_unsure += 1;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_writers_with_optimistic_concurrency_lose_no_update() {
    let seconds = load_seconds();
    let db = migrated_db().await.expect("database");
    let g = Global::start(Store::Postgres(db.url.clone()), &[])
        .await
        .expect("global");
    let api = g.api.clone();
    let (s, b) = api
        .put(
            LEDGER,
            &json!({"type": "GlobalSecret", "name": "load-ledger", "data": b64("start")}),
        )
        .await
        .expect("ledger");
    assert_eq!(s, 201, "{b}");
    let (s, b) = api
        .put(
            COUNTER,
            &json!({"type": "Mesh", "name": "load-counter", "labels": {"count": "0"}}),
        )
        .await
        .expect("counter");
    assert_eq!(s, 201, "{b}");
    let (_, ledger_v0) = read(&api, LEDGER).await;
    let (_, counter_v0) = read(&api, COUNTER).await;

    let deadline = Instant::now() + Duration::from_secs(seconds);
    let handles: Vec<_> = (0..WRITERS)
        .map(|id| tokio::spawn(writer(api.clone(), id, deadline)))
        .collect();
    let mut tallies = Vec::new();
    for h in handles {
        tallies.push(h.await.expect("writer task"));
    }

    let (ledger, ledger_v) = read(&api, LEDGER).await;
    let (counter, counter_v) = read(&api, COUNTER).await;
    let data = unb64(ledger["data"].as_str().expect("data"));
    let stored: Vec<&str> = data.split(',').skip(1).collect();
    let stored_set: BTreeSet<&str> = stored.iter().copied().collect();
    let acked: BTreeSet<&str> = tallies
        .iter()
        .flat_map(|t| t.ledger_acked.iter().map(String::as_str))
        .collect();
    let unsure: BTreeSet<&str> = tallies
        .iter()
        .flat_map(|t| t.ledger_unsure.iter().map(String::as_str))
        .collect();
    let sum = |f: fn(&Tally) -> u64| tallies.iter().map(f).sum::<u64>();
    let counter_acked = sum(|t| t.counter_acked);
    let counter_unsure = sum(|t| t.counter_unsure);
    let conflicts = sum(|t| t.conflicts);
    let attempts = sum(|t| t.attempts);
    let unavailable = sum(|t| t.unavailable);
    let count: u64 = counter["labels"]["count"]
        .as_str()
        .and_then(|c| c.parse().ok())
        .expect("count");

    let lost_tokens: Vec<&&str> = acked.difference(&stored_set).collect();
    let duplicates = stored.len() - stored_set.len();
    let unexplained: Vec<&&str> = stored_set
        .iter()
        .filter(|t| !acked.contains(**t) && !unsure.contains(**t))
        .collect();
    let lost_increments = counter_acked.saturating_sub(count);

    // Every acknowledged write got a version of its own: two 200s with one version would mean one
    // of them overwrote the other.
    let distinct = |versions: Vec<i64>| -> (usize, usize) {
        let all = versions.len();
        let set: BTreeSet<i64> = versions.into_iter().collect();
        (all, set.len())
    };
    let (lv_all, lv_distinct) = distinct(
        tallies
            .iter()
            .flat_map(|t| t.ledger_versions.iter().copied())
            .collect(),
    );
    let (cv_all, cv_distinct) = distinct(
        tallies
            .iter()
            .flat_map(|t| t.counter_versions.iter().copied())
            .collect(),
    );

    let rows: Vec<(&str, String)> = vec![
        ("writers", WRITERS.to_string()),
        ("seconds", seconds.to_string()),
        ("attempts (PUTs)", attempts.to_string()),
        (
            "writes acknowledged",
            (acked.len() as u64 + counter_acked).to_string(),
        ),
        ("conflicts (409)", conflicts.to_string()),
        ("store busy (503)", unavailable.to_string()),
        (
            "writes lost",
            (lost_tokens.len() as u64 + lost_increments).to_string(),
        ),
        ("ledger tokens stored", stored.len().to_string()),
        ("counter value", count.to_string()),
    ];
    let mut table = String::from("\nload summary (PostgreSQL, optimistic concurrency)\n");
    table.push_str(&format!("{:<24} {:>10}\n", "measure", "value"));
    for (k, v) in &rows {
        table.push_str(&format!("{k:<24} {v:>10}\n"));
    }
    println!("{table}");

    assert!(
        acked.len() as u64 + counter_acked > 0,
        "no write was acknowledged"
    );
    assert!(
        conflicts > 0,
        "50 writers on two resources never conflicted: concurrency was not exercised"
    );
    assert!(
        lost_tokens.is_empty(),
        "acknowledged ledger tokens missing: {lost_tokens:?}"
    );
    assert_eq!(duplicates, 0, "a token was stored twice");
    assert!(
        unexplained.is_empty(),
        "tokens stored that no write reported: {unexplained:?}"
    );
    assert!(
        count >= counter_acked && count <= counter_acked + counter_unsure,
        "counter {count}, acknowledged increments {counter_acked} (+{counter_unsure} unsure)"
    );
    assert_eq!(
        lv_all, lv_distinct,
        "two acknowledged ledger writes share a version"
    );
    assert_eq!(
        cv_all, cv_distinct,
        "two acknowledged counter writes share a version"
    );
    let ledger_writes = (ledger_v - ledger_v0) as u64;
    let counter_writes = (counter_v - counter_v0) as u64;
    assert!(
        ledger_writes >= acked.len() as u64 && ledger_writes <= (acked.len() + unsure.len()) as u64,
        "the ledger's version moved by {ledger_writes} for {} acknowledged writes",
        acked.len()
    );
    assert_eq!(
        counter_writes, count,
        "every version of the counter is one increment"
    );
    assert!(!g.proc.logs().contains("panicked"), "{}", g.proc.logs());
}
