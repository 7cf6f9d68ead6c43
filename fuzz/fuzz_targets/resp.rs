//! Bytes from a node through the RESP framer and decoder, fed whole and in
//! two pieces: no panic, both agree on where the reply ends, and a framed
//! reply decodes to exactly that length.
#![no_main]

use libfuzzer_sys::fuzz_target;
use redis_vitals::redis::resp::{decode, Framer};

fuzz_target!(|data: &[u8]| {
    let whole = Framer::new().advance(data, 1 << 20);
    let cut = data.first().map_or(0, |b| *b as usize % (data.len() + 1));
    let mut framer = Framer::new();
    let pieces = match framer.advance(&data[..cut], 1 << 20) {
        Ok(None) => framer.advance(data, 1 << 20),
        other => other,
    };
    if let (Ok(a), Ok(b)) = (&whole, &pieces) {
        assert_eq!(a, b);
    }
    if let Ok(Some(end)) = whole {
        let (_, used) = decode(&data[..end]).expect("a framed reply decodes");
        assert_eq!(used, end);
    }
});
