//! State stores: an operator's keyed state, kept in memory, with every change written to a
//! compacted changelog topic so that a restarted query reads its state back instead of
//! re-reading its source. Entry points: [`StateStore`] (what an operator implements),
//! [`read_changelog`], and [`ScalarRows`] (scalar values to bytes and back).

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::datatypes::FieldRef;
use arrow::row::{RowConverter, SortField};
use bytes::Bytes;
use datafusion::common::ScalarValue;

use crate::log::{FetchRequest, IsolationLevel, Log, LogError, ProducerRecord, TopicConfig};
use crate::plan::PlanError;

/// An operator's keyed state, backed by a changelog topic.
///
/// The operator writes [`StateStore::changelog_records`] in the same transaction as its
/// output and its input positions, so the changelog always matches the committed
/// positions; after a restart [`StateStore::restore`] loads the changelog's latest entry per
/// key and processing continues from those positions, counting nothing twice.
pub trait StateStore {
    /// The entries changed since the last call, as changelog records (a record without a
    /// value deletes its key), the store's own bookkeeping included.
    fn changelog_records(&mut self) -> Result<Vec<ProducerRecord>, PlanError>;

    /// Loads the changelog's latest entry per key (deleted keys left out). Answers `false`
    /// when the entries were written by another version or for another plan: the state
    /// must then be rebuilt another way.
    fn restore(&mut self, entries: &[(Bytes, Bytes)]) -> Result<bool, PlanError>;

    /// Marks every entry changed, so that the next [`StateStore::changelog_records`] holds
    /// the whole state (after a state was rebuilt without its changelog).
    fn mark_all_changed(&mut self);
}

/// Creates a changelog topic (compacted, one partition) unless it exists; answers whether
/// it existed.
pub async fn ensure_changelog(log: &dyn Log, topic: &str) -> Result<bool, LogError> {
    match log
        .create_topic(topic, TopicConfig::new(1).compacted())
        .await
    {
        Ok(()) => Ok(false),
        Err(LogError::TopicExists(_)) => Ok(true),
        Err(error) => Err(error),
    }
}

/// The latest committed entry of each key of a changelog topic, in the order the keys
/// were first written; deleted keys are left out.
pub async fn read_changelog(log: &dyn Log, topic: &str) -> Result<Vec<(Bytes, Bytes)>, LogError> {
    let mut latest: HashMap<Bytes, Option<Bytes>> = HashMap::new();
    let mut order: Vec<Bytes> = Vec::new();
    let mut offset = 0;
    loop {
        let request =
            FetchRequest::new(topic, 0, offset).with_isolation(IsolationLevel::ReadCommitted);
        let response = match log.fetch(&request).await {
            Ok(response) => response,
            // Compaction removed the first records: start at the first one kept.
            Err(LogError::OffsetOutOfRange { start, .. }) if start > offset => {
                offset = start;
                continue;
            }
            Err(error) => return Err(error),
        };
        for record in response.records {
            let Some(key) = record.key else { continue };
            if latest.insert(key.clone(), record.value).is_none() {
                order.push(key);
            }
        }
        if response.next_offset >= response.end_offset || response.next_offset == offset {
            break;
        }
        offset = response.next_offset;
    }
    Ok(order
        .into_iter()
        .filter_map(|key| {
            let value = latest.remove(&key).flatten()?;
            Some((key, value))
        })
        .collect())
}

/// Rows of scalar values (of given fields) as bytes, in Arrow's row format, and back: how
/// stores write values whose types only the plan knows (accumulator states, arguments).
#[derive(Debug)]
pub struct ScalarRows {
    fields: Vec<FieldRef>,
    converter: RowConverter,
}

impl ScalarRows {
    /// `None` when a field's type has no row format.
    pub fn try_new(fields: Vec<FieldRef>) -> Result<Option<ScalarRows>, PlanError> {
        let sort_fields: Vec<SortField> = fields
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect();
        if !RowConverter::supports_fields(&sort_fields) {
            return Ok(None);
        }
        Ok(Some(ScalarRows {
            converter: RowConverter::new(sort_fields)?,
            fields,
        }))
    }

    /// Names the fields and their types: a store's entries are only read back under the
    /// same description.
    pub fn describe(&self) -> String {
        self.fields
            .iter()
            .map(|f| format!("{}:{}", f.name(), f.data_type()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Each row's bytes; `rows` hold one value per field (cast to the field's type).
    pub fn encode(&self, rows: &[Vec<ScalarValue>]) -> Result<Vec<Bytes>, PlanError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let columns = self
            .fields
            .iter()
            .enumerate()
            .map(|(index, field)| {
                let values = rows
                    .iter()
                    .map(|row| row.get(index).cloned().unwrap_or(ScalarValue::Null));
                let array = ScalarValue::iter_to_array(values)?;
                Ok(if array.data_type() == field.data_type() {
                    array
                } else {
                    arrow::compute::cast(&array, field.data_type())?
                })
            })
            .collect::<Result<Vec<ArrayRef>, PlanError>>()?;
        let converted = self.converter.convert_columns(&columns)?;
        Ok(converted
            .iter()
            .map(|row| Bytes::copy_from_slice(row.data()))
            .collect())
    }

    /// The columns of rows written by [`ScalarRows::encode`].
    pub fn decode<'a>(
        &self,
        rows: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Vec<ArrayRef>, PlanError> {
        let parser = self.converter.parser();
        let parsed: Vec<_> = rows.into_iter().map(|bytes| parser.parse(bytes)).collect();
        Ok(self.converter.convert_rows(parsed)?)
    }
}

/// A field of a store's value.
pub fn field(name: &str, data_type: arrow::datatypes::DataType) -> FieldRef {
    Arc::new(arrow::datatypes::Field::new(name, data_type, true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::{EmbeddedLog, Log};
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{DataType, Int64Type};

    #[test]
    fn scalar_rows_come_back_as_they_went_in() {
        let rows = ScalarRows::try_new(vec![
            field("n", DataType::Int64),
            field("names", DataType::new_list(DataType::Utf8, true)),
        ])
        .expect("plans")
        .expect("has a row format");
        let names = |values: &[&str]| {
            let values: Vec<ScalarValue> = values.iter().map(|v| ScalarValue::from(*v)).collect();
            ScalarValue::List(ScalarValue::new_list_nullable(&values, &DataType::Utf8))
        };
        let encoded = rows
            .encode(&[
                vec![ScalarValue::Int64(Some(3)), names(&["a", "b"])],
                vec![ScalarValue::Int64(None), names(&[])],
            ])
            .expect("encodes");
        let columns = rows
            .decode(encoded.iter().map(|b| b.as_ref()))
            .expect("decodes");
        let counts = columns[0].as_primitive::<Int64Type>();
        assert_eq!((counts.value(0), counts.is_null(1)), (3, true));
        assert_eq!(
            ScalarValue::try_from_array(&columns[1], 0).expect("a value"),
            names(&["a", "b"])
        );
        assert_eq!(rows.describe(), "n:Int64,names:List(Utf8)");
    }

    #[tokio::test]
    async fn a_changelog_reads_back_the_latest_committed_entry_per_key() {
        let dir = tempfile::tempdir().expect("a directory");
        let log: Arc<dyn Log> =
            Arc::new(EmbeddedLog::open(dir.path(), Default::default()).expect("opens"));
        assert!(!ensure_changelog(&*log, "store").await.expect("creates"));
        assert!(ensure_changelog(&*log, "store").await.expect("exists"));
        let mut producer = crate::log::transaction::TransactionalProducer::new(log.clone(), "t")
            .await
            .expect("registers");
        let put = |k: &str, v: Option<&str>| {
            ProducerRecord::new(Some(k.to_string()), v.map(str::to_string))
        };
        producer
            .send(
                "store",
                vec![
                    put("a", Some("1")),
                    put("b", Some("1")),
                    put("c", Some("1")),
                ],
            )
            .await
            .expect("writes");
        producer.commit(None).await.expect("commits");
        producer
            .send("store", vec![put("a", Some("2")), put("b", None)])
            .await
            .expect("writes");
        producer.commit(None).await.expect("commits");
        // Not committed: not part of the state.
        producer
            .send("store", vec![put("c", Some("9"))])
            .await
            .expect("writes");
        let entries = read_changelog(&*log, "store").await.expect("reads");
        let entries: Vec<(&[u8], &[u8])> = entries
            .iter()
            .map(|(k, v)| (k.as_ref(), v.as_ref()))
            .collect();
        assert_eq!(entries, [(&b"a"[..], &b"2"[..]), (b"c", b"1")]);
    }
}
