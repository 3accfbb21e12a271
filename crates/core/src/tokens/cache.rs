//! What token verification reads from the store (verification keys, revocation lists), kept between
//! calls until a GlobalSecret changes: without it every Register and every identity stream of a
//! fleet costs several store reads, a decryption and a key parse.
//!
//! It also keeps the payloads of tokens whose signature verified, by family and SHA-256 of the
//! token: a dataplane presents its token on Register and on every stream, and hashing it costs a
//! small fraction of an ECDSA verification. Time claims and the revocation list are still checked
//! on every use.
//!
//! The store's change events invalidate it: any GlobalSecret event, a resync (events may have been
//! missed, as when PostgreSQL's LISTEN connection dropped) or a closed store clears everything. A
//! change made by another replica is seen once its notification arrives (milliseconds), the same
//! delay every other watcher of the store has; a revocation made through [`super::Tokens::revoke`]
//! clears this process's cache at once.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use futures::FutureExt;
use jsonwebtoken::DecodingKey;

use super::TokenKind;
use crate::{
    model::ResourceKind,
    store::{Received, Subscription},
};

pub(super) struct VerifyCache {
    changes: Mutex<Subscription>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Bumped on every invalidation, so a value read from the store before one is not kept after it.
    generation: u64,
    /// The store's events can no longer be followed: read through on every call.
    closed: bool,
    keys: HashMap<(TokenKind, u32), Arc<DecodingKey>>,
    revoked: HashMap<TokenKind, Arc<HashSet<String>>>,
    signed: HashMap<(TokenKind, [u8; 32]), Arc<str>>,
}

/// Most verified tokens kept; past it the map starts afresh (a zone's fleet is well below it).
const MAX_SIGNED: usize = 200_000;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl VerifyCache {
    pub(super) fn new(changes: Subscription) -> Self {
        Self {
            changes: Mutex::new(changes),
            state: Mutex::default(),
        }
    }

    /// Applies the store changes that arrived since the last call; returns the generation values
    /// read from the store now must be stored under.
    fn catch_up(&self) -> u64 {
        let mut stale = false;
        let mut closed = false;
        {
            let mut changes = lock(&self.changes);
            while let Some(r) = changes.recv().now_or_never() {
                match r {
                    Received::Event(e) if e.key.kind != ResourceKind::GlobalSecret => {}
                    Received::Event(_) | Received::Resync => stale = true,
                    Received::Closed => {
                        closed = true;
                        break;
                    }
                }
            }
        }
        let mut s = lock(&self.state);
        if closed {
            s.closed = true;
        }
        if stale || closed {
            s.clear();
        }
        s.generation
    }

    /// Forgets everything (after a write this process made).
    pub(super) fn invalidate(&self) {
        lock(&self.state).clear();
    }

    pub(super) fn key(&self, kind: TokenKind, kid: u32) -> (Option<Arc<DecodingKey>>, u64) {
        let generation = self.catch_up();
        let s = lock(&self.state);
        (s.keys.get(&(kind, kid)).cloned(), generation)
    }

    pub(super) fn put_key(
        &self,
        kind: TokenKind,
        kid: u32,
        key: Arc<DecodingKey>,
        generation: u64,
    ) {
        let mut s = lock(&self.state);
        if s.generation == generation && !s.closed {
            s.keys.insert((kind, kid), key);
        }
    }

    pub(super) fn signed(&self, kind: TokenKind, digest: &[u8; 32]) -> (Option<Arc<str>>, u64) {
        let generation = self.catch_up();
        let s = lock(&self.state);
        (s.signed.get(&(kind, *digest)).cloned(), generation)
    }

    pub(super) fn put_signed(
        &self,
        kind: TokenKind,
        digest: [u8; 32],
        payload: Arc<str>,
        generation: u64,
    ) {
        let mut s = lock(&self.state);
        if s.generation == generation && !s.closed {
            if s.signed.len() >= MAX_SIGNED {
                s.signed.clear();
            }
            s.signed.insert((kind, digest), payload);
        }
    }

    pub(super) fn revoked(&self, kind: TokenKind) -> (Option<Arc<HashSet<String>>>, u64) {
        let generation = self.catch_up();
        let s = lock(&self.state);
        (s.revoked.get(&kind).cloned(), generation)
    }

    pub(super) fn put_revoked(&self, kind: TokenKind, list: Arc<HashSet<String>>, generation: u64) {
        let mut s = lock(&self.state);
        if s.generation == generation && !s.closed {
            s.revoked.insert(kind, list);
        }
    }
}

impl State {
    fn clear(&mut self) {
        self.generation += 1;
        self.keys.clear();
        self.revoked.clear();
        self.signed.clear();
    }
}
