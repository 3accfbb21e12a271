//! Kuma's duration grammar, Go's (protobuf durations) and timeouts: never a panic, the text kept as
//! written, and a parsed duration survives being printed by the program and parsed again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshplane_core::duration::{GoDuration, KumaDuration, Timeout};

fuzz_target!(|data: &[u8]| {
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
        assert_eq!(json, serde_json::Value::String(s.to_string()), "the text round-trips");
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
});
