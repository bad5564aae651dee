//! A minimal encoder of PostgreSQL's binary COPY format, so rows can be encoded on the
//! generator's thread and streamed to the server as ready-made bytes.

use bytes::{BufMut, BytesMut};

/// Microseconds between the Unix epoch and PostgreSQL's epoch (2000-01-01).
const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

/// The 19-byte file header: signature, flags, header extension length.
pub fn header() -> &'static [u8] {
    b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0"
}

/// The trailer: a field count of -1.
pub fn trailer() -> &'static [u8] {
    &[0xff, 0xff]
}

/// Appends binary-COPY rows field by field.
pub struct RowWriter<'a> {
    pub buf: &'a mut BytesMut,
}

impl RowWriter<'_> {
    /// Starts a row of `fields` fields.
    pub fn start(&mut self, fields: i16) -> &mut Self {
        self.buf.put_i16(fields);
        self
    }

    pub fn int8(&mut self, v: i64) -> &mut Self {
        self.buf.put_i32(8);
        self.buf.put_i64(v);
        self
    }

    pub fn int4(&mut self, v: i32) -> &mut Self {
        self.buf.put_i32(4);
        self.buf.put_i32(v);
        self
    }

    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.buf.put_i32(1);
        self.buf.put_u8(v as u8);
        self
    }

    pub fn text(&mut self, v: &str) -> &mut Self {
        self.buf.put_i32(v.len() as i32);
        self.buf.put_slice(v.as_bytes());
        self
    }

    /// A `jsonb` value: the version byte 1, then the JSON text.
    pub fn jsonb(&mut self, json: &str) -> &mut Self {
        self.buf.put_i32(json.len() as i32 + 1);
        self.buf.put_u8(1);
        self.buf.put_slice(json.as_bytes());
        self
    }

    /// A `timestamptz` given in Unix microseconds.
    pub fn timestamptz(&mut self, unix_micros: i64) -> &mut Self {
        self.int8(unix_micros - PG_EPOCH_OFFSET_MICROS)
    }
}
