//! One segment file of a partition: batches appended at the end, read by position, and
//! scanned at start (with checksums on the active segment, whose tail may be torn).
//!
//! Files are named after their first offset: `00000000000000001234.log`. A segment keeps a
//! sparse in-memory index (one entry every [`INDEX_INTERVAL`] bytes) from batch offsets and
//! times to file positions. Entry points: [`Segment::create`], [`Segment::open`].
//!
//! Large appends (at least [`DIRECT_WRITE_MIN`] bytes) go straight to the disk with
//! `O_DIRECT`, skipping the copy into the page cache that otherwise bounds write speed.
//! Direct writes cover whole blocks: the partial block at the end of the file is written
//! again with the new bytes, and the last block is padded with zeros past the segment's
//! size. Readers never look past the size; sealing a segment cuts the padding off, and the
//! start-up scan drops it quietly. File systems without `O_DIRECT` (tmpfs) keep buffered
//! writes.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::batch::{BatchDefect, BatchHeader, HEADER_LEN};

/// Bytes between two index entries.
pub const INDEX_INTERVAL: u64 = 4096;
/// How much a scan reads at a time.
const SCAN_CHUNK: usize = 1024 * 1024;
/// Appends of at least this many bytes are written with `O_DIRECT`.
pub const DIRECT_WRITE_MIN: usize = 256 * 1024;
/// Direct writes align file offsets, lengths and buffer addresses to this many bytes (a
/// multiple of every logical block size in use).
const DIRECT_ALIGN: usize = 4096;

/// A sparse index entry: the batch starting at `position` has base offset `offset`, and every
/// batch before it has a max timestamp of at most `max_timestamp_before`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    pub offset: i64,
    pub position: u64,
    pub max_timestamp_before: i64,
}

#[derive(Debug)]
pub struct Segment {
    pub base_offset: i64,
    pub path: PathBuf,
    pub file: Arc<File>,
    /// Bytes of whole batches in the file.
    pub size: u64,
    /// One past the last offset stored here (`base_offset` when empty).
    pub next_offset: i64,
    pub max_timestamp: i64,
    /// Wall-clock time of the last append, for tombstone expiry.
    pub last_append_time: i64,
    pub index: Vec<IndexEntry>,
    /// Where a scan at start found bytes that are not a valid batch, in a segment that is
    /// not the last (so they were not truncated): reads from there report corruption.
    pub corrupt_at: Option<u64>,
    last_indexed_position: Option<u64>,
    direct: DirectWriter,
}

/// The `O_DIRECT` handle of a segment, opened at the first large append.
#[derive(Debug, Default)]
enum DirectWriter {
    #[default]
    NotOpened,
    Open {
        file: File,
        /// Reused for every write; the aligned window inside it is found per write.
        buffer: Vec<u8>,
        /// The bytes of the partial block at the end of the file, as the last direct
        /// write left them, and the segment size they belong to.
        tail: Vec<u8>,
        tail_size: u64,
    },
    /// The file system refused `O_DIRECT`; appends stay buffered.
    Unsupported,
}

/// What the start-up scan reports for each batch.
pub struct ScannedBatch<'a> {
    pub header: BatchHeader,
    /// The whole batch, present for control batches (commit / abort markers).
    pub bytes: Option<&'a [u8]>,
}

pub fn segment_path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(format!("{base_offset:020}.log"))
}

/// The base offset of a segment file name, if it is one.
pub fn parse_segment_name(name: &str) -> Option<i64> {
    let digits = name.strip_suffix(".log")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

impl Segment {
    /// Creates an empty segment file (failing if one exists).
    pub fn create(dir: &Path, base_offset: i64) -> io::Result<Segment> {
        let path = segment_path(dir, base_offset);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok(Segment::empty(path, file, base_offset))
    }

    fn empty(path: PathBuf, file: File, base_offset: i64) -> Segment {
        Segment {
            base_offset,
            path,
            file: Arc::new(file),
            size: 0,
            next_offset: base_offset,
            max_timestamp: i64::MIN,
            last_append_time: i64::MIN,
            index: Vec::new(),
            corrupt_at: None,
            last_indexed_position: None,
            direct: DirectWriter::NotOpened,
        }
    }

    /// Opens a segment and scans its batch headers, calling `visit` for each.
    ///
    /// With `recover` (the active segment), every batch is verified; the file is truncated
    /// at the first torn or corrupt batch, which can only be an unacknowledged write cut
    /// short. Otherwise a bad batch stops the scan and is remembered in `corrupt_at`.
    pub fn open(
        path: PathBuf,
        base_offset: i64,
        recover: bool,
        mut visit: impl FnMut(ScannedBatch<'_>),
    ) -> io::Result<(Segment, Option<BatchDefect>)> {
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        let file_len = file.metadata()?.len();
        let mut segment = Segment::empty(path, file, base_offset);
        let mut buffer = Vec::new();
        let mut buffer_start = 0u64; // file position of buffer[0]
        let mut position = 0u64;
        let mut defect = None;
        while position < file_len {
            let needed = (position - buffer_start) as usize + HEADER_LEN;
            if buffer.len() < needed {
                refill(
                    &segment.file,
                    &mut buffer,
                    &mut buffer_start,
                    position,
                    HEADER_LEN,
                    file_len,
                )?;
            }
            let at = (position - buffer_start) as usize;
            let header = match BatchHeader::parse(&buffer[at..]) {
                Ok(header) => header,
                Err(error) => {
                    defect = Some(error);
                    break;
                }
            };
            let is_control = header.control;
            if recover || is_control {
                if buffer.len() < at + header.size {
                    refill(
                        &segment.file,
                        &mut buffer,
                        &mut buffer_start,
                        position,
                        header.size,
                        file_len,
                    )?;
                }
                let at = (position - buffer_start) as usize;
                if let Err(error) = header.verify(&buffer[at..]) {
                    defect = Some(error);
                    break;
                }
            }
            let at = (position - buffer_start) as usize;
            let bytes = is_control.then(|| &buffer[at..at + header.size]);
            segment.note_batch(&header, position);
            visit(ScannedBatch { header, bytes });
            position += header.size as u64;
        }
        if let Some(error) = &defect {
            if recover {
                if is_zero_padding(&segment.file, position, file_len)? {
                    tracing::debug!(
                        segment = %segment.path.display(),
                        position,
                        "dropping the zero padding of a direct write"
                    );
                } else {
                    tracing::warn!(
                        segment = %segment.path.display(),
                        position,
                        ?error,
                        "truncating a torn or corrupt tail left by an interrupted write"
                    );
                }
                segment.file.set_len(position)?;
                segment.file.sync_all()?;
            } else {
                segment.corrupt_at = Some(position);
            }
        }
        Ok((segment, defect))
    }

    /// Records a batch written at `position` in the size, offsets and index.
    fn note_batch(&mut self, header: &BatchHeader, position: u64) {
        let due = self
            .last_indexed_position
            .is_none_or(|last| position - last >= INDEX_INTERVAL);
        if due {
            self.index.push(IndexEntry {
                offset: header.base_offset,
                position,
                max_timestamp_before: self.max_timestamp,
            });
            self.last_indexed_position = Some(position);
        }
        self.size = position + header.size as u64;
        self.next_offset = header.last_offset() + 1;
        self.max_timestamp = self.max_timestamp.max(header.max_timestamp);
        self.last_append_time = self.last_append_time.max(header.append_time);
    }

    /// Appends whole encoded batches; `headers` describes them in order. On failure the file
    /// is cut back, so no partial batch stays behind.
    pub fn append(&mut self, bytes: &[u8], headers: &[BatchHeader]) -> io::Result<()> {
        let written = bytes.len() >= DIRECT_WRITE_MIN && self.append_direct(bytes)?;
        if !written && let Err(error) = self.file.write_all_at(bytes, self.size) {
            let _ = self.file.set_len(self.size);
            return Err(error);
        }
        let mut position = self.size;
        for header in headers {
            self.note_batch(header, position);
            position += header.size as u64;
        }
        Ok(())
    }

    /// Writes `bytes` at the end with `O_DIRECT`. Returns `false` (having written nothing)
    /// when the file system does not support it.
    fn append_direct(&mut self, bytes: &[u8]) -> io::Result<bool> {
        if matches!(self.direct, DirectWriter::NotOpened) {
            self.direct = match OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_DIRECT)
                .open(&self.path)
            {
                Ok(file) => DirectWriter::Open {
                    file,
                    buffer: Vec::new(),
                    tail: Vec::new(),
                    tail_size: u64::MAX,
                },
                Err(error) if error.raw_os_error() == Some(libc::EINVAL) => {
                    DirectWriter::Unsupported
                }
                Err(error) => return Err(error),
            };
        }
        let DirectWriter::Open {
            file,
            buffer,
            tail,
            tail_size,
        } = &mut self.direct
        else {
            return Ok(false);
        };
        let block_start = self.size - self.size % DIRECT_ALIGN as u64;
        let tail_len = (self.size - block_start) as usize;
        let total = (tail_len + bytes.len()).next_multiple_of(DIRECT_ALIGN);
        if buffer.len() < total + DIRECT_ALIGN {
            buffer.resize(total + DIRECT_ALIGN, 0);
        }
        let start = buffer.as_ptr().align_offset(DIRECT_ALIGN);
        let window = &mut buffer[start..start + total];
        if *tail_size == self.size {
            window[..tail_len].copy_from_slice(tail);
        } else {
            let read = read_at(&self.file, block_start, tail_len)?;
            if read.len() != tail_len {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the segment file is shorter than its recorded size",
                ));
            }
            window[..tail_len].copy_from_slice(&read);
        }
        window[tail_len..tail_len + bytes.len()].copy_from_slice(bytes);
        window[tail_len + bytes.len()..].fill(0);
        if let Err(error) = file.write_all_at(window, block_start) {
            if error.raw_os_error() == Some(libc::EINVAL) && self.size == block_start {
                // Alignment this file system does not accept: nothing was written.
                self.direct = DirectWriter::Unsupported;
                return Ok(false);
            }
            let _ = self.file.set_len(self.size);
            return Err(error);
        }
        let end = self.size + bytes.len() as u64;
        let new_tail = (end % DIRECT_ALIGN as u64) as usize;
        let tail_at = tail_len + bytes.len() - new_tail;
        tail.clear();
        tail.extend_from_slice(&window[tail_at..tail_at + new_tail]);
        *tail_size = end;
        Ok(true)
    }

    /// Ends appends here: cuts the zero padding of direct writes off, so the file ends at
    /// its last batch, and closes the direct handle.
    pub fn seal(&mut self) -> io::Result<()> {
        self.direct = DirectWriter::NotOpened;
        if self.file.metadata()?.len() > self.size {
            self.file.set_len(self.size)?;
        }
        Ok(())
    }

    /// Where to start reading for `offset`: the indexed batch at or before it.
    pub fn position_for_offset(&self, offset: i64) -> u64 {
        let entry = self.index.partition_point(|entry| entry.offset <= offset);
        entry.checked_sub(1).map_or(0, |i| self.index[i].position)
    }

    /// Where to start reading for the first record at or after `timestamp`.
    pub fn position_for_time(&self, timestamp: i64) -> u64 {
        let entry = self
            .index
            .partition_point(|entry| entry.max_timestamp_before < timestamp);
        entry.checked_sub(1).map_or(0, |i| self.index[i].position)
    }
}

/// Reads `len` bytes at `position`, or fewer at the end of the file.
pub fn read_at(file: &File, position: u64, len: usize) -> io::Result<Bytes> {
    let mut buffer = BytesMut::zeroed(len);
    let mut filled = 0;
    while filled < len {
        match file.read_at(&mut buffer[filled..], position + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    buffer.truncate(filled);
    Ok(buffer.freeze())
}

/// Reads below this many bytes are copied; larger ones are mapped.
const MAP_MIN: usize = 256 * 1024;

/// The `len` bytes at `position` of a segment's written part (below its size), mapped into
/// memory rather than copied when there are many: the records of a fetch are slices of
/// the mapping, which lives as long as they do. Falls back to [`read_at`].
#[allow(unsafe_code)]
pub fn map_at(file: &File, position: u64, len: usize) -> io::Result<Bytes> {
    if len < MAP_MIN {
        return read_at(file, position, len);
    }
    // SAFETY: the mapping is read-only and covers bytes below the segment's size, which
    // never change once written: appends only add bytes past the size (a direct write
    // rewrites the last block with the same bytes), files are only cut back to their size
    // or past it, and cleaning writes a new file renamed over the old one, whose pages stay
    // mapped. So no byte of the mapping changes or goes beyond the end of the file.
    let mapped = unsafe {
        memmap2::MmapOptions::new()
            .offset(position)
            .len(len)
            .populate()
            .map(file)
    };
    match mapped {
        Ok(mapped) => Ok(Bytes::from_owner(mapped)),
        Err(_) => read_at(file, position, len),
    }
}

/// Whether the file holds only zero bytes from `position` to `file_len`, and fewer than a
/// block of them: the padding a direct write leaves past the last batch.
fn is_zero_padding(file: &File, position: u64, file_len: u64) -> io::Result<bool> {
    let len = file_len.saturating_sub(position);
    if len == 0 || len >= DIRECT_ALIGN as u64 {
        return Ok(false);
    }
    Ok(read_at(file, position, len as usize)?
        .iter()
        .all(|&byte| byte == 0))
}

/// Makes the scan buffer start at `position` and hold at least `needed` bytes (or the rest
/// of the file).
fn refill(
    file: &File,
    buffer: &mut Vec<u8>,
    buffer_start: &mut u64,
    position: u64,
    needed: usize,
    file_len: u64,
) -> io::Result<()> {
    let want = needed.max(SCAN_CHUNK).min((file_len - position) as usize);
    let bytes = read_at(file, position, want)?;
    buffer.clear();
    buffer.extend_from_slice(&bytes);
    *buffer_start = position;
    Ok(())
}
