//! The revision high-water mark of a durable store: revisions never go backwards.
//!
//! SQLite drops the frames of its write-ahead log that fail their checksum, and every frame
//! after them, without an error. Were the log's tail damaged, acknowledged commits would
//! vanish, the revision would go back, and new writes would reuse revisions clients already
//! saw (as resourceVersions, in watches and continue tokens). So a small file beside the
//! database records how far revisions may have gone:
//!
//! - `reserved N` while the store runs: no revision above N was handed out. The writer raises
//!   it (durably, before the commit that needs it) in steps of [`RESERVE`], so it costs one
//!   extra sync per [`RESERVE`] revisions.
//! - `clean N` after a clean close: N is exactly the last revision.
//!
//! On open, a log that ends below a `clean` mark has lost acknowledged writes: the store
//! refuses to open, as etcd refuses a log that fails its checksum. A log that ends below a
//! `reserved` mark was not closed cleanly (a crash, or damage after one: the two cannot be
//! told apart), and the store continues above the mark, with the revisions in between
//! compacted, so clients that saw one of them list again instead of being confused.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::{Error, Result, Revision};

/// How far ahead of the current revision the mark is raised at a time.
pub const RESERVE: Revision = 10_000;

/// The record is fixed-size and rewritten in place (one sector: no torn writes, no new
/// blocks needed on a full disk).
const RECORD: usize = 64;

/// What the mark says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mark {
    /// No revision above this one was handed out.
    Reserved(Revision),
    /// The store was closed cleanly at exactly this revision.
    Clean(Revision),
}

impl Mark {
    fn encode(self) -> [u8; RECORD] {
        let text = match self {
            Mark::Reserved(n) => format!("shoal-revision reserved {n}\n"),
            Mark::Clean(n) => format!("shoal-revision clean {n}\n"),
        };
        let mut out = [b' '; RECORD];
        out[..text.len()].copy_from_slice(text.as_bytes());
        out[RECORD - 1] = b'\n';
        out
    }

    fn decode(text: &str) -> Option<Mark> {
        let mut words = text.split_whitespace();
        if words.next()? != "shoal-revision" {
            return None;
        }
        let state = words.next()?;
        let n: Revision = words.next()?.parse().ok().filter(|n| *n >= 0)?;
        match state {
            "reserved" => Some(Mark::Reserved(n)),
            "clean" => Some(Mark::Clean(n)),
            _ => None,
        }
    }
}

/// The mark's file, open for the store's life.
pub struct Ceiling {
    path: PathBuf,
    file: File,
    reserved: Revision,
}

impl Ceiling {
    /// The mark file of the database at `db` (`<db>.revision`).
    pub fn path_for(db: &Path) -> PathBuf {
        let mut p = db.as_os_str().to_owned();
        p.push(".revision");
        PathBuf::from(p)
    }

    /// Opens (creating) the mark file; returns it with what it said (`None` when new).
    pub fn open(path: &Path) -> Result<(Ceiling, Option<Mark>)> {
        let io = |e: std::io::Error| Error::Backend(format!("{}: {e}", path.display()));
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io)?;
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(io)?;
        let mark = if text.trim().is_empty() {
            None
        } else {
            Some(Mark::decode(&text).ok_or_else(|| {
                Error::Backend(format!(
                    "{}: not a revision mark ({:?}); it records the store's highest revision, so it is not ignored: restore it, or remove it together with the database",
                    path.display(),
                    text.trim()
                ))
            })?)
        };
        let ceiling = Ceiling {
            path: path.to_path_buf(),
            file,
            reserved: 0,
        };
        Ok((ceiling, mark))
    }

    fn write(&mut self, mark: Mark) -> Result<()> {
        let io = |e: std::io::Error| Error::Backend(format!("{}: {e}", self.path.display()));
        self.file.write_all_at(&mark.encode(), 0).map_err(io)?;
        self.file.sync_data().map_err(io)
    }

    /// Makes sure revisions up to `upto` may be handed out: raises the mark (durably) to
    /// `upto + RESERVE` when it is below `upto`.
    pub fn reserve(&mut self, upto: Revision) -> Result<()> {
        if upto <= self.reserved && self.reserved > 0 {
            return Ok(());
        }
        let next = upto.saturating_add(RESERVE);
        self.write(Mark::Reserved(next))?;
        self.reserved = next;
        Ok(())
    }

    /// Records a clean close at exactly `current`.
    pub fn close_clean(&mut self, current: Revision) -> Result<()> {
        self.write(Mark::Clean(current))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_round_trip_and_garbage_is_refused() {
        for m in [Mark::Reserved(0), Mark::Reserved(i64::MAX), Mark::Clean(42)] {
            let bytes = m.encode();
            assert_eq!(bytes.len(), RECORD);
            assert_eq!(Mark::decode(std::str::from_utf8(&bytes).unwrap()), Some(m));
        }
        assert_eq!(Mark::decode("shoal-revision clean -1"), None);
        assert_eq!(Mark::decode("hello"), None);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.revision");
        std::fs::write(&path, "garbage").unwrap();
        assert!(Ceiling::open(&path).is_err());
    }

    #[test]
    fn the_mark_is_raised_ahead_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = Ceiling::path_for(&dir.path().join("state.db"));
        assert!(path.ends_with("state.db.revision"));
        let (mut c, mark) = Ceiling::open(&path).unwrap();
        assert_eq!(mark, None);
        c.reserve(7).unwrap();
        assert_eq!(Ceiling::open(&path).unwrap().1, Some(Mark::Reserved(7 + RESERVE)));
        c.reserve(8).unwrap();
        assert_eq!(
            Ceiling::open(&path).unwrap().1,
            Some(Mark::Reserved(7 + RESERVE)),
            "no write needed"
        );
        c.reserve(8 + RESERVE).unwrap();
        assert_eq!(Ceiling::open(&path).unwrap().1, Some(Mark::Reserved(8 + 2 * RESERVE)));
        c.close_clean(9).unwrap();
        assert_eq!(Ceiling::open(&path).unwrap().1, Some(Mark::Clean(9)));
    }
}
