//! Building pushes that respect the message size limit. A resource too large for any message is
//! reported with its type and name instead of breaking the stream (Kuma PRs 2265, 18727).

use meshplane_core::model::{ResourceKey, ResourceKind};
use prost::Message;

use crate::{
    proto,
    view::{Item, key_of, sync_group as group},
};

/// Room kept for the envelope around the resources.
const ENVELOPE: usize = 1024;

/// A resource that cannot be sent at all, named by its whole key (kind, mesh and name).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{} {:?}{} is {size} bytes, larger than the sync message limit of {limit} bytes; it is not synced",
    .key.kind.name(),
    .key.name,
    in_mesh(&.key.mesh)
)]
pub struct Oversized {
    pub key: ResourceKey,
    pub size: usize,
    pub limit: usize,
}

fn in_mesh(mesh: &str) -> String {
    if mesh.is_empty() {
        String::new()
    } else {
        format!(" in mesh {mesh:?}")
    }
}

/// Splits a known-versions list into parts whose encoding fits `limit` bytes each (at least one
/// part, maybe empty): the handshake's lists grow with the fleet, and a zone of a few hundred
/// thousand records would otherwise never get past its Hello or Welcome.
pub fn known_parts(known: Vec<proto::KnownVersion>, limit: usize) -> Vec<Vec<proto::KnownVersion>> {
    let room = limit.saturating_sub(ENVELOPE).max(1);
    let mut parts = vec![Vec::new()];
    let mut size = 0;
    for k in known {
        // The field's tag and length prefix around each entry.
        let len = k.encoded_len() + 1 + prost::length_delimiter_len(k.encoded_len());
        if size + len > room && parts.last().is_some_and(|p| !p.is_empty()) {
            parts.push(Vec::new());
            size = 0;
        }
        size += len;
        if let Some(p) = parts.last_mut() {
            p.push(k);
        }
    }
    parts
}

/// `known` as the handshake sends it: the part that rides in the Hello or Welcome, whether more
/// follows, and the KnownPart messages after it.
pub fn handshake_known(
    known: Vec<proto::KnownVersion>,
    limit: usize,
) -> (Vec<proto::KnownVersion>, bool, Vec<proto::KnownPart>) {
    let mut parts = known_parts(known, limit).into_iter();
    let first = parts.next().unwrap_or_default();
    let rest = known_part_messages(parts.collect());
    (first, !rest.is_empty(), rest)
}

/// `parts` as KnownPart messages, each but the last saying another follows.
pub fn known_part_messages(parts: Vec<Vec<proto::KnownVersion>>) -> Vec<proto::KnownPart> {
    let n = parts.len();
    parts
        .into_iter()
        .enumerate()
        .map(|(i, known)| proto::KnownPart {
            known,
            continues: i + 1 < n,
        })
        .collect()
}

/// Splits upserts and removals into pushes no larger than `limit` bytes each. Upserts go owner
/// first (a Mesh before its Secrets) and a group is never split unless it alone exceeds a message;
/// removals go owned first (a Mesh's Secrets before the Mesh), so no removal finds its target
/// already cascaded away.
pub fn pushes(
    upserts: &[Item],
    removals: &[proto::ResourceRef],
    limit: usize,
    mut nonce: impl FnMut() -> String,
) -> (Vec<proto::Push>, Vec<Oversized>) {
    let budget = limit.saturating_sub(ENVELOPE);
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    let mut cur = next(&mut nonce);
    let mut size = 0;

    let mut ordered: Vec<(&Item, proto::Resource, usize)> = upserts
        .iter()
        .filter_map(|item| {
            let r = item.to_proto();
            let len = r.encoded_len() + 8;
            if len > budget {
                skipped.push(Oversized {
                    key: item.key.clone(),
                    size: len,
                    limit,
                });
                return None;
            }
            Some((item, r, len))
        })
        .collect();
    ordered.sort_by(|(a, ..), (b, ..)| {
        (group(&a.key), a.key.kind != ResourceKind::Mesh)
            .cmp(&(group(&b.key), b.key.kind != ResourceKind::Mesh))
    });
    let mut i = 0;
    while i < ordered.len() {
        let g = group(&ordered[i].0.key);
        let run = match g {
            Some(_) => ordered[i..]
                .iter()
                .take_while(|(it, ..)| group(&it.key) == g)
                .count(),
            None => 1,
        };
        let run_len: usize = ordered[i..i + run].iter().map(|(.., l)| l).sum();
        // A group that fits a message but not what is left of this one starts the next.
        if size > 0 && size + run_len > budget {
            out.push(std::mem::replace(&mut cur, next(&mut nonce)));
            size = 0;
        }
        if run_len > budget && ordered[i].0.key.kind == ResourceKind::Mesh {
            tracing::warn!(
                mesh = g.unwrap_or_default(),
                bytes = run_len,
                limit,
                "a Mesh and its Secrets exceed one sync message: the peer receives them in parts"
            );
        }
        for (_, r, len) in &ordered[i..i + run] {
            if size + len > budget {
                out.push(std::mem::replace(&mut cur, next(&mut nonce)));
                size = 0;
            }
            size += len;
            cur.upserts.push(r.clone());
        }
        i += run;
    }

    let mut removals: Vec<(Option<ResourceKey>, &proto::ResourceRef)> =
        removals.iter().map(|r| (key_of(r).ok(), r)).collect();
    fn rank(k: &Option<ResourceKey>) -> Option<(Option<&str>, bool)> {
        k.as_ref().map(|k| (group(k), k.kind == ResourceKind::Mesh))
    }
    removals.sort_by(|(a, _), (b, _)| rank(a).cmp(&rank(b)));
    for (_, r) in removals {
        let len = r.encoded_len() + 8;
        if size + len > budget {
            out.push(std::mem::replace(&mut cur, next(&mut nonce)));
            size = 0;
        }
        size += len;
        cur.removals.push(r.clone());
    }
    if !cur.upserts.is_empty() || !cur.removals.is_empty() || out.is_empty() {
        out.push(cur);
    }
    (out, skipped)
}

fn next(nonce: &mut impl FnMut() -> String) -> proto::Push {
    proto::Push {
        nonce: nonce(),
        ..Default::default()
    }
}

#[cfg(test)]
mod known_tests {
    use prost::Message;

    use super::*;

    fn kv(i: usize) -> proto::KnownVersion {
        proto::KnownVersion {
            r#ref: Some(proto::ResourceRef {
                r#type: "Dataplane".into(),
                mesh: "default".into(),
                name: format!("dp-{i:06}"),
            }),
            version: format!("{i}"),
        }
    }

    #[test]
    fn a_long_known_list_is_split_to_fit_and_keeps_every_entry_in_order() {
        let limit = 8 * 1024;
        let all: Vec<_> = (0..5_000).map(kv).collect();
        let (first, continues, rest) = handshake_known(all.clone(), limit);
        assert!(continues);
        assert!(rest.len() > 10, "{} parts", rest.len());
        let welcome = proto::Welcome {
            global_instance_id: "global-1".into(),
            known: first.clone(),
            known_continues: continues,
            summary: None,
        };
        assert!(welcome.encoded_len() <= limit, "{}", welcome.encoded_len());
        for (i, p) in rest.iter().enumerate() {
            assert!(p.encoded_len() <= limit, "part {i}: {}", p.encoded_len());
            assert_eq!(p.continues, i + 1 < rest.len());
        }
        let mut joined = first;
        for p in rest {
            joined.extend(p.known);
        }
        assert_eq!(joined, all);
    }

    #[test]
    fn a_short_or_empty_list_is_one_part() {
        let (first, continues, rest) = handshake_known((0..10).map(kv).collect(), 16 * 1024);
        assert_eq!((first.len(), continues, rest.len()), (10, false, 0));
        let (first, continues, rest) = handshake_known(Vec::new(), 16 * 1024);
        assert_eq!((first.len(), continues, rest.len()), (0, false, 0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshplane_core::model::ResourceKind;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn item(name: &str, bytes: usize) -> Item {
        Item::new(
            ResourceKey::in_mesh(ResourceKind::Secret, "m", name),
            BTreeMap::new(),
            json!({"data": "A".repeat(bytes)}),
        )
    }

    #[test]
    fn splits_and_reports_oversized_by_type() {
        let mut n = 0;
        let items = vec![
            item("a", 3000),
            item("b", 3000),
            item("huge", 50_000),
            item("c", 3000),
        ];
        let (pushes, skipped) = pushes(&items, &[], 8 * 1024, || {
            n += 1;
            n.to_string()
        });
        assert_eq!(pushes.len(), 2);
        assert!(pushes.iter().all(|p| p.encoded_len() <= 8 * 1024));
        assert_eq!(pushes.iter().map(|p| p.upserts.len()).sum::<usize>(), 3);
        assert_eq!(skipped.len(), 1);
        assert_eq!(
            skipped[0].key,
            ResourceKey::in_mesh(ResourceKind::Secret, "m", "huge")
        );
        let msg = skipped[0].to_string();
        assert!(
            msg.starts_with("Secret \"huge\" in mesh \"m\" is ")
                && msg.contains("limit of 8192 bytes"),
            "{msg}"
        );
    }

    fn mesh_item(name: &str) -> Item {
        Item::new(ResourceKey::mesh(name), BTreeMap::new(), json!({}))
    }

    fn in_mesh(mesh: &str, name: &str, bytes: usize) -> Item {
        Item::new(
            ResourceKey::in_mesh(ResourceKind::Secret, mesh, name),
            BTreeMap::new(),
            json!({"data": "A".repeat(bytes)}),
        )
    }

    fn names(p: &proto::Push) -> Vec<String> {
        p.upserts
            .iter()
            .filter_map(|r| r.r#ref.as_ref())
            .map(|r| format!("{}/{}/{}", r.r#type, r.mesh, r.name))
            .collect()
    }

    #[test]
    fn a_mesh_goes_first_and_with_its_secrets_in_one_push() {
        // The secrets come first and another mesh's items are in between, as a diff may list them.
        let items = vec![
            in_mesh("m", "cert", 2500),
            in_mesh("other", "s", 3000),
            in_mesh("m", "key", 2500),
            mesh_item("m"),
        ];
        let mut n = 0;
        let (pushes, skipped) = pushes(&items, &[], 8 * 1024, || {
            n += 1;
            n.to_string()
        });
        assert!(skipped.is_empty());
        let all: Vec<Vec<String>> = pushes.iter().map(names).collect();
        let with_mesh = all
            .iter()
            .find(|p| p.contains(&"Mesh//m".to_string()))
            .expect("the Mesh is sent");
        assert_eq!(
            with_mesh[..3],
            [
                "Mesh//m".to_string(),
                "Secret/m/cert".to_string(),
                "Secret/m/key".to_string()
            ],
            "the Mesh, then its Secrets, in one push: {all:?}"
        );
        assert!(pushes.iter().all(|p| p.encoded_len() <= 8 * 1024));
    }

    #[test]
    fn a_group_that_does_not_fit_what_is_left_starts_the_next_push() {
        let items = vec![
            in_mesh("a", "big", 5000),
            mesh_item("b"),
            in_mesh("b", "cert", 1500),
            in_mesh("b", "key", 1500),
        ];
        let mut n = 0;
        let (pushes, _) = pushes(&items, &[], 8 * 1024, || {
            n += 1;
            n.to_string()
        });
        let all: Vec<Vec<String>> = pushes.iter().map(names).collect();
        assert_eq!(
            all,
            vec![
                vec!["Secret/a/big".to_string()],
                vec![
                    "Mesh//b".to_string(),
                    "Secret/b/cert".to_string(),
                    "Secret/b/key".to_string()
                ]
            ]
        );
    }

    #[test]
    fn removals_take_a_meshs_secrets_before_the_mesh() {
        let refs: Vec<proto::ResourceRef> = [
            ResourceKey::mesh("m"),
            ResourceKey::in_mesh(ResourceKind::Secret, "m", "cert"),
            ResourceKey::mesh("n"),
            ResourceKey::in_mesh(ResourceKind::Secret, "n", "key"),
        ]
        .iter()
        .map(crate::view::ref_of)
        .collect();
        let (pushes, _) = pushes(&[], &refs, 8 * 1024, || "1".into());
        let order: Vec<String> = pushes[0]
            .removals
            .iter()
            .map(|r| format!("{}/{}/{}", r.r#type, r.mesh, r.name))
            .collect();
        assert_eq!(
            order,
            ["Secret/m/cert", "Mesh//m", "Secret/n/key", "Mesh//n"]
        );
    }
}
