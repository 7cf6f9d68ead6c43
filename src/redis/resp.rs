//! RESP2 replies: encoding our commands and decoding the server's replies.
//!
//! Pure functions over bytes, no I/O. The poller sends a handful of
//! commands (AUTH, SELECT, INFO, CLUSTER INFO/NODES, CONFIG GET) and reads
//! one reply to each, so the decoder supports exactly RESP2 and refuses the
//! rest. It is written to be fed a growing buffer: [`Framer`] finds where a
//! reply ends, resuming where the last call stopped so a reply that arrives
//! in many reads costs linear time, and [`decode`] turns a complete reply
//! into a [`Reply`]. Limits are checked before anything is buffered: a
//! declared length larger than what the poll may still read fails at once.

use std::fmt;

/// Longest status/error/integer line: our replies' lines are a few dozen
/// bytes; bounding them bounds the rescan of an unterminated line.
pub const MAX_LINE: usize = 64 * 1024;
/// Deepest array nesting accepted: none of our commands' replies nests at
/// all; a little room, no stack growth driven by the server.
pub const MAX_DEPTH: usize = 4;
/// Most elements in one array: CONFIG GET maxclients answers 2; a server
/// answering thousands is not answering us.
pub const MAX_ELEMENTS: i64 = 1024;

/// One decoded reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`
    Status(String),
    /// `-ERR ...`: the full line, code first.
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    /// `$-1` or `*-1`.
    Nil,
    Array(Vec<Reply>),
}

impl Reply {
    /// The error code of an error reply (`NOPERM`, `LOADING`...).
    pub fn error_code(&self) -> Option<&str> {
        match self {
            Reply::Error(line) => line.split(' ').next(),
            _ => None,
        }
    }
}

/// Why bytes are not a reply we accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RespError {
    /// Not RESP2, or not well formed.
    Protocol(&'static str),
    /// A declared length or count above the limits.
    TooLarge,
}

impl fmt::Display for RespError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RespError::Protocol(why) => write!(f, "invalid reply: {why}"),
            RespError::TooLarge => f.write_str("reply declares more than the size cap"),
        }
    }
}

/// A command as RESP: an array of bulk strings.
pub fn encode(args: &[&[u8]], out: &mut Vec<u8>) {
    out.push(b'*');
    out.extend_from_slice(args.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    for a in args {
        out.push(b'$');
        out.extend_from_slice(a.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// Finds the end of one reply in a buffer that grows between calls.
#[derive(Debug, Default)]
pub struct Framer {
    /// Start of the first element not yet complete.
    pos: usize,
    /// Elements still expected by each open array, outermost first.
    open: Vec<i64>,
}

impl Framer {
    pub fn new() -> Self {
        Self::default()
    }

    /// `Ok(Some(end))` once `buf[..end]` holds a whole reply, `Ok(None)`
    /// while more bytes are needed. `max_bytes` is the most the reply may
    /// take in total; a declared bulk length beyond it fails at once.
    /// Call again with the same buffer, grown, after `Ok(None)`.
    pub fn advance(&mut self, buf: &[u8], max_bytes: usize) -> Result<Option<usize>, RespError> {
        loop {
            let Some((kind, value, body)) = header(buf, self.pos)? else {
                return Ok(None);
            };
            match kind {
                b'+' | b'-' => self.pos = body,
                b':' => {
                    int(value)?;
                    self.pos = body;
                }
                b'$' => {
                    let len = int(value)?;
                    if len == -1 {
                        self.pos = body;
                    } else if len < 0 {
                        return Err(RespError::Protocol("negative bulk length"));
                    } else {
                        let len = usize::try_from(len).map_err(|_| RespError::TooLarge)?;
                        let end = body
                            .checked_add(len)
                            .and_then(|e| e.checked_add(2))
                            .filter(|e| *e <= max_bytes)
                            .ok_or(RespError::TooLarge)?;
                        if buf.len() < end {
                            // Keep `pos` at the header: it is re-read (one
                            // short line) when more bytes arrive.
                            return Ok(None);
                        }
                        if &buf[end - 2..end] != b"\r\n" {
                            return Err(RespError::Protocol("bulk string not followed by CRLF"));
                        }
                        self.pos = end;
                    }
                }
                b'*' => {
                    let n = int(value)?;
                    if n < -1 {
                        return Err(RespError::Protocol("negative array length"));
                    }
                    if n > MAX_ELEMENTS {
                        return Err(RespError::TooLarge);
                    }
                    self.pos = body;
                    if n > 0 {
                        if self.open.len() >= MAX_DEPTH {
                            return Err(RespError::Protocol("arrays nested too deep"));
                        }
                        self.open.push(n);
                        continue;
                    }
                }
                _ => return Err(RespError::Protocol("unknown reply type (not RESP2)")),
            }
            // One element complete: close every array it completes.
            loop {
                match self.open.last_mut() {
                    None => return Ok(Some(self.pos)),
                    Some(left) => {
                        *left -= 1;
                        if *left > 0 {
                            break;
                        }
                        self.open.pop();
                    }
                }
            }
        }
    }
}

/// A reply line: its type byte, the text after it, and the offset just past
/// its CRLF.
type Line<'a> = (u8, &'a [u8], usize);

/// The line at `pos`; `None` while it is incomplete.
fn header(buf: &[u8], pos: usize) -> Result<Option<Line<'_>>, RespError> {
    let Some(rest) = buf.get(pos..) else {
        return Ok(None);
    };
    let window = &rest[..rest.len().min(MAX_LINE + 2)];
    match window.windows(2).position(|w| w == b"\r\n") {
        Some(0) => Err(RespError::Protocol("empty line")),
        Some(i) => Ok(Some((rest[0], &rest[1..i], pos + i + 2))),
        None if rest.len() > MAX_LINE => Err(RespError::Protocol("line too long")),
        None => Ok(None),
    }
}

fn int(text: &[u8]) -> Result<i64, RespError> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(RespError::Protocol("not an integer"))
}

/// Decodes the complete reply at the start of `buf` (as found by
/// [`Framer::advance`]); returns it and the bytes it used.
pub fn decode(buf: &[u8]) -> Result<(Reply, usize), RespError> {
    decode_at(buf, 0, 0)
}

fn decode_at(buf: &[u8], pos: usize, depth: usize) -> Result<(Reply, usize), RespError> {
    let incomplete = RespError::Protocol("incomplete reply");
    let (kind, value, body) = header(buf, pos)?.ok_or(incomplete.clone())?;
    // Lossy: a status or error line is only ever shown or matched against
    // ASCII codes, and a framed reply then always decodes (the fuzzer found
    // framing and decoding disagreeing on a non-UTF-8 error line).
    let text = || String::from_utf8_lossy(value).into_owned();
    match kind {
        b'+' => Ok((Reply::Status(text()), body)),
        b'-' => Ok((Reply::Error(text()), body)),
        b':' => Ok((Reply::Int(int(value)?), body)),
        b'$' => {
            let len = int(value)?;
            if len == -1 {
                return Ok((Reply::Nil, body));
            }
            let len = usize::try_from(len).map_err(|_| RespError::Protocol("bad bulk length"))?;
            let end = body.checked_add(len).ok_or(RespError::TooLarge)?;
            let data = buf.get(body..end).ok_or(incomplete)?;
            Ok((Reply::Bulk(data.to_vec()), end + 2))
        }
        b'*' => {
            let n = int(value)?;
            if n == -1 {
                return Ok((Reply::Nil, body));
            }
            // Same rule as the framer: only a non-empty array opens a level.
            if !(0..=MAX_ELEMENTS).contains(&n) || (n > 0 && depth >= MAX_DEPTH) {
                return Err(RespError::Protocol("bad array"));
            }
            let mut items = Vec::with_capacity(n as usize);
            let mut at = body;
            for _ in 0..n {
                let (item, next) = decode_at(buf, at, depth + 1)?;
                items.push(item);
                at = next;
            }
            Ok((Reply::Array(items), at))
        }
        _ => Err(RespError::Protocol("unknown reply type (not RESP2)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(bytes: &[u8]) -> Result<Option<(Reply, usize)>, RespError> {
        let mut f = Framer::new();
        match f.advance(bytes, 1 << 20)? {
            Some(end) => Ok(Some(decode(&bytes[..end])?)),
            None => Ok(None),
        }
    }

    #[test]
    fn decodes_every_type() {
        assert_eq!(
            whole(b"+OK\r\n").unwrap(),
            Some((Reply::Status("OK".into()), 5))
        );
        let (r, _) = whole(b"-NOPERM no\r\n").unwrap().unwrap();
        assert_eq!(r.error_code(), Some("NOPERM"));
        assert_eq!(whole(b":-12\r\n").unwrap().unwrap().0, Reply::Int(-12));
        assert_eq!(
            whole(b"$5\r\nab\r\nc\r\n").unwrap().unwrap().0,
            Reply::Bulk(b"ab\r\nc".to_vec())
        );
        assert_eq!(
            whole(b"$0\r\n\r\n").unwrap().unwrap().0,
            Reply::Bulk(vec![])
        );
        assert_eq!(whole(b"$-1\r\n").unwrap().unwrap().0, Reply::Nil);
        assert_eq!(whole(b"*-1\r\n").unwrap().unwrap().0, Reply::Nil);
        assert_eq!(whole(b"*0\r\n").unwrap().unwrap().0, Reply::Array(vec![]));
        assert_eq!(
            whole(b"*2\r\n$10\r\nmaxclients\r\n$5\r\n10000\r\n")
                .unwrap()
                .unwrap(),
            (
                Reply::Array(vec![
                    Reply::Bulk(b"maxclients".to_vec()),
                    Reply::Bulk(b"10000".to_vec())
                ]),
                32
            )
        );
        assert_eq!(
            whole(b"*2\r\n*1\r\n:1\r\n*0\r\n").unwrap().unwrap().0,
            Reply::Array(vec![
                Reply::Array(vec![Reply::Int(1)]),
                Reply::Array(vec![])
            ])
        );
    }

    /// Found by the `resp` fuzz target: a framed line that is not UTF-8
    /// decodes (lossily) instead of failing after framing accepted it.
    #[test]
    fn non_utf8_lines_decode() {
        let (r, used) = whole(b"-ERR \xff\xfe\r\n").unwrap().unwrap();
        assert_eq!(used, 9);
        assert_eq!(r.error_code(), Some("ERR"));
        // An empty array at the deepest level opens no level: the framer
        // accepts it, so the decoder must too (also found by the fuzzer).
        let deep = b"*1\r\n*1\r\n*1\r\n*1\r\n*0\r\n";
        assert_eq!(whole(deep).unwrap().unwrap().1, deep.len());
    }

    /// Fed one byte at a time, the framer finds the same end as when fed
    /// the whole reply, and never before the reply is complete.
    #[test]
    fn frames_replies_arriving_in_pieces() {
        let reply = b"*3\r\n$3\r\nabc\r\n*2\r\n+x\r\n:5\r\n$-1\r\n";
        let mut f = Framer::new();
        for n in 0..reply.len() {
            assert_eq!(f.advance(&reply[..n], 1 << 20), Ok(None), "at {n}");
        }
        assert_eq!(f.advance(reply, 1 << 20), Ok(Some(reply.len())));
    }

    #[test]
    fn refuses_what_is_not_a_reply_to_us() {
        let p = |b: &[u8]| whole(b).unwrap_err();
        assert!(matches!(p(b"HTTP/1.1 200 OK\r\n"), RespError::Protocol(_)));
        assert!(matches!(p(b"%1\r\n+a\r\n+b\r\n"), RespError::Protocol(_)));
        assert!(matches!(p(b"$x\r\n"), RespError::Protocol(_)));
        assert!(matches!(p(b"$-2\r\n"), RespError::Protocol(_)));
        assert!(matches!(p(b"$3\r\nabcde\r\n"), RespError::Protocol(_)));
        assert!(matches!(p(b"\r\n"), RespError::Protocol(_)));
        assert!(matches!(
            p(b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n"),
            RespError::Protocol(_)
        ));
        // Declared sizes fail before the bytes arrive.
        assert_eq!(p(b"$5000000000\r\n"), RespError::TooLarge);
        assert_eq!(p(b"*4000000000\r\n"), RespError::TooLarge);
        assert_eq!(
            p(b"$99999999999999999999999\r\n"),
            RespError::Protocol("not an integer")
        );
        let mut long = vec![b'+'; MAX_LINE + 10];
        long[0] = b'+';
        assert_eq!(p(&long), RespError::Protocol("line too long"));
    }

    #[test]
    fn bulk_length_is_checked_against_the_budget() {
        let mut f = Framer::new();
        assert_eq!(f.advance(b"$100\r\n", 50), Err(RespError::TooLarge));
        let mut f = Framer::new();
        assert_eq!(f.advance(b"$10\r\n", 100), Ok(None));
    }

    #[test]
    fn encodes_commands() {
        let mut out = Vec::new();
        encode(&[b"CONFIG", b"GET", b"maxclients"], &mut out);
        assert_eq!(
            out,
            b"*3\r\n$6\r\nCONFIG\r\n$3\r\nGET\r\n$10\r\nmaxclients\r\n"
        );
    }
}
