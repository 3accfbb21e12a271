//! The `commonName` template: parsing arbitrary text and rendering it with arbitrary tags never
//! panics, a parsed template prints as its source, and it renders the same way twice.
//!
//! Input: the template source, then optionally a NUL byte and tags as `name=value` lines (a name
//! may repeat: several values). Plain-text seeds are templates without tags.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use meshplane_core::template::{CnTemplate, RenderError};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (source, tag_lines) = text.split_once('\0').unwrap_or((text, ""));
    let mut tags: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in tag_lines.split('\n') {
        let (k, v) = line.split_once('=').unwrap_or((line, ""));
        tags.entry(k.to_string()).or_default().push(v.to_string());
    }
    if let Some(empty) = tags.get_mut("") {
        // A line without '=' and name "" stands for a tag listed without values.
        empty.clear();
    }

    let Ok(t) = CnTemplate::parse(source) else {
        return;
    };
    assert_eq!(t.to_string(), source, "a template prints as its source");
    assert_eq!(t.as_str(), source);
    let reparsed = CnTemplate::parse(&t.to_string()).expect("the source parses again");
    assert_eq!(reparsed, t);

    let first = t.render(&tags);
    assert_eq!(first, t.render(&tags), "rendering is deterministic");
    // Every tag the template reads, given exactly one value, always renders.
    let mut complete = tags.clone();
    for name in t.tags() {
        complete.insert(name.to_string(), vec![format!("v-{name}")]);
    }
    let rendered = t.render(&complete);
    // Only a rendering over the size limit may fail once every tag has one value.
    assert!(
        rendered.is_ok() || matches!(rendered, Err(RenderError::TooLong(_))),
        "{source:?} with {complete:?}: {rendered:?}"
    );
    // A template without actions renders as its source.
    if t.tags().next().is_none() && source.len() <= meshplane_core::template::MAX_RENDERED {
        assert_eq!(rendered.ok().as_deref(), Some(source));
    }
});
