//! Bucketed digests of a known-versions list, so a reconnect exchanges what differs instead of
//! everything one side holds. Both sides must hash alike across releases and platforms, so the hash
//! is spelled out here (FNV-1a 64 and a SplitMix64 finaliser) rather than taken from `std`, whose
//! hasher may change between Rust versions.

use std::collections::HashSet;

use crate::proto;

/// At most this many buckets: 512 KiB of digests, for zones of a few hundred thousand records.
pub const MAX_BUCKETS: u32 = 1 << 16;

/// Bytes per bucket on the wire.
const DIGEST: usize = 8;

/// Room kept in a message for the envelope around the digests.
const ENVELOPE: usize = 1024;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// SplitMix64's finaliser: FNV's low bits, which pick the bucket, depend weakly on the last bytes.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn key_hash(kind: &str, mesh: &str, name: &str) -> u64 {
    let mut h = fnv(FNV_OFFSET, kind.as_bytes());
    h = fnv(h, &[0]);
    h = fnv(h, mesh.as_bytes());
    h = fnv(h, &[0]);
    fnv(h, name.as_bytes())
}

/// The bucket of a key among `buckets` (a power of two).
pub fn bucket_of(kind: &str, mesh: &str, name: &str, buckets: u32) -> u32 {
    // Truncation is the point: the low bits of the mixed hash pick the bucket.
    (mix(key_hash(kind, mesh, name)) & u64::from(buckets - 1)) as u32
}

fn entry_hash(kind: &str, mesh: &str, name: &str, version: &str) -> u64 {
    let h = fnv(key_hash(kind, mesh, name), &[0]);
    mix(fnv(h, version.as_bytes()) ^ 0x5bd1_e995)
}

/// How many buckets a list of `entries` gets: six to twelve entries per bucket, and never more
/// digests than fit in one message of `limit` bytes. A reconnect costs the summary (eight bytes per
/// bucket) plus the entries of each bucket that differs (about 15 bytes each, with short
/// versions), so fewer, fuller buckets are cheaper while few records changed: measured at 100
/// zones, a zone back after 5 minutes offline and a global restart both moved less with six per
/// bucket than with three (docs/scaling.md).
pub fn buckets_for(entries: usize, limit: usize) -> u32 {
    let fit = (limit.saturating_sub(ENVELOPE) / DIGEST).max(1);
    let want = (entries / 6).clamp(1, fit.min(MAX_BUCKETS as usize));
    // The largest power of two not above `want`.
    1 << (usize::BITS - 1 - want.leading_zeros())
}

/// The digests of (kind, mesh, name, version) entries in `buckets` buckets.
#[derive(Debug)]
pub struct Digests {
    buckets: u32,
    digests: Vec<u64>,
}

impl Digests {
    pub fn new<'a>(
        buckets: u32,
        entries: impl IntoIterator<Item = (&'a str, &'a str, &'a str, &'a str)>,
    ) -> Self {
        let mut digests = vec![0u64; buckets as usize];
        for (kind, mesh, name, version) in entries {
            let b = bucket_of(kind, mesh, name, buckets) as usize;
            digests[b] ^= entry_hash(kind, mesh, name, version);
        }
        Self { buckets, digests }
    }

    /// The digests of a known-versions list (entries without a ref are left out).
    pub fn of_known(buckets: u32, known: &[proto::KnownVersion]) -> Self {
        Self::new(
            buckets,
            known.iter().filter_map(|k| {
                k.r#ref.as_ref().map(|r| {
                    (
                        r.r#type.as_str(),
                        r.mesh.as_str(),
                        r.name.as_str(),
                        k.version.as_str(),
                    )
                })
            }),
        )
    }

    pub fn to_proto(&self) -> proto::KnownSummary {
        proto::KnownSummary {
            buckets: self.buckets,
            digests: self.digests.iter().flat_map(|d| d.to_le_bytes()).collect(),
        }
    }

    /// A peer's summary, checked: a power of two no larger than [`MAX_BUCKETS`], with one digest
    /// per bucket.
    pub fn from_proto(s: &proto::KnownSummary) -> Result<Self, String> {
        if !s.buckets.is_power_of_two() || s.buckets > MAX_BUCKETS {
            return Err(format!(
                "summary has {} buckets; expected a power of two up to {MAX_BUCKETS}",
                s.buckets
            ));
        }
        if s.digests.len() != s.buckets as usize * DIGEST {
            return Err(format!(
                "summary of {} buckets carries {} bytes of digests; expected {}",
                s.buckets,
                s.digests.len(),
                s.buckets as usize * DIGEST
            ));
        }
        let digests = s
            .digests
            .chunks_exact(DIGEST)
            .map(|c| {
                let mut b = [0u8; DIGEST];
                b.copy_from_slice(c);
                u64::from_le_bytes(b)
            })
            .collect();
        Ok(Self {
            buckets: s.buckets,
            digests,
        })
    }

    pub fn buckets(&self) -> u32 {
        self.buckets
    }

    /// The buckets where `self` and `other` (of the same bucket count) differ.
    pub fn differing(&self, other: &Self) -> HashSet<u32> {
        self.digests
            .iter()
            .zip(&other.digests)
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .map(|(i, _)| i as u32)
            .collect()
    }
}

/// Hex digits of a version kept in the answer to a KnownRequest: 64 bits, enough to tell the
/// zone's version from another (versions are SHA-256 digests), at a quarter of the bytes.
pub const SHORT_VERSION: usize = 16;

/// Whether `full`, a version the zone holds, is the one `listed` (shortened) names.
pub fn is_listed_version(full: &str, listed: &str) -> bool {
    listed.len() == SHORT_VERSION && full.starts_with(listed)
}

/// The entries of `known` whose buckets are in `wanted`, their versions shortened.
pub fn entries_in(
    known: Vec<proto::KnownVersion>,
    buckets: u32,
    wanted: &HashSet<u32>,
) -> Vec<proto::KnownVersion> {
    known
        .into_iter()
        .filter(|k| {
            k.r#ref
                .as_ref()
                .is_some_and(|r| wanted.contains(&bucket_of(&r.r#type, &r.mesh, &r.name, buckets)))
        })
        .map(|mut k| {
            k.version.truncate(SHORT_VERSION);
            k
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(name: &str, version: &str) -> proto::KnownVersion {
        proto::KnownVersion {
            r#ref: Some(proto::ResourceRef {
                r#type: "Dataplane".into(),
                mesh: "default".into(),
                name: name.into(),
            }),
            version: version.into(),
        }
    }

    fn fleet(n: usize) -> Vec<proto::KnownVersion> {
        (0..n).map(|i| kv(&format!("dp-{i}"), "v1")).collect()
    }

    #[test]
    fn equal_sets_match_in_any_order_and_a_change_shows_in_one_bucket() {
        let known = fleet(3000);
        let b = buckets_for(known.len(), 16 << 20);
        assert_eq!(b, 256);
        let mut reversed = known.clone();
        reversed.reverse();
        let a = Digests::of_known(b, &known);
        assert!(a.differing(&Digests::of_known(b, &reversed)).is_empty());

        let mut changed = known.clone();
        changed[7].version = "v2".into();
        let diff = a.differing(&Digests::of_known(b, &changed));
        assert_eq!(diff.len(), 1);
        let listed = entries_in(known.clone(), b, &diff);
        assert!(listed.iter().any(|k| k.r#ref == known[7].r#ref));
        assert!(listed.len() < 40, "{} entries for one change", listed.len());

        // A record one side lacks, and one only the other has, both show.
        let mut fewer = known.clone();
        let gone = fewer.remove(100);
        let extra = kv("new", "v1");
        fewer.push(extra.clone());
        let diff = a.differing(&Digests::of_known(b, &fewer));
        assert!(!diff.is_empty() && diff.len() <= 2);
        let ours = entries_in(known, b, &diff);
        assert!(ours.iter().any(|k| k.r#ref == gone.r#ref));
        assert!(!ours.iter().any(|k| k.r#ref == extra.r#ref));
    }

    #[test]
    fn buckets_fit_the_message_and_stay_a_power_of_two() {
        assert_eq!(buckets_for(0, 16 << 20), 1);
        assert_eq!(buckets_for(2, 16 << 20), 1);
        assert_eq!(buckets_for(20_000, 16 << 20), 2048);
        assert_eq!(buckets_for(10_000_000, 16 << 20), MAX_BUCKETS);
        // An 8 KiB limit holds 896 digests after the envelope: 512 buckets.
        assert_eq!(buckets_for(100_000, 8 * 1024), 512);
        for n in [1, 5, 999, 123_456] {
            assert!(buckets_for(n, 64 * 1024).is_power_of_two());
        }
    }

    #[test]
    fn listed_versions_are_short_and_still_tell_versions_apart() {
        let full = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        let wanted = HashSet::from([bucket_of("Dataplane", "default", "a", 1)]);
        let listed = entries_in(vec![kv("a", full)], 1, &wanted);
        assert_eq!(listed[0].version, &full[..SHORT_VERSION]);
        assert!(is_listed_version(full, &listed[0].version));
        let other = "9f86d081884c7d66".to_string() + &full[16..];
        assert!(!is_listed_version(&other, &listed[0].version));
        assert!(
            !is_listed_version(full, ""),
            "an empty version names nothing"
        );
    }

    #[test]
    fn the_wire_form_round_trips_and_is_checked() {
        let d = Digests::of_known(64, &fleet(200));
        let back = Digests::from_proto(&d.to_proto()).expect("valid");
        assert!(d.differing(&back).is_empty());
        let mut bad = d.to_proto();
        bad.digests.pop();
        assert!(
            Digests::from_proto(&bad)
                .unwrap_err()
                .contains("bytes of digests")
        );
        bad.buckets = 48;
        assert!(
            Digests::from_proto(&bad)
                .unwrap_err()
                .contains("power of two")
        );
        bad.buckets = MAX_BUCKETS * 2;
        assert!(Digests::from_proto(&bad).is_err());
    }

    /// The hash is part of the protocol: a zone and a global of different releases must agree.
    #[test]
    fn the_hash_is_fixed() {
        assert_eq!(
            bucket_of("Dataplane", "default", "web-1", 1 << 16),
            BUCKET_WEB_1
        );
        assert_eq!(
            entry_hash("Dataplane", "default", "web-1", "abc"),
            ENTRY_WEB_1
        );
    }
    // Pinned from this implementation when the protocol got summaries; its parts are checked
    // against published vectors below.
    const BUCKET_WEB_1: u32 = 45420;
    const ENTRY_WEB_1: u64 = 11_015_976_165_106_024_610;

    /// The parts against published test vectors (FNV-1a 64; SplitMix64's first output from 0).
    #[test]
    fn the_parts_are_the_published_functions() {
        assert_eq!(fnv(FNV_OFFSET, b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv(FNV_OFFSET, b"foobar"), 0x8594_4171_f739_67e8);
        assert_eq!(mix(0x9e37_79b9_7f4a_7c15), 0xe220_a839_7b1d_cdaf);
    }
}
