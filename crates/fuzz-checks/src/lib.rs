//! The properties the fuzz targets check, callable from stable Rust: cargo-fuzz (nightly) explores
//! with them, and `tests/replay.rs` replays the seeds and every input that once failed on every
//! `cargo test`, so a regression shows in CI without a nightly toolchain.

use std::collections::BTreeMap;

use meshplane_core::{
    duration::{GoDuration, KumaDuration, Timeout},
    format::{parse_json, parse_yaml, parse_yaml_documents, to_yaml},
    model::Resource,
    template::{CnTemplate, RenderError},
};

/// Untrusted bytes through the resource parser, as the REST API and `meshctl apply` see them:
/// JSON or YAML → `Resource::from_universal`. Whatever parses must round-trip: `to_universal` →
/// JSON text → parse → decode gives the same resource, and so does the YAML `meshctl get -o yaml`
/// would print.
pub fn resource(data: &[u8]) {
    if let Ok(doc) = parse_json(data) {
        check_resource(&doc);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(doc) = parse_yaml(text) {
            check_resource(&doc);
        }
        // `meshctl apply -f` reads a stream of documents.
        if let Ok(docs) = parse_yaml_documents(text) {
            for doc in docs.iter().take(8) {
                check_resource(doc);
            }
        }
    }
}

fn check_resource(doc: &serde_json::Value) {
    let Ok(resource) = Resource::from_universal(doc) else {
        return;
    };
    let universal = resource.to_universal();

    // The universal form decodes to the same resource…
    let again = Resource::from_universal(&universal)
        .unwrap_or_else(|e| panic!("to_universal output does not decode: {e:?}\n{universal}"));
    assert_eq!(resource, again, "universal round trip changed the resource");

    // …and so does its JSON text…
    let text = serde_json::to_vec(&universal).expect("a Value serializes");
    let parsed = parse_json(&text).expect("our own JSON parses");
    let from_json = Resource::from_universal(&parsed).expect("our own JSON decodes");
    assert_eq!(
        resource, from_json,
        "JSON text round trip changed the resource"
    );

    // …and its YAML text.
    let yaml = to_yaml(&universal);
    let parsed =
        parse_yaml(&yaml).unwrap_or_else(|e| panic!("our own YAML does not parse: {e}\n{yaml}"));
    let from_yaml = Resource::from_universal(&parsed)
        .unwrap_or_else(|e| panic!("our own YAML does not decode: {e:?}\n{yaml}"));
    assert_eq!(
        resource, from_yaml,
        "YAML text round trip changed the resource:\n{yaml}"
    );
}

/// Kuma's duration grammar, Go's (protobuf durations) and timeouts: never a panic, the text kept
/// as written, and a parsed duration survives being printed by the program and parsed again.
pub fn duration(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(d) = KumaDuration::parse(s) {
        assert_eq!(d.as_str(), s, "the original text is kept");
        assert_eq!(d.to_string(), s);
        let value = d.as_duration();
        let printed = KumaDuration::from_duration(value);
        assert_eq!(
            printed.as_duration(),
            value,
            "from_duration keeps the value"
        );
        let reparsed = KumaDuration::parse(printed.as_str()).unwrap_or_else(|e| {
            panic!(
                "{:?} (printed for {s:?}) does not parse: {e}",
                printed.as_str()
            )
        });
        assert_eq!(
            reparsed.as_duration(),
            value,
            "{s:?} → {:?}",
            printed.as_str()
        );
        // Everything in Kuma's grammar is a valid timeout with the same value.
        let t = Timeout::parse(s)
            .unwrap_or_else(|e| panic!("{s:?} is a duration but not a timeout: {e}"));
        assert_eq!(t.as_duration(), value, "{s:?}");
    }
    if let Ok(g) = GoDuration::parse(s) {
        let json = serde_json::to_value(&g).expect("serializes");
        assert_eq!(
            json,
            serde_json::Value::String(s.to_string()),
            "the text round-trips"
        );
        // A non-negative Go duration is a valid timeout with the same value.
        if let Ok(nanos) = u64::try_from(g.nanos()) {
            let t = Timeout::parse(s)
                .unwrap_or_else(|e| panic!("{s:?} is a Go duration but not a timeout: {e}"));
            if KumaDuration::parse(s).is_err() {
                assert_eq!(t.as_duration().as_nanos(), u128::from(nanos), "{s:?}");
            }
        }
    }
    if let Ok(t) = Timeout::parse(s) {
        let json = serde_json::to_value(&t).expect("serializes");
        assert_eq!(
            json,
            serde_json::Value::String(s.to_string()),
            "the text round-trips"
        );
        let again = Timeout::parse(s).expect("parsing is deterministic");
        assert_eq!(again, t);
    }
}

/// The `commonName` template: parsing arbitrary text and rendering it with arbitrary tags never
/// panics, a parsed template prints as its source, and it renders the same way twice.
///
/// Input: the template source, then optionally a NUL byte and tags as `name=value` lines (a name
/// may repeat: several values). Plain-text seeds are templates without tags.
pub fn template(data: &[u8]) {
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
}
