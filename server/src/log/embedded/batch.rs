//! The on-disk record batch: the unit the embedded log writes, checksums and reads.
//!
//! ```text
//!  0  base_offset      i64   offset of the first record
//!  8  length           u32   bytes after this field
//! 12  magic            u8    format version (1)
//! 13  crc              u32   CRC-32 of bytes 17..end
//! 17  attributes       u8    bit 0: transactional, bit 1: control (a commit/abort marker)
//! 18  last_offset_delta u32
//! 22  first_timestamp  i64   ms
//! 30  max_timestamp    i64   ms
//! 38  append_time      i64   ms, wall clock when the log wrote the batch
//! 46  producer_id      i64   -1 when the producer is not idempotent
//! 54  producer_epoch   i16
//! 56  base_sequence    i32
//! 60  record_count     u32
//! 64  records: length, offset delta, timestamp delta, key, value, headers (varints)
//! ```
//!
//! All integers are little-endian; record fields use LEB128 varints (zig-zag for signed).
//! Entry points: [`encode_batch`], [`BatchHeader::parse`], [`decode_records`].

use bytes::Bytes;

use crate::log::{Header, Record};

pub const HEADER_LEN: usize = 64;
const MAGIC: u8 = 1;
const CRC_START: usize = 17;
const ATTR_TRANSACTIONAL: u8 = 1;
const ATTR_CONTROL: u8 = 2;

/// Who wrote a batch, for idempotence and transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchProducer {
    pub producer_id: i64,
    pub epoch: i16,
    pub base_sequence: i32,
    pub transactional: bool,
}

impl BatchProducer {
    pub const NONE: BatchProducer = BatchProducer {
        producer_id: -1,
        epoch: -1,
        base_sequence: -1,
        transactional: false,
    };
}

/// The fixed-size header of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// Total size of the batch on disk, header included.
    pub size: usize,
    pub crc: u32,
    pub transactional: bool,
    pub control: bool,
    pub last_offset_delta: u32,
    pub first_timestamp: i64,
    pub max_timestamp: i64,
    pub append_time: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: u32,
}

/// Why bytes are not a valid batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchDefect {
    /// Fewer bytes than the header or the declared length: a torn write at the end of a log.
    Truncated,
    /// The bytes are all there but do not check out.
    Corrupt(&'static str),
}

impl BatchHeader {
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// Reads a header from the start of `bytes` (which may hold more than one batch).
    pub fn parse(bytes: &[u8]) -> Result<BatchHeader, BatchDefect> {
        if bytes.len() < HEADER_LEN {
            return Err(BatchDefect::Truncated);
        }
        let length = u32_at(bytes, 8) as usize;
        if length < HEADER_LEN - 12 {
            return Err(BatchDefect::Corrupt(
                "batch length is smaller than its header",
            ));
        }
        if bytes[12] != MAGIC {
            return Err(BatchDefect::Corrupt("unknown batch format version"));
        }
        let attributes = bytes[17];
        Ok(BatchHeader {
            base_offset: i64_at(bytes, 0),
            size: length + 12,
            crc: u32_at(bytes, 13),
            transactional: attributes & ATTR_TRANSACTIONAL != 0,
            control: attributes & ATTR_CONTROL != 0,
            last_offset_delta: u32_at(bytes, 18),
            first_timestamp: i64_at(bytes, 22),
            max_timestamp: i64_at(bytes, 30),
            append_time: i64_at(bytes, 38),
            producer_id: i64_at(bytes, 46),
            producer_epoch: i16::from_le_bytes([bytes[54], bytes[55]]),
            base_sequence: i32::from_le_bytes(array_at(bytes, 56)),
            record_count: u32_at(bytes, 60),
        })
    }

    /// Checks that `bytes` holds this whole batch and that its checksum matches.
    pub fn verify(&self, bytes: &[u8]) -> Result<(), BatchDefect> {
        if bytes.len() < self.size {
            return Err(BatchDefect::Truncated);
        }
        if crc32fast::hash(&bytes[CRC_START..self.size]) != self.crc {
            return Err(BatchDefect::Corrupt("checksum mismatch"));
        }
        Ok(())
    }
}

/// A record to encode: borrowed fields, its offset relative to the batch, its time.
#[derive(Debug, Clone, Copy)]
pub struct RecordRef<'a> {
    pub offset_delta: u32,
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: &'a [Header],
}

/// Appends one batch holding `records` to `out`. `records` must be in offset order and
/// non-empty.
pub fn encode_batch<'a>(
    out: &mut Vec<u8>,
    base_offset: i64,
    producer: BatchProducer,
    control: bool,
    append_time: i64,
    records: impl Iterator<Item = RecordRef<'a>> + Clone,
) {
    let start = out.len();
    out.resize(start + HEADER_LEN, 0);
    let mut first_timestamp = None;
    let mut max_timestamp = i64::MIN;
    let mut last_offset_delta = 0;
    let mut count: u32 = 0;
    for record in records.clone() {
        let first = *first_timestamp.get_or_insert(record.timestamp);
        max_timestamp = max_timestamp.max(record.timestamp);
        last_offset_delta = record.offset_delta;
        count += 1;
        encode_record(out, &record, first);
    }
    let first_timestamp = first_timestamp.unwrap_or(append_time);
    if count == 0 {
        max_timestamp = append_time;
    }
    let mut attributes = 0;
    if producer.transactional {
        attributes |= ATTR_TRANSACTIONAL;
    }
    if control {
        attributes |= ATTR_CONTROL;
    }
    let length = (out.len() - start - 12) as u32;
    let header = &mut out[start..start + HEADER_LEN];
    header[0..8].copy_from_slice(&base_offset.to_le_bytes());
    header[8..12].copy_from_slice(&length.to_le_bytes());
    header[12] = MAGIC;
    header[17] = attributes;
    header[18..22].copy_from_slice(&last_offset_delta.to_le_bytes());
    header[22..30].copy_from_slice(&first_timestamp.to_le_bytes());
    header[30..38].copy_from_slice(&max_timestamp.to_le_bytes());
    header[38..46].copy_from_slice(&append_time.to_le_bytes());
    header[46..54].copy_from_slice(&producer.producer_id.to_le_bytes());
    header[54..56].copy_from_slice(&producer.epoch.to_le_bytes());
    header[56..60].copy_from_slice(&producer.base_sequence.to_le_bytes());
    header[60..64].copy_from_slice(&count.to_le_bytes());
    let crc = crc32fast::hash(&out[start + CRC_START..]);
    out[start + 13..start + 17].copy_from_slice(&crc.to_le_bytes());
}

fn encode_record(out: &mut Vec<u8>, record: &RecordRef<'_>, first_timestamp: i64) {
    let mut body_len = varint_len(u64::from(record.offset_delta))
        + varint_len(zigzag(record.timestamp.wrapping_sub(first_timestamp)))
        + bytes_field_len(record.key)
        + bytes_field_len(record.value)
        + varint_len(record.headers.len() as u64);
    for header in record.headers {
        body_len += varint_len(header.key.len() as u64)
            + header.key.len()
            + bytes_field_len(header.value.as_deref());
    }
    out.reserve(body_len + 5);
    put_varint(out, body_len as u64);
    put_varint(out, u64::from(record.offset_delta));
    put_varint(out, zigzag(record.timestamp.wrapping_sub(first_timestamp)));
    put_bytes_field(out, record.key);
    put_bytes_field(out, record.value);
    put_varint(out, record.headers.len() as u64);
    for header in record.headers {
        put_varint(out, header.key.len() as u64);
        out.extend_from_slice(header.key.as_bytes());
        put_bytes_field(out, header.value.as_deref());
    }
}

/// Decodes the records of one verified batch; `batch` starts at the batch header and holds
/// the whole batch. Keys, values and header values are zero-copy slices of `batch`.
pub fn decode_records(
    batch: &Bytes,
    header: &BatchHeader,
    mut each: impl FnMut(Record),
) -> Result<(), BatchDefect> {
    let mut reader = Reader {
        bytes: batch,
        position: HEADER_LEN,
        end: header.size,
    };
    for _ in 0..header.record_count {
        let body_len = reader.varint()? as usize;
        let body_end = reader.position + body_len;
        if body_end > reader.end {
            return Err(BatchDefect::Corrupt("record extends past its batch"));
        }
        let offset_delta = reader.varint()?;
        let timestamp_delta = unzigzag(reader.varint()?);
        let key = reader.bytes_field()?;
        let value = reader.bytes_field()?;
        let header_count = reader.varint()? as usize;
        let mut headers = Vec::with_capacity(header_count.min(64));
        for _ in 0..header_count {
            let key_len = reader.varint()? as usize;
            let key_bytes = reader.take(key_len)?;
            let key = std::str::from_utf8(key_bytes)
                .map_err(|_| BatchDefect::Corrupt("header key is not UTF-8"))?
                .to_string();
            headers.push(Header {
                key,
                value: reader.bytes_field()?,
            });
        }
        if reader.position != body_end {
            return Err(BatchDefect::Corrupt(
                "record length does not match its fields",
            ));
        }
        each(Record {
            offset: header.base_offset + offset_delta as i64,
            timestamp: header.first_timestamp.wrapping_add(timestamp_delta),
            key,
            value,
            headers,
        });
    }
    Ok(())
}

struct Reader<'a> {
    bytes: &'a Bytes,
    position: usize,
    end: usize,
}

impl Reader<'_> {
    fn varint(&mut self) -> Result<u64, BatchDefect> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self
                .bytes
                .get(self.position)
                .filter(|_| self.position < self.end)
                .ok_or(BatchDefect::Corrupt("varint runs past its batch"))?;
            self.position += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(BatchDefect::Corrupt("varint is too long"))
    }

    fn take(&mut self, len: usize) -> Result<&[u8], BatchDefect> {
        let end = self
            .position
            .checked_add(len)
            .filter(|end| *end <= self.end)
            .ok_or(BatchDefect::Corrupt("field runs past its batch"))?;
        let slice = &self.bytes[self.position..end];
        self.position = end;
        Ok(slice)
    }

    /// A zig-zag length (-1 for null) and that many bytes, sliced without copying.
    fn bytes_field(&mut self) -> Result<Option<Bytes>, BatchDefect> {
        let len = unzigzag(self.varint()?);
        if len < 0 {
            return Ok(None);
        }
        let start = self.position;
        self.take(len as usize)?;
        Ok(Some(self.bytes.slice(start..self.position)))
    }
}

fn bytes_field_len(bytes: Option<&[u8]>) -> usize {
    match bytes {
        None => 1,
        Some(bytes) => varint_len(zigzag(bytes.len() as i64)) + bytes.len(),
    }
}

fn put_bytes_field(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => put_varint(out, zigzag(-1)),
        Some(bytes) => {
            put_varint(out, zigzag(bytes.len() as i64));
            out.extend_from_slice(bytes);
        }
    }
}

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

fn varint_len(mut value: u64) -> usize {
    let mut len = 1;
    while value >= 0x80 {
        value >>= 7;
        len += 1;
    }
    len
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn array_at<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut array = [0; N];
    array.copy_from_slice(&bytes[at..at + N]);
    array
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(array_at(bytes, at))
}

fn i64_at(bytes: &[u8], at: usize) -> i64 {
    i64::from_le_bytes(array_at(bytes, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record<'a>(offset_delta: u32, key: &'a [u8], value: Option<&'a [u8]>) -> RecordRef<'a> {
        RecordRef {
            offset_delta,
            timestamp: 1_000 + i64::from(offset_delta),
            key: Some(key),
            value,
            headers: &[],
        }
    }

    #[test]
    fn batches_round_trip_with_nulls_headers_and_gaps() {
        let headers = [Header {
            key: "trace".into(),
            value: Some(Bytes::from_static(b"abc")),
        }];
        let records = [
            record(0, b"k1", Some(b"v1")),
            RecordRef {
                headers: &headers,
                ..record(1, b"k2", None)
            },
            record(5, b"", Some(b"")),
        ];
        let mut out = Vec::new();
        encode_batch(
            &mut out,
            42,
            BatchProducer::NONE,
            false,
            7,
            records.iter().copied(),
        );
        let bytes = Bytes::from(out);
        let header = BatchHeader::parse(&bytes).expect("header");
        header.verify(&bytes).expect("checksum");
        assert_eq!(header.size, bytes.len());
        assert_eq!(header.last_offset(), 47);
        assert_eq!(header.max_timestamp, 1_005);
        let mut decoded = Vec::new();
        decode_records(&bytes, &header, |r| decoded.push(r)).expect("records");
        let offsets: Vec<i64> = decoded.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, [42, 43, 47]);
        assert_eq!(decoded[1].value, None);
        assert_eq!(decoded[1].headers, headers);
        assert_eq!(decoded[2].key.as_deref(), Some(&b""[..]));
        assert_eq!(decoded[2].timestamp, 1_005);
    }

    #[test]
    fn torn_and_flipped_bytes_are_detected() {
        let mut out = Vec::new();
        encode_batch(
            &mut out,
            0,
            BatchProducer::NONE,
            false,
            0,
            [record(0, b"k", Some(b"value"))].into_iter(),
        );
        let header = BatchHeader::parse(&out).expect("header");
        assert_eq!(
            header.verify(&out[..out.len() - 1]),
            Err(BatchDefect::Truncated)
        );
        assert_eq!(BatchHeader::parse(&out[..10]), Err(BatchDefect::Truncated));
        let last = out.len() - 1;
        out[last] ^= 1;
        assert_eq!(
            header.verify(&out),
            Err(BatchDefect::Corrupt("checksum mismatch"))
        );
    }

    #[test]
    fn zigzag_varints_round_trip() {
        for value in [0i64, 1, -1, 63, -64, 1 << 40, i64::MIN, i64::MAX] {
            assert_eq!(unzigzag(zigzag(value)), value);
            let mut out = Vec::new();
            put_varint(&mut out, zigzag(value));
            assert_eq!(out.len(), varint_len(zigzag(value)));
        }
    }
}
