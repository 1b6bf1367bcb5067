//! SPDY/3.1 framing, as much of it as Kubernetes' streaming clients speak (the
//! `moby/spdystream` library behind `kubectl port-forward`): control frames (SYN_STREAM,
//! SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE) and data frames.
//!
//! Header blocks arrive zlib-compressed with the dictionary of the SPDY/3 draft, one
//! compression context per connection and direction. Incoming blocks are inflated with
//! flate2; outgoing blocks are written as stored (uncompressed) deflate blocks of one
//! zlib stream, which any inflater reads without a dictionary.
//!
//! [`Decoder`] is pure: bytes in, frames out, whatever the chunking. Everything a peer sends
//! is bounded: frames above [`MAX_FRAME`] bytes, header blocks inflating past
//! [`MAX_HEADER_BLOCK`] and malformed blocks are errors, never panics.

use std::sync::LazyLock;

use bytes::{Buf, Bytes, BytesMut};

/// The largest frame payload accepted.
pub const MAX_FRAME: usize = 1 << 20;
/// The largest inflated header block accepted.
pub const MAX_HEADER_BLOCK: usize = 64 << 10;

const VERSION: u16 = 3;
const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const SETTINGS: u16 = 4;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const WINDOW_UPDATE: u16 = 9;
/// The FIN flag (data frames and SYN_STREAM/SYN_REPLY/HEADERS).
pub const FLAG_FIN: u8 = 1;

/// RST_STREAM status: the stream is refused.
pub const REFUSED_STREAM: u32 = 3;
/// RST_STREAM status: cancelled.
pub const CANCEL: u32 = 5;

/// The header compression dictionary of the SPDY/3 draft (section 2.6.10.1): header names
/// and common values, each with a 32-bit big-endian length, then a run of status codes,
/// reason phrases, dates and media types as plain text.
pub static DICTIONARY: LazyLock<Vec<u8>> = LazyLock::new(|| {
    const WORDS: &[&str] = &[
        "options",
        "head",
        "post",
        "put",
        "delete",
        "trace",
        "accept",
        "accept-charset",
        "accept-encoding",
        "accept-language",
        "accept-ranges",
        "age",
        "allow",
        "authorization",
        "cache-control",
        "connection",
        "content-base",
        "content-encoding",
        "content-language",
        "content-length",
        "content-location",
        "content-md5",
        "content-range",
        "content-type",
        "date",
        "etag",
        "expect",
        "expires",
        "from",
        "host",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-range",
        "if-unmodified-since",
        "last-modified",
        "location",
        "max-forwards",
        "pragma",
        "proxy-authenticate",
        "proxy-authorization",
        "range",
        "referer",
        "retry-after",
        "server",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "vary",
        "via",
        "warning",
        "www-authenticate",
        "method",
        "get",
        "status",
        "200 OK",
        "version",
        "HTTP/1.1",
        "url",
        "public",
        "set-cookie",
        "keep-alive",
        "origin",
    ];
    const TEXT: &str = concat!(
        "100101201202205206300302303304305306307402405406407408409410411412413414415416417",
        "502504505",
        "203 Non-Authoritative Information",
        "204 No Content",
        "301 Moved Permanently",
        "400 Bad Request",
        "401 Unauthorized",
        "403 Forbidden",
        "404 Not Found",
        "500 Internal Server Error",
        "501 Not Implemented",
        "503 Service Unavailable",
        "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 ",
        "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT",
        "chunked,text/html,image/png,image/jpg,image/gif,application/xml,",
        "application/xhtml+xml,text/plain,text/javascript,public",
        "privatemax-age=gzip,deflate,sdch",
        "charset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
    );
    let mut d = Vec::with_capacity(1500);
    for w in WORDS {
        d.extend_from_slice(&u32::try_from(w.len()).unwrap_or(0).to_be_bytes());
        d.extend_from_slice(w.as_bytes());
    }
    d.extend_from_slice(TEXT.as_bytes());
    d
});

/// A frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// A new stream from the peer, with its headers (names lowercase).
    SynStream {
        id: u32,
        fin: bool,
        headers: Vec<(String, String)>,
    },
    /// The answer to a stream we opened.
    SynReply {
        id: u32,
        fin: bool,
        headers: Vec<(String, String)>,
    },
    /// A stream is reset.
    RstStream { id: u32, status: u32 },
    /// Settings (ignored by us).
    Settings,
    /// A ping, to echo back.
    Ping(u32),
    /// The peer is going away.
    GoAway,
    /// More headers on a stream.
    Headers { id: u32 },
    /// Flow-control credit.
    WindowUpdate { id: u32, delta: u32 },
    /// Stream data.
    Data { id: u32, fin: bool, data: Bytes },
}

/// Why a peer's bytes are not SPDY/3.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("SPDY frame of {0} bytes is larger than allowed")]
    TooLarge(usize),
    #[error("unsupported SPDY version {0}")]
    Version(u16),
    #[error("malformed SPDY {0} frame")]
    Malformed(&'static str),
    #[error("SPDY header block does not inflate: {0}")]
    Inflate(String),
}

/// Turns a peer's byte stream into frames.
pub struct Decoder {
    buf: BytesMut,
    inflate: flate2::Decompress,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder {
            buf: BytesMut::new(),
            inflate: flate2::Decompress::new(true),
        }
    }
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl Decoder {
    /// Adds bytes read from the peer.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame, if one has arrived.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, Error> {
        if self.buf.len() < 8 {
            return Ok(None);
        }
        let len = usize::try_from(be32(&[0, self.buf[5], self.buf[6], self.buf[7]])).unwrap_or(usize::MAX);
        if len > MAX_FRAME {
            return Err(Error::TooLarge(len));
        }
        if self.buf.len() < 8 + len {
            return Ok(None);
        }
        let head = self.buf.split_to(8);
        let body = self.buf.split_to(len).freeze();
        let flags = head[4];
        let fin = flags & FLAG_FIN != 0;
        if head[0] & 0x80 == 0 {
            let id = be32(&head[..4]) & 0x7fff_ffff;
            return Ok(Some(Frame::Data { id, fin, data: body }));
        }
        let version = u16::from_be_bytes([head[0] & 0x7f, head[1]]);
        if version != VERSION {
            return Err(Error::Version(version));
        }
        let kind = u16::from_be_bytes([head[2], head[3]]);
        let id_at = |at: usize, what: &'static str| -> Result<u32, Error> {
            body.get(at..at + 4)
                .map(|b| be32(b) & 0x7fff_ffff)
                .ok_or(Error::Malformed(what))
        };
        Ok(Some(match kind {
            SYN_STREAM => {
                let id = id_at(0, "SYN_STREAM")?;
                let block = body.get(10..).ok_or(Error::Malformed("SYN_STREAM"))?;
                Frame::SynStream {
                    id,
                    fin,
                    headers: self.headers(block)?,
                }
            }
            SYN_REPLY => {
                let id = id_at(0, "SYN_REPLY")?;
                let block = body.get(4..).ok_or(Error::Malformed("SYN_REPLY"))?;
                Frame::SynReply {
                    id,
                    fin,
                    headers: self.headers(block)?,
                }
            }
            HEADERS => {
                let id = id_at(0, "HEADERS")?;
                let block = body.get(4..).ok_or(Error::Malformed("HEADERS"))?;
                // Inflated to keep the compression context in step; nothing reads them.
                self.headers(block)?;
                Frame::Headers { id }
            }
            RST_STREAM => Frame::RstStream {
                id: id_at(0, "RST_STREAM")?,
                status: id_at(4, "RST_STREAM")?,
            },
            PING => Frame::Ping(body.get(..4).map(be32).ok_or(Error::Malformed("PING"))?),
            WINDOW_UPDATE => Frame::WindowUpdate {
                id: id_at(0, "WINDOW_UPDATE")?,
                delta: id_at(4, "WINDOW_UPDATE")?,
            },
            SETTINGS => Frame::Settings,
            GOAWAY => Frame::GoAway,
            // Unknown control frames are ignored, as the draft says.
            _ => Frame::Settings,
        }))
    }

    /// Inflates one header block (continuing the connection's zlib stream) and parses it.
    fn headers(&mut self, block: &[u8]) -> Result<Vec<(String, String)>, Error> {
        let mut out = Vec::with_capacity(256);
        let mut input = block;
        loop {
            if out.len() == out.capacity() {
                if out.len() >= MAX_HEADER_BLOCK {
                    return Err(Error::TooLarge(out.len()));
                }
                out.reserve(out.len().clamp(256, MAX_HEADER_BLOCK - out.len()));
            }
            let (before_in, before_out) = (self.inflate.total_in(), out.len());
            let mut asked_dictionary = false;
            match self
                .inflate
                .decompress_vec(input, &mut out, flate2::FlushDecompress::Sync)
            {
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inflate
                        .set_dictionary(&DICTIONARY)
                        .map_err(|e| Error::Inflate(e.to_string()))?;
                    asked_dictionary = true;
                }
                Err(e) => return Err(Error::Inflate(e.to_string())),
            }
            let used = usize::try_from(self.inflate.total_in() - before_in).unwrap_or(input.len());
            input = &input[used.min(input.len())..];
            let full = out.len() == out.capacity();
            if input.is_empty() && !full {
                break;
            }
            if used == 0 && out.len() == before_out && !asked_dictionary && !full {
                return Err(Error::Inflate("no progress".into()));
            }
        }
        parse_block(&out)
    }
}

/// A header block: a count, then length-prefixed names and values (values joined by NUL).
fn parse_block(b: &[u8]) -> Result<Vec<(String, String)>, Error> {
    let mut b = b;
    let take = |b: &mut &[u8]| -> Result<String, Error> {
        if b.len() < 4 {
            return Err(Error::Malformed("header block"));
        }
        let n = usize::try_from(be32(b)).unwrap_or(usize::MAX);
        b.advance(4);
        if b.len() < n {
            return Err(Error::Malformed("header block"));
        }
        let s = String::from_utf8_lossy(&b[..n]).into_owned();
        b.advance(n);
        Ok(s)
    };
    if b.len() < 4 {
        return Err(Error::Malformed("header block"));
    }
    let count = be32(b);
    b.advance(4);
    let mut headers = Vec::new();
    for _ in 0..count {
        let name = take(&mut b)?.to_ascii_lowercase();
        let value = take(&mut b)?;
        headers.push((name, value));
    }
    Ok(headers)
}

/// The value of header `name` of a stream.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

fn control(kind: u16, flags: u8, body: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(8 + body.len());
    f.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
    f.extend_from_slice(&kind.to_be_bytes());
    let len = u32::try_from(body.len()).unwrap_or(0) & 0x00ff_ffff;
    f.extend_from_slice(&(u32::from(flags) << 24 | len).to_be_bytes());
    f.extend_from_slice(body);
    f
}

/// Writes our side's frames; header blocks go out as stored blocks of one zlib stream.
#[derive(Default)]
pub struct Encoder {
    started: bool,
}

impl Encoder {
    /// The SYN_REPLY accepting stream `id`, without headers.
    pub fn syn_reply(&mut self, id: u32) -> Vec<u8> {
        let mut body = (id & 0x7fff_ffff).to_be_bytes().to_vec();
        self.header_block(&[], &mut body);
        control(SYN_REPLY, 0, &body)
    }

    fn header_block(&mut self, headers: &[(&str, &str)], out: &mut Vec<u8>) {
        let mut raw = u32::try_from(headers.len()).unwrap_or(0).to_be_bytes().to_vec();
        for (n, v) in headers {
            for s in [n, v] {
                raw.extend_from_slice(&u32::try_from(s.len()).unwrap_or(0).to_be_bytes());
                raw.extend_from_slice(s.as_bytes());
            }
        }
        if !self.started {
            // zlib header: deflate, 32 KiB window, no preset dictionary.
            out.extend_from_slice(&[0x78, 0x01]);
            self.started = true;
        }
        // The data, then an empty stored block (what a sync flush writes): an inflater
        // hands the data over once it reads that marker, within this frame, and never
        // looks past the frame for more.
        for chunk in raw.chunks(0xffff).chain([&[][..]]) {
            let n = u16::try_from(chunk.len()).unwrap_or(0);
            out.push(0); // not final, stored
            out.extend_from_slice(&n.to_le_bytes());
            out.extend_from_slice(&(!n).to_le_bytes());
            out.extend_from_slice(chunk);
        }
    }
}

/// A data frame on stream `id`.
pub fn data(id: u32, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(8 + payload.len());
    f.extend_from_slice(&(id & 0x7fff_ffff).to_be_bytes());
    let len = u32::try_from(payload.len()).unwrap_or(0) & 0x00ff_ffff;
    f.extend_from_slice(&(u32::from(if fin { FLAG_FIN } else { 0 }) << 24 | len).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A PING answering the peer's.
pub fn ping(id: u32) -> Vec<u8> {
    control(PING, 0, &id.to_be_bytes())
}

/// A RST_STREAM.
pub fn rst_stream(id: u32, status: u32) -> Vec<u8> {
    let mut body = (id & 0x7fff_ffff).to_be_bytes().to_vec();
    body.extend_from_slice(&status.to_be_bytes());
    control(RST_STREAM, 0, &body)
}

/// A WINDOW_UPDATE crediting `delta` bytes to stream `id`.
pub fn window_update(id: u32, delta: u32) -> Vec<u8> {
    let mut body = (id & 0x7fff_ffff).to_be_bytes().to_vec();
    body.extend_from_slice(&(delta & 0x7fff_ffff).to_be_bytes());
    control(WINDOW_UPDATE, 0, &body)
}

/// A client's SYN_STREAM, compressed as spdystream does (zlib with the dictionary,
/// sync-flushed), through the same compressor for every block of a connection.
#[cfg(test)]
pub(crate) fn test_syn_stream(z: &mut flate2::Compress, id: u32, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut raw = u32::try_from(headers.len()).unwrap_or(0).to_be_bytes().to_vec();
    for (n, v) in headers {
        for s in [n, v] {
            raw.extend_from_slice(&u32::try_from(s.len()).unwrap_or(0).to_be_bytes());
            raw.extend_from_slice(s.as_bytes());
        }
    }
    let mut block = Vec::with_capacity(raw.len() + 64);
    let _ = z.compress_vec(&raw, &mut block, flate2::FlushCompress::Sync);
    let mut body = id.to_be_bytes().to_vec();
    body.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    body.extend_from_slice(&block);
    control(SYN_STREAM, 0, &body)
}

/// A client's header compressor (zlib with the dictionary).
#[cfg(test)]
pub(crate) fn test_compressor() -> flate2::Compress {
    let mut z = flate2::Compress::new(flate2::Compression::best(), true);
    let _ = z.set_dictionary(&DICTIONARY);
    z
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::{test_compressor as compressor, test_syn_stream as syn_stream};

    #[test]
    fn the_dictionary_is_the_drafts() {
        // Its length and its first and last bytes, as the draft prints them.
        assert_eq!(DICTIONARY.len(), 1423);
        assert_eq!(&DICTIONARY[..11], b"\0\0\0\x07options");
        assert!(DICTIONARY.ends_with(b",*,enq=0."));
    }

    #[test]
    fn streams_decode_across_any_chunking() {
        let mut z = compressor();
        let mut wire = syn_stream(
            &mut z,
            1,
            &[("streamtype", "error"), ("port", "8080"), ("requestid", "0")],
        );
        wire.extend(syn_stream(
            &mut z,
            3,
            &[("streamtype", "data"), ("port", "8080"), ("requestid", "0")],
        ));
        wire.extend(data(3, false, b"hello"));
        wire.extend(ping(7));
        wire.extend(data(3, true, b""));
        for chunk in [1, 3, 7, wire.len()] {
            let mut d = Decoder::default();
            let mut frames = vec![];
            for piece in wire.chunks(chunk) {
                d.push(piece);
                while let Some(f) = d.next_frame().unwrap() {
                    frames.push(f);
                }
            }
            assert_eq!(frames.len(), 5, "chunks of {chunk}");
            let Frame::SynStream { id: 3, ref headers, .. } = frames[1] else {
                panic!("{frames:?}")
            };
            assert_eq!(header(headers, "streamtype"), Some("data"));
            assert_eq!(header(headers, "port"), Some("8080"));
            assert_eq!(
                frames[2],
                Frame::Data {
                    id: 3,
                    fin: false,
                    data: Bytes::from_static(b"hello")
                }
            );
            assert_eq!(frames[3], Frame::Ping(7));
            assert_eq!(
                frames[4],
                Frame::Data {
                    id: 3,
                    fin: true,
                    data: Bytes::new()
                }
            );
        }
    }

    #[test]
    fn our_header_blocks_inflate_as_one_zlib_stream() {
        let mut e = Encoder::default();
        let mut z = flate2::Decompress::new(true);
        for id in [1u32, 3, 5] {
            let f = e.syn_reply(id);
            assert_eq!(&f[..4], &[0x80, 3, 0, 2]);
            let block = &f[12..];
            // Each block ends with the sync-flush marker.
            assert!(block.ends_with(&[0, 0, 0, 0xff, 0xff]), "{block:?}");
            let mut out = Vec::with_capacity(64);
            z.decompress_vec(block, &mut out, flate2::FlushDecompress::Sync)
                .unwrap();
            assert_eq!(out, [0, 0, 0, 0], "an empty header block");
        }
        // And our SYN_REPLY decodes with our own decoder too.
        let mut d = Decoder::default();
        d.push(&Encoder::default().syn_reply(9));
        assert_eq!(
            d.next_frame().unwrap(),
            Some(Frame::SynReply {
                id: 9,
                fin: false,
                headers: vec![]
            })
        );
    }

    proptest::proptest! {
        /// Whatever a peer sends, in whatever pieces, the decoder answers frames or an
        /// error, and never panics; after a valid SYN_STREAM, any garbage header block
        /// is an error, too.
        #[test]
        fn any_bytes_decode_or_fail_cleanly(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..4096),
            cut in 1usize..64,
            control in proptest::bool::ANY,
        ) {
            let mut d = Decoder::default();
            let mut wire = Vec::new();
            if control {
                // A control frame header around the garbage, so that it reaches the inflater.
                let body_len = bytes.len().min(0xff_ffff);
                wire.extend_from_slice(&[0x80, 3, 0, 1, 0]);
                wire.extend_from_slice(&u32::try_from(body_len).unwrap_or(0).to_be_bytes()[1..]);
            }
            wire.extend_from_slice(&bytes);
            'feed: for piece in wire.chunks(cut) {
                d.push(piece);
                loop {
                    match d.next_frame() {
                        Ok(Some(_)) => {}
                        Ok(None) => break,
                        Err(_) => break 'feed,
                    }
                }
            }
        }
    }

    #[test]
    fn hostile_bytes_are_errors() {
        let mut d = Decoder::default();
        d.push(&[0x80, 3, 0, 1, 0, 0xff, 0xff, 0xff]);
        assert_eq!(d.next_frame(), Err(Error::TooLarge(0xff_ffff)));
        let mut d = Decoder::default();
        d.push(&control(SYN_STREAM, 0, &[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 2, 3]));
        assert!(matches!(d.next_frame(), Err(Error::Inflate(_))));
        let mut d = Decoder::default();
        d.push(&control(RST_STREAM, 0, &[0, 0]));
        assert_eq!(d.next_frame(), Err(Error::Malformed("RST_STREAM")));
        let mut d = Decoder::default();
        d.push(&[0x80, 2, 0, 1, 0, 0, 0, 0]);
        assert_eq!(d.next_frame(), Err(Error::Version(2)));
        // A header block claiming more headers than it holds.
        let mut z = compressor();
        let mut raw = vec![];
        raw.extend_from_slice(&1000u32.to_be_bytes());
        let mut block = Vec::with_capacity(64);
        z.compress_vec(&raw, &mut block, flate2::FlushCompress::Sync).unwrap();
        let mut body = 1u32.to_be_bytes().to_vec();
        body.extend_from_slice(&[0; 6]);
        body.extend_from_slice(&block);
        let mut d = Decoder::default();
        d.push(&control(SYN_STREAM, 0, &body));
        assert_eq!(d.next_frame(), Err(Error::Malformed("header block")));
    }
}
