//! Reading lines from stdin or from a file followed across rotation and truncation.
//!
//! Following is poll-based: at the end of the file the reader sleeps for the poll interval, then
//! checks whether the path now names another file (rotation: rename + create) or whether the file
//! shrank below what was read (truncation, e.g. `copytruncate`). A rotated file is read to its end
//! before the new one is opened, so the lines written just before rotation still count.
//!
//! Polling has the limits of `tail -F`: a file truncated and then written past the old offset
//! within one poll interval looks like growth (the lines before the offset are missed), and two
//! rotations within one interval skip the middle file. At the default 250 ms neither happens with
//! logrotate's daily or size-based rotation.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use super::config::StartAt;
use super::series::Reopen;

/// What the reader hands over: a complete line (without its newline), or the fact that a line
/// exceeded the limit and was skipped.
#[derive(Debug, PartialEq, Eq)]
pub enum Line<'a> {
    Ok(&'a [u8]),
    TooLong,
}

/// Splits a byte stream into lines in one fixed buffer: memory stays the same whatever the input.
pub struct LineReader {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    max_line: usize,
    /// Inside a line that was already reported too long: drop bytes up to its newline.
    discarding: bool,
}

/// Bytes asked of the source per read, besides room for one maximal line.
const CHUNK: usize = 64 * 1024;

impl LineReader {
    pub fn new(max_line: usize) -> LineReader {
        LineReader {
            buf: vec![0; max_line + CHUNK].into_boxed_slice(),
            start: 0,
            end: 0,
            max_line,
            discarding: false,
        }
    }

    /// Reads once from `src` and hands every complete line to `sink`. Returns the number of bytes
    /// read; 0 means end of input for now.
    pub fn fill<R: Read>(
        &mut self,
        src: &mut R,
        mut sink: impl FnMut(Line<'_>),
    ) -> io::Result<usize> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let n = loop {
            match src.read(&mut self.buf[self.end..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        self.end += n;
        while let Some(at) = memchr::memchr(b'\n', &self.buf[self.start..self.end]) {
            let line = &self.buf[self.start..self.start + at];
            self.start += at + 1;
            if self.discarding {
                self.discarding = false;
            } else if line.len() > self.max_line {
                sink(Line::TooLong);
            } else {
                sink(Line::Ok(line));
            }
        }
        // No newline in sight and already past the limit: report it once, drop what is held.
        if self.end - self.start > self.max_line {
            if !self.discarding {
                sink(Line::TooLong);
                self.discarding = true;
            }
            self.start = 0;
            self.end = 0;
        }
        Ok(n)
    }

    /// Hands over a last line that had no newline (end of input, or its file was rotated away);
    /// says whether there was one.
    pub fn finish(&mut self, mut sink: impl FnMut(Line<'_>)) -> bool {
        let last = self.end > self.start && !self.discarding;
        if last {
            sink(Line::Ok(&self.buf[self.start..self.end]));
        }
        self.reset();
        last
    }

    /// Drops bytes up to the next newline, silently: reading starts mid-line.
    pub fn skip_partial_line(&mut self) {
        self.discarding = true;
    }

    /// Forgets a partial line (its file was truncated under it).
    pub fn reset(&mut self) {
        self.start = 0;
        self.end = 0;
        self.discarding = false;
    }
}

/// What happens between reads, so callers decide about batching, time and shutdown.
pub trait Handler {
    fn line(&mut self, line: Line<'_>);
    /// After each read that returned data.
    fn batch_done(&mut self) {}
    fn reopened(&mut self, _why: Reopen) {}
    /// Called while idle; `false` stops following.
    fn keep_going(&mut self) -> bool {
        true
    }
}

/// Reads `src` to its end.
pub fn read_to_end<R: Read>(
    src: &mut R,
    reader: &mut LineReader,
    h: &mut impl Handler,
) -> io::Result<()> {
    while reader.fill(src, |l| h.line(l))? > 0 {
        h.batch_done();
    }
    if reader.finish(|l| h.line(l)) {
        h.batch_done();
    }
    Ok(())
}

/// Seeks to the end; if the writer is mid-line there, the rest of that line is dropped, not
/// counted as a malformed fragment.
fn skip_to_end(file: &mut File, reader: &mut LineReader) -> io::Result<u64> {
    let end = file.seek(SeekFrom::End(0))?;
    if end > 0 {
        let mut last = [0u8; 1];
        file.seek(SeekFrom::Start(end - 1))?;
        file.read_exact(&mut last)?;
        if last[0] != b'\n' {
            reader.skip_partial_line();
        }
    }
    Ok(end)
}

/// Follows the file at `path` until `h.keep_going()` says stop (or, with `exit_on_eof`, until
/// its end). A file missing at start-up is waited for.
pub fn follow(
    path: &Path,
    start_at: StartAt,
    poll: Duration,
    exit_on_eof: bool,
    reader: &mut LineReader,
    h: &mut impl Handler,
) -> io::Result<()> {
    let mut f = Follower {
        path,
        poll,
        exit_on_eof,
        reader,
        h,
    };
    let mut first = true;
    loop {
        let Some((mut file, waited)) = open_when_present(path, poll, f.h)? else {
            return Ok(());
        };
        let meta = file.metadata()?;
        let next = if meta.file_type().is_file() {
            // Only a file that was already there at start-up is skipped to its end.
            let pos = if first && !waited && start_at == StartAt::End {
                skip_to_end(&mut file, f.reader)?
            } else {
                0
            };
            first = false;
            f.read_file(&mut file, identity(&meta), pos)?
        } else {
            f.read_fifo(&mut file)?
        };
        if next == Next::Stop {
            return Ok(());
        }
    }
}

/// What [`follow`] does once it is done with the file it opened.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// Open the path again: the file was rotated, or a FIFO's writer closed it.
    Reopen,
    Stop,
}

/// What reading each file [`follow`] opens needs: the settings, the line reader and the handler.
struct Follower<'a, H> {
    path: &'a Path,
    poll: Duration,
    exit_on_eof: bool,
    reader: &'a mut LineReader,
    h: &'a mut H,
}

impl<H: Handler> Follower<'_, H> {
    /// A FIFO (an app's stdout through `tee`): no size, no seeking. Read until the writer closes
    /// it, then wait for the next writer.
    fn read_fifo(&mut self, fifo: &mut File) -> io::Result<Next> {
        read_to_end(fifo, self.reader, self.h)?;
        if self.exit_on_eof || !self.h.keep_going() {
            return Ok(Next::Stop);
        }
        std::thread::sleep(self.poll);
        Ok(Next::Reopen)
    }

    /// Reads a regular file from `pos` as it grows, starting over when it is truncated, until it
    /// is rotated away or following stops. `current` is its identity.
    fn read_file(
        &mut self,
        file: &mut File,
        current: (u64, u64),
        mut pos: u64,
    ) -> io::Result<Next> {
        loop {
            let n = self.read_once(file)?;
            if n > 0 {
                pos += n;
                continue;
            }
            if self.exit_on_eof {
                self.finish();
                return Ok(Next::Stop);
            }
            // At the end: has the file been truncated or replaced?
            let size = file.metadata()?.len();
            if size < pos {
                self.reader.reset();
                file.seek(SeekFrom::Start(0))?;
                pos = 0;
                self.h.reopened(Reopen::Truncated);
                continue;
            }
            if self.replaced(current) {
                // Rotated: whatever reached the old file after our last read is read here
                // (n == 0 means none is left); a last line without newline counts too.
                let n = self.read_once(file)?;
                if n > 0 {
                    pos += n;
                    continue;
                }
                self.finish();
                self.h.reopened(Reopen::Rotated);
                return Ok(Next::Reopen);
            }
            if !self.h.keep_going() {
                return Ok(Next::Stop);
            }
            std::thread::sleep(self.poll);
        }
    }

    /// One read from `file` into the handler; the number of bytes read.
    fn read_once(&mut self, file: &mut File) -> io::Result<u64> {
        let n = self.reader.fill(file, |l| self.h.line(l))?;
        if n > 0 {
            self.h.batch_done();
        }
        Ok(n as u64)
    }

    /// Hands over a last line without newline, if there is one.
    fn finish(&mut self) {
        if self.reader.finish(|l| self.h.line(l)) {
            self.h.batch_done();
        }
    }

    /// Whether the path now names a file other than `current`. A path that names no file yet
    /// (renamed away, its successor not created) is not replaced: keep waiting.
    fn replaced(&self, current: (u64, u64)) -> bool {
        matches!(std::fs::metadata(self.path), Ok(m) if identity(&m) != current)
    }
}

fn identity(m: &std::fs::Metadata) -> (u64, u64) {
    (m.dev(), m.ino())
}

/// The open file and whether it had to be waited for.
fn open_when_present(
    path: &Path,
    poll: Duration,
    h: &mut impl Handler,
) -> io::Result<Option<(File, bool)>> {
    let mut waited = false;
    loop {
        match File::open(path) {
            Ok(f) => return Ok(Some((f, waited))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                waited = true;
                if !h.keep_going() {
                    return Ok(None);
                }
                std::thread::sleep(poll);
            }
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[derive(Default)]
    struct Collect {
        lines: Vec<String>,
        too_long: usize,
        reopened: Vec<Reopen>,
    }

    impl Handler for Collect {
        fn line(&mut self, line: Line<'_>) {
            match line {
                Line::Ok(l) => self.lines.push(String::from_utf8_lossy(l).into_owned()),
                Line::TooLong => self.too_long += 1,
            }
        }
        fn reopened(&mut self, why: Reopen) {
            self.reopened.push(why);
        }
    }

    /// A reader that returns its input a few bytes at a time, as a pipe might.
    struct Trickle<'a>(&'a [u8], usize);
    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = self.0.len().min(self.1).min(out.len());
            out[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn lines_split_across_reads_and_a_last_line_without_newline() {
        let input = b"one\ntwo\r\n\nthree";
        let mut c = Collect::default();
        read_to_end(&mut Trickle(input, 3), &mut LineReader::new(64), &mut c).expect("read");
        assert_eq!(c.lines, ["one", "two\r", "", "three"]);
    }

    #[test]
    fn too_long_lines_are_reported_once_and_skipped_without_growing() {
        let mut input = Vec::new();
        input.extend_from_slice(b"short\n");
        input.extend(std::iter::repeat_n(b'x', 1_000_000));
        input.extend_from_slice(b"\nafter\n");
        input.extend(std::iter::repeat_n(b'y', 100));
        input.extend_from_slice(b"\nend\n");
        let mut reader = LineReader::new(64);
        let capacity = reader.buf.len();
        let mut c = Collect::default();
        read_to_end(&mut Trickle(&input, 4096), &mut reader, &mut c).expect("read");
        assert_eq!(c.lines, ["short", "after", "end"]);
        assert_eq!(c.too_long, 2);
        assert_eq!(reader.buf.len(), capacity, "the buffer never grows");
    }

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("tollgate-follow-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    /// Follows `path` on a thread until `want` lines arrived (or 10 s passed).
    fn follow_in_background(
        path: std::path::PathBuf,
        start_at: StartAt,
        want: usize,
    ) -> (Arc<Mutex<Collect>>, std::thread::JoinHandle<()>) {
        struct Shared(Arc<Mutex<Collect>>, usize, std::time::Instant);
        impl Handler for Shared {
            fn line(&mut self, l: Line<'_>) {
                if let Ok(mut c) = self.0.lock() {
                    c.line(l);
                }
            }
            fn reopened(&mut self, why: Reopen) {
                if let Ok(mut c) = self.0.lock() {
                    c.reopened(why);
                }
            }
            fn keep_going(&mut self) -> bool {
                let done = self
                    .0
                    .lock()
                    .map(|c| c.lines.len() >= self.1)
                    .unwrap_or(true);
                !done && self.2.elapsed() < Duration::from_secs(10)
            }
        }
        let collected = Arc::new(Mutex::new(Collect::default()));
        let mut h = Shared(collected.clone(), want, std::time::Instant::now());
        let thread = std::thread::spawn(move || {
            let mut reader = LineReader::new(1024);
            follow(
                &path,
                start_at,
                Duration::from_millis(10),
                false,
                &mut reader,
                &mut h,
            )
            .expect("follow");
        });
        (collected, thread)
    }

    fn append(path: &Path, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("open for append");
        f.write_all(text.as_bytes()).expect("append");
    }

    fn wait_lines(c: &Arc<Mutex<Collect>>, n: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while c.lock().map(|c| c.lines.len()).unwrap_or(0) < n {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {n} lines"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn follows_across_rename_rotation() {
        let dir = temp_dir("rotate");
        let path = dir.join("access.log");
        append(&path, "old-before-start\n");
        let (c, t) = follow_in_background(path.clone(), StartAt::End, 4);
        std::thread::sleep(Duration::from_millis(100));
        append(&path, "a\n");
        wait_lines(&c, 1);
        // Written to the old file just before rotation, the last one without a newline.
        append(&path, "b\nc");
        std::fs::rename(&path, dir.join("access.log.1")).expect("rotate");
        std::thread::sleep(Duration::from_millis(50));
        append(&path, "d\n");
        t.join().expect("follower");
        let c = c.lock().expect("lock");
        assert_eq!(c.lines, ["a", "b", "c", "d"]);
        assert_eq!(c.reopened, [Reopen::Rotated]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn starting_at_the_end_mid_line_drops_the_rest_of_that_line() {
        let dir = temp_dir("midline");
        let path = dir.join("access.log");
        append(&path, "whole\n{\"half\":");
        let (c, t) = follow_in_background(path.clone(), StartAt::End, 2);
        std::thread::sleep(Duration::from_millis(100));
        append(&path, "1}\nnext\nlast\n");
        t.join().expect("follower");
        assert_eq!(c.lock().expect("lock").lines, ["next", "last"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn follows_across_truncation() {
        let dir = temp_dir("truncate");
        let path = dir.join("access.log");
        append(&path, "first\nsecond\n");
        let (c, t) = follow_in_background(path.clone(), StartAt::Beginning, 3);
        wait_lines(&c, 2);
        // copytruncate: same file, emptied, then written again from offset 0.
        std::fs::File::create(&path).expect("truncate");
        std::thread::sleep(Duration::from_millis(50));
        append(&path, "third\n");
        t.join().expect("follower");
        let c = c.lock().expect("lock");
        assert_eq!(c.lines, ["first", "second", "third"]);
        assert_eq!(c.reopened, [Reopen::Truncated]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn waits_for_a_missing_file_and_reads_it_whole() {
        let dir = temp_dir("missing");
        let path = dir.join("access.log");
        let (c, t) = follow_in_background(path.clone(), StartAt::End, 2);
        std::thread::sleep(Duration::from_millis(50));
        append(&path, "x\ny\n");
        t.join().expect("follower");
        assert_eq!(c.lock().expect("lock").lines, ["x", "y"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn reads_a_fifo_across_writers() {
        let dir = temp_dir("fifo");
        let path = dir.join("access.pipe");
        let made = std::process::Command::new("mkfifo").arg(&path).status();
        if !made.is_ok_and(|s| s.success()) {
            eprintln!("mkfifo unavailable; skipped");
            return;
        }
        let (c, t) = follow_in_background(path.clone(), StartAt::End, 3);
        for text in ["one\ntwo\n", "three\n"] {
            // Each open-write-close is one writer (a restarted `tee`).
            let mut w = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .expect("open fifo");
            w.write_all(text.as_bytes()).expect("write fifo");
        }
        t.join().expect("follower");
        assert_eq!(c.lock().expect("lock").lines, ["one", "two", "three"]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
