//! Reading JSON lines from files, gzip files and stdin, with explicit limits.
//!
//! A line longer than the limit is not buffered whole: its first bytes are kept for the
//! dead-letter record and the rest is skipped up to the next newline, so one absurd line
//! cannot exhaust memory and never stops the run.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use anyhow::{Context as _, Result};
use flate2::read::MultiGzDecoder;

/// How much of an oversized line is kept for its dead-letter record.
pub const OVERSIZE_KEEP: usize = 64 * 1024;

/// Open a source: `-` is stdin; gzip is recognised by its magic bytes, not its name.
pub fn open(path: &str) -> Result<Box<dyn BufRead>> {
    let raw: Box<dyn Read> = if path == "-" {
        Box::new(io::stdin().lock())
    } else {
        Box::new(File::open(Path::new(path)).with_context(|| format!("cannot open input {path}"))?)
    };
    let mut buffered = BufReader::with_capacity(256 * 1024, raw);
    let magic = buffered
        .fill_buf()
        .with_context(|| format!("cannot read input {path}"))?;
    if magic.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(BufReader::with_capacity(
            256 * 1024,
            MultiGzDecoder::new(buffered),
        )))
    } else {
        Ok(Box::new(buffered))
    }
}

/// One line read.
pub enum Line {
    /// A line within the limit (without its newline, `\r` stripped).
    Ok,
    /// A line over the limit: `buf` holds its first bytes; `total` is its full length.
    Oversized { total: u64 },
}

/// Read the next line into `buf` (cleared first). Returns `None` at end of input.
pub fn read_line(
    reader: &mut dyn BufRead,
    buf: &mut Vec<u8>,
    max: usize,
) -> io::Result<Option<Line>> {
    buf.clear();
    let mut total: u64 = 0;
    let mut oversized = false;
    let mut read_any = false;
    loop {
        let chunk = match reader.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            break;
        }
        read_any = true;
        let (part, found) = match memchr::memchr(b'\n', chunk) {
            Some(i) => (&chunk[..i], Some(i)),
            None => (chunk, None),
        };
        total += part.len() as u64;
        if !oversized {
            if buf.len() + part.len() <= max {
                buf.extend_from_slice(part);
            } else {
                oversized = true;
                let keep = OVERSIZE_KEEP.min(max);
                buf.truncate(keep);
                let room = keep - buf.len();
                buf.extend_from_slice(&part[..room.min(part.len())]);
            }
        }
        match found {
            Some(i) => {
                reader.consume(i + 1);
                break;
            }
            None => {
                let n = chunk.len();
                reader.consume(n);
            }
        }
    }
    if !read_any {
        return Ok(None);
    }
    if oversized {
        return Ok(Some(Line::Oversized { total }));
    }
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    Ok(Some(Line::Ok))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_limits_and_crlf() {
        let data = b"{\"a\":1}\r\nxxxxxxxxxxxxxxxxxxxx\n\nlast".to_vec();
        let mut r = io::Cursor::new(data);
        let mut buf = Vec::new();
        assert!(matches!(
            read_line(&mut r, &mut buf, 10).unwrap(),
            Some(Line::Ok)
        ));
        assert_eq!(buf, b"{\"a\":1}");
        match read_line(&mut r, &mut buf, 10).unwrap() {
            Some(Line::Oversized { total }) => assert_eq!(total, 20),
            _ => panic!("expected oversized"),
        }
        assert!(buf.len() <= 10);
        assert!(matches!(
            read_line(&mut r, &mut buf, 10).unwrap(),
            Some(Line::Ok)
        ));
        assert!(buf.is_empty());
        assert!(matches!(
            read_line(&mut r, &mut buf, 10).unwrap(),
            Some(Line::Ok)
        ));
        assert_eq!(buf, b"last");
        assert!(read_line(&mut r, &mut buf, 10).unwrap().is_none());
    }
}
