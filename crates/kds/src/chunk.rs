//! Building pushes that respect the message size limit. A resource too large for any message is
//! reported with its type and name instead of breaking the stream (Kuma PRs 2265, 18727).

use meshplane_core::model::ResourceKey;
use prost::Message;

use crate::{proto, view::Item};

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

/// Splits upserts and removals into pushes no larger than `limit` bytes each.
pub fn pushes(
    upserts: &[Item],
    removals: &[proto::ResourceRef],
    limit: usize,
    mut nonce: impl FnMut() -> String,
) -> (Vec<proto::Push>, Vec<Oversized>) {
    let budget = limit.saturating_sub(ENVELOPE);
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    let mut cur = proto::Push {
        nonce: nonce(),
        ..Default::default()
    };
    let mut size = 0;
    for item in upserts {
        let r = item.to_proto();
        let len = r.encoded_len() + 8;
        if len > budget {
            skipped.push(Oversized {
                key: item.key.clone(),
                size: len,
                limit,
            });
            continue;
        }
        if size + len > budget {
            out.push(std::mem::replace(
                &mut cur,
                proto::Push {
                    nonce: nonce(),
                    ..Default::default()
                },
            ));
            size = 0;
        }
        size += len;
        cur.upserts.push(r);
    }
    for r in removals {
        let len = r.encoded_len() + 8;
        if size + len > budget {
            out.push(std::mem::replace(
                &mut cur,
                proto::Push {
                    nonce: nonce(),
                    ..Default::default()
                },
            ));
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
}
