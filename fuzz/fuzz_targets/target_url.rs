//! Target addresses: `parse_addr` and `redact_url` never panic, an accepted
//! address is consistent, and redaction hides every password the parser
//! would use.
#![no_main]

use libfuzzer_sys::fuzz_target;
use redis_vitals::redis::target::{format_host_port, parse_addr, redact_url, Endpoint};

fuzz_target!(|data: &[u8]| {
    let input = String::from_utf8_lossy(data);
    let parsed = parse_addr(&input);
    let redacted = redact_url(&input);
    if let Ok(a) = &parsed {
        assert!((0..=1_000_000).contains(&a.db));
        assert!(!a.addr.is_empty());
        if let Endpoint::Tcp { host, port } = &a.endpoint {
            assert!(!host.is_empty());
            assert_eq!(a.addr, format_host_port(host, *port));
        }
        if let Some(pw) = &a.password {
            let pw = pw.expose();
            // Debug output hides it (unless it also occurs in the other
            // fields or in the mask itself).
            let mut without = a.clone();
            without.password = None;
            if !format!("{without:?}").contains(pw) && !"Some(<redacted>)".contains(pw) {
                assert!(!format!("{a:?}").contains(pw), "password in Debug");
            }
            // The raw (still percent-encoded) password as the URL parser
            // saw it must not survive redaction between ':' and '@'.
            let text = input.trim();
            let full = if text.contains("://") {
                text.to_string()
            } else {
                format!("redis://{text}")
            };
            // (A password that is the mask itself proves nothing.)
            let raw = url::Url::parse(&full)
                .ok()
                .and_then(|u| u.password().map(str::to_owned))
                .filter(|raw| raw != "****");
            if let Some(raw) = raw {
                assert!(
                    !redacted.contains(&format!(":{raw}@")),
                    "password survives redaction: {redacted:?}"
                );
            }
        }
    }
    // Whatever the input, the redacted text parses to no password but the
    // mask.
    if let Ok(r) = parse_addr(&redacted) {
        if let Some(pw) = r.password {
            assert_eq!(pw.expose(), "****", "{redacted:?}");
        }
    }
});
