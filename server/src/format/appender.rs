//! [`Appender`]: builds one Arrow array of a ksqlDB type, value by value, nested types
//! included. Decoders append exactly one entry per record to every column (a null where a
//! record failed), so that columns stay aligned without rolling anything back.

use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder,
    Decimal256Builder, Float64Builder, Int32Builder, Int64Builder, ListArray, MapArray,
    NullBufferBuilder, StringBuilder, StructArray, Time32MillisecondBuilder,
    TimestampMillisecondBuilder,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, FieldRef, Fields};

use crate::types::SqlType;

/// A builder for one column of a ksqlDB type.
#[derive(Debug)]
pub enum Appender {
    Boolean(BooleanBuilder),
    Integer(Int32Builder),
    BigInt(Int64Builder),
    Double(Float64Builder),
    Decimal {
        builder: DecimalBuilder,
        precision: u8,
        scale: u8,
    },
    String(StringBuilder),
    Bytes(BinaryBuilder),
    Date(Date32Builder),
    Time(Time32MillisecondBuilder),
    Timestamp(TimestampMillisecondBuilder),
    List {
        field: FieldRef,
        items: Box<Appender>,
        offsets: Vec<i32>,
        nulls: NullBufferBuilder,
    },
    Map {
        entries: FieldRef,
        keys: Box<Appender>,
        values: Box<Appender>,
        offsets: Vec<i32>,
        nulls: NullBufferBuilder,
    },
    Struct {
        fields: Fields,
        children: Vec<Appender>,
        nulls: NullBufferBuilder,
    },
}

impl Appender {
    pub fn new(ty: &SqlType, capacity: usize) -> Appender {
        match ty {
            SqlType::Boolean => Appender::Boolean(BooleanBuilder::with_capacity(capacity)),
            SqlType::Integer => Appender::Integer(Int32Builder::with_capacity(capacity)),
            SqlType::BigInt => Appender::BigInt(Int64Builder::with_capacity(capacity)),
            SqlType::Double => Appender::Double(Float64Builder::with_capacity(capacity)),
            SqlType::Decimal { precision, scale } => Appender::Decimal {
                builder: DecimalBuilder::new(*precision, capacity),
                precision: *precision,
                scale: *scale,
            },
            SqlType::String => {
                Appender::String(StringBuilder::with_capacity(capacity, capacity * 8))
            }
            SqlType::Bytes => Appender::Bytes(BinaryBuilder::with_capacity(capacity, capacity * 8)),
            SqlType::Date => Appender::Date(Date32Builder::with_capacity(capacity)),
            SqlType::Time => Appender::Time(Time32MillisecondBuilder::with_capacity(capacity)),
            SqlType::Timestamp => {
                Appender::Timestamp(TimestampMillisecondBuilder::with_capacity(capacity))
            }
            SqlType::Array(item) => {
                let DataType::List(field) = ty.to_arrow() else {
                    unreachable!("ARRAY maps to a List")
                };
                let mut offsets = Vec::with_capacity(capacity + 1);
                offsets.push(0);
                Appender::List {
                    field,
                    items: Box::new(Appender::new(item, capacity)),
                    offsets,
                    nulls: NullBufferBuilder::new(capacity),
                }
            }
            SqlType::Map(key, value) => {
                let DataType::Map(entries, _) = ty.to_arrow() else {
                    unreachable!("MAP maps to a Map")
                };
                let mut offsets = Vec::with_capacity(capacity + 1);
                offsets.push(0);
                Appender::Map {
                    entries,
                    keys: Box::new(Appender::new(key, capacity)),
                    values: Box::new(Appender::new(value, capacity)),
                    offsets,
                    nulls: NullBufferBuilder::new(capacity),
                }
            }
            SqlType::Struct(fields) => {
                let DataType::Struct(arrow_fields) = ty.to_arrow() else {
                    unreachable!("STRUCT maps to a Struct")
                };
                Appender::Struct {
                    fields: arrow_fields,
                    children: fields
                        .iter()
                        .map(|f| Appender::new(&f.ty, capacity))
                        .collect(),
                    nulls: NullBufferBuilder::new(capacity),
                }
            }
        }
    }

    pub fn append_null(&mut self) {
        match self {
            Appender::Boolean(b) => b.append_null(),
            Appender::Integer(b) => b.append_null(),
            Appender::BigInt(b) => b.append_null(),
            Appender::Double(b) => b.append_null(),
            Appender::Decimal { builder, .. } => builder.append_null(),
            Appender::String(b) => b.append_null(),
            Appender::Bytes(b) => b.append_null(),
            Appender::Date(b) => b.append_null(),
            Appender::Time(b) => b.append_null(),
            Appender::Timestamp(b) => b.append_null(),
            Appender::List { offsets, nulls, .. } | Appender::Map { offsets, nulls, .. } => {
                let last = *offsets.last().expect("offsets start with 0");
                offsets.push(last);
                nulls.append_null();
            }
            Appender::Struct {
                children, nulls, ..
            } => {
                for child in children {
                    child.append_null();
                }
                nulls.append_null();
            }
        }
    }

    /// Closes a list or map entry after its items were appended.
    pub fn close_nested(&mut self) {
        match self {
            Appender::List {
                items,
                offsets,
                nulls,
                ..
            } => {
                offsets.push(items.len() as i32);
                nulls.append_non_null();
            }
            Appender::Map {
                keys,
                offsets,
                nulls,
                ..
            } => {
                offsets.push(keys.len() as i32);
                nulls.append_non_null();
            }
            Appender::Struct { nulls, .. } => nulls.append_non_null(),
            _ => {}
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Appender::Boolean(b) => b.len(),
            Appender::Integer(b) => b.len(),
            Appender::BigInt(b) => b.len(),
            Appender::Double(b) => b.len(),
            Appender::Decimal { builder, .. } => builder.len(),
            Appender::String(b) => b.len(),
            Appender::Bytes(b) => b.len(),
            Appender::Date(b) => b.len(),
            Appender::Time(b) => b.len(),
            Appender::Timestamp(b) => b.len(),
            Appender::List { offsets, .. } | Appender::Map { offsets, .. } => offsets.len() - 1,
            Appender::Struct { nulls, .. } => nulls.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The array built so far; the appender starts again empty.
    pub fn finish(&mut self) -> ArrayRef {
        match self {
            Appender::Boolean(b) => Arc::new(b.finish()),
            Appender::Integer(b) => Arc::new(b.finish()),
            Appender::BigInt(b) => Arc::new(b.finish()),
            Appender::Double(b) => Arc::new(b.finish()),
            Appender::Decimal {
                builder,
                precision,
                scale,
            } => builder.finish(*precision, *scale),
            Appender::String(b) => Arc::new(b.finish()),
            Appender::Bytes(b) => Arc::new(b.finish()),
            Appender::Date(b) => Arc::new(b.finish()),
            Appender::Time(b) => Arc::new(b.finish()),
            Appender::Timestamp(b) => Arc::new(b.finish()),
            Appender::List {
                field,
                items,
                offsets,
                nulls,
            } => {
                let offsets = OffsetBuffer::new(std::mem::replace(offsets, vec![0]).into());
                Arc::new(ListArray::new(
                    field.clone(),
                    offsets,
                    items.finish(),
                    nulls.finish(),
                ))
            }
            Appender::Map {
                entries,
                keys,
                values,
                offsets,
                nulls,
            } => {
                let DataType::Struct(entry_fields) = entries.data_type() else {
                    unreachable!("map entries are a struct")
                };
                let entry_array = StructArray::new(
                    entry_fields.clone(),
                    vec![keys.finish(), values.finish()],
                    None,
                );
                let offsets = OffsetBuffer::new(std::mem::replace(offsets, vec![0]).into());
                Arc::new(MapArray::new(
                    entries.clone(),
                    offsets,
                    entry_array,
                    nulls.finish(),
                    false,
                ))
            }
            Appender::Struct {
                fields,
                children,
                nulls,
            } => {
                let arrays = children.iter_mut().map(Appender::finish).collect();
                Arc::new(StructArray::new(fields.clone(), arrays, nulls.finish()))
            }
        }
    }
}

/// The builder of a DECIMAL column: 128-bit values up to 38 digits, 256-bit beyond.
#[derive(Debug)]
pub enum DecimalBuilder {
    Narrow(Decimal128Builder),
    Wide(Decimal256Builder),
}

impl DecimalBuilder {
    pub fn new(precision: u8, capacity: usize) -> DecimalBuilder {
        if precision <= crate::types::MAX_NARROW_DECIMAL_PRECISION {
            DecimalBuilder::Narrow(Decimal128Builder::with_capacity(capacity))
        } else {
            DecimalBuilder::Wide(Decimal256Builder::with_capacity(capacity))
        }
    }

    /// Appends the decimal a text spells (`12.5`, `1E3`) at the column's scale, or NULL
    /// and why not.
    pub fn append_text(&mut self, text: &str, precision: u8, scale: u8) -> Result<(), String> {
        use crate::types::decimal::{parse_decimal, parse_wide_decimal};
        let parsed = match self {
            DecimalBuilder::Narrow(b) => {
                parse_decimal(text, precision, scale).map(|v| b.append_value(v))
            }
            DecimalBuilder::Wide(b) => {
                parse_wide_decimal(text, precision, scale).map(|v| b.append_value(v))
            }
        };
        if parsed.is_err() {
            self.append_null();
        }
        parsed
    }

    pub fn append_null(&mut self) {
        match self {
            DecimalBuilder::Narrow(b) => b.append_null(),
            DecimalBuilder::Wide(b) => b.append_null(),
        }
    }

    fn len(&self) -> usize {
        match self {
            DecimalBuilder::Narrow(b) => b.len(),
            DecimalBuilder::Wide(b) => b.len(),
        }
    }

    /// The column built so far, of the `precision` and `scale` it was made for.
    pub fn finish(&mut self, precision: u8, scale: u8) -> ArrayRef {
        const VALID: &str = "precision and scale were validated with the type";
        match self {
            DecimalBuilder::Narrow(b) => Arc::new(
                b.finish()
                    .with_precision_and_scale(precision, scale as i8)
                    .expect(VALID),
            ),
            DecimalBuilder::Wide(b) => Arc::new(
                b.finish()
                    .with_precision_and_scale(precision, scale as i8)
                    .expect(VALID),
            ),
        }
    }
}
