//! `meshctl apply -f FILE|-`: every document of a YAML/JSON stream, validated locally, then PUT in order.

use std::io::Read;

use meshplane_core::{format, model::Resource};

use crate::client::{CliError, Client, item_path, with_detail};

pub async fn run(client: &Client, file: &str, dry_run: bool) -> Result<(), CliError> {
    let text = if file == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| CliError::Io(format!("reading stdin: {e}")))?;
        s
    } else {
        std::fs::read_to_string(file).map_err(|e| CliError::Io(format!("reading {file}: {e}")))?
    };
    let docs =
        format::parse_yaml_documents(&text).map_err(|e| CliError::Io(format!("{file}: {e}")))?;
    if docs.is_empty() {
        return Err(CliError::Usage(format!("{file}: no resources found")));
    }
    // Validate everything before sending anything, so one bad document does not leave half a file applied.
    let mut resources = Vec::with_capacity(docs.len());
    for (i, doc) in docs.iter().enumerate() {
        let context = describe(doc, i);
        let r = Resource::from_universal(doc).map_err(|e| CliError::Invalid {
            context,
            violations: e
                .violations
                .into_iter()
                .map(|v| {
                    let reason = with_detail(&v.reason, v.detail.as_deref());
                    (v.field, reason)
                })
                .collect(),
        })?;
        resources.push(r);
    }
    for r in resources {
        let key = r.key();
        let what = format!("{} {:?}", key.kind.name(), key.name);
        if dry_run {
            print!("---\n{}", format::to_yaml(&r.to_universal()));
            continue;
        }
        let (created, warnings) = client
            .put(
                &item_path(key.kind, &key.mesh, &key.name),
                &r.to_universal(),
                what.clone(),
            )
            .await?;
        let mesh = if key.mesh.is_empty() {
            String::new()
        } else {
            format!(" in mesh {:?}", key.mesh)
        };
        println!(
            "{what}{mesh} {}",
            if created { "created" } else { "updated" }
        );
        for w in warnings {
            eprintln!("warning: {what}: {w}");
        }
    }
    Ok(())
}

fn describe(doc: &serde_json::Value, i: usize) -> String {
    let t = doc.get("type").and_then(|v| v.as_str()).unwrap_or("?");
    let n = doc.get("name").and_then(|v| v.as_str()).unwrap_or("?");
    format!("document {} ({t} {n:?})", i + 1)
}
