//! A dataplane's identity as certificates carry it: SPIFFE IDs for its services, then `kuma://` tags.

use crate::model::{TagSet, dataplane::SERVICE_TAG};

/// `spiffe://<mesh>/<service>`.
pub fn spiffe_id(mesh: &str, service: &str) -> String {
    format!("spiffe://{mesh}/{service}")
}

/// The URI SANs of a Kuma mesh certificate, in Kuma's order: `spiffe://<mesh>/<service>` for each
/// service, then `kuma://<tag>/<value>` for every tag (sorted by name, then value).
pub fn uri_sans(mesh: &str, tags: &TagSet) -> Vec<String> {
    let mut out: Vec<String> = tags
        .get(SERVICE_TAG)
        .into_iter()
        .flatten()
        .map(|s| spiffe_id(mesh, s))
        .collect();
    for (name, values) in tags {
        for v in values {
            out.push(format!("kuma://{name}/{v}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    #[test]
    fn kuma_order() {
        let mut tags: TagSet = BTreeMap::new();
        tags.insert("version".into(), BTreeSet::from(["v2".into(), "v1".into()]));
        tags.insert(
            SERVICE_TAG.into(),
            BTreeSet::from(["web".into(), "api".into()]),
        );
        tags.insert("kuma.io/zone".into(), BTreeSet::from(["east".into()]));
        assert_eq!(
            uri_sans("default", &tags),
            vec![
                "spiffe://default/api",
                "spiffe://default/web",
                "kuma://kuma.io/service/api",
                "kuma://kuma.io/service/web",
                "kuma://kuma.io/zone/east",
                "kuma://version/v1",
                "kuma://version/v2",
            ]
        );
    }
}
