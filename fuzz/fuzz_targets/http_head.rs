//! Bytes from an HTTP client through the request-head parser, whole and cut
//! in two: no panic; a whole head ends inside the bytes, at a blank line,
//! with a path and a body within bounds; and cutting the bytes after a
//! head's end does not change how it parses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use redis_vitals::http::{parse_head, Parsed, MAX_DISCARDED_BODY};

fuzz_target!(|data: &[u8]| {
    let whole = parse_head(data);
    if let Parsed::Complete(req, n) = &whole {
        assert!(*n <= data.len());
        assert!(data[..*n].ends_with(b"\n\n") || data[..*n].ends_with(b"\n\r\n"));
        assert!(req.path.starts_with('/'));
        assert!(req.body <= MAX_DISCARDED_BODY);
        let cut = data.first().map_or(0, |b| *b as usize) % (data.len() - n + 1);
        let again = parse_head(&data[..n + cut]);
        assert_eq!(format!("{whole:?}"), format!("{again:?}"));
    }
});
