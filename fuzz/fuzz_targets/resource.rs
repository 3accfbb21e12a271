//! Untrusted bytes through the resource parser, as the REST API and `meshctl apply` see them: JSON or
//! YAML → `Resource::from_universal`. Whatever parses must round-trip: `to_universal` → JSON text →
//! parse → decode gives the same resource, and so does the YAML `meshctl get -o yaml` would print.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshplane_core::{
    format::{parse_json, parse_yaml, parse_yaml_documents, to_yaml},
    model::Resource,
};

fn check(doc: &serde_json::Value) {
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

fuzz_target!(|data: &[u8]| {
    if let Ok(doc) = parse_json(data) {
        check(&doc);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(doc) = parse_yaml(text) {
            check(&doc);
        }
        // `meshctl apply -f` reads a stream of documents.
        if let Ok(docs) = parse_yaml_documents(text) {
            for doc in docs.iter().take(8) {
                check(doc);
            }
        }
    }
});
