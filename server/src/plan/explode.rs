//! ksqlDB's table functions in a stream's SELECT: `EXPLODE(array)` makes one row per item,
//! `CUBE_EXPLODE(array)` one row per combination of its items with some left NULL. Several
//! in one SELECT are zipped: a row becomes as many rows as its longest array has items,
//! shorter arrays giving NULL after their end; a NULL or empty array gives no rows.
//!
//! A table function is a function answering the array of rows each call makes
//! (`functions::table`); the planner reads `f(…)` as DataFusion's `unnest(f(…))`, which
//! plans as `Projection(Unnest(Projection(…)))`. An [`Explode`] is the middle part, run on
//! our batches.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, UInt32Array};
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::DataFusionError;
use datafusion::physical_expr::PhysicalExpr;

/// The rows between reading a batch and projecting the SELECT: each input row's columns,
/// the exploded ones spread over as many rows as the row's longest array has items.
#[derive(Debug, Clone)]
pub struct Explode {
    /// Computed from each input row first: the arrays and the columns the SELECT reads.
    pub inputs: Vec<Arc<dyn PhysicalExpr>>,
    /// For each output column: the input it comes from, and whether that is an array whose
    /// items it spreads over rows.
    columns: Vec<(usize, bool)>,
    pub output_schema: SchemaRef,
}

impl Explode {
    pub fn new(
        inputs: Vec<Arc<dyn PhysicalExpr>>,
        unnest: &datafusion::logical_expr::Unnest,
    ) -> Result<Explode, DataFusionError> {
        let exploded: Vec<usize> = unnest
            .list_type_columns
            .iter()
            .map(|(index, list)| {
                if list.depth == 1 {
                    Ok(*index)
                } else {
                    Err(DataFusionError::Plan(
                        "a table function cannot take the result of another".into(),
                    ))
                }
            })
            .collect::<Result<_, _>>()?;
        if !unnest.struct_type_columns.is_empty() {
            return Err(DataFusionError::Plan(
                "table functions take arrays, not structs".into(),
            ));
        }
        let columns = unnest
            .dependency_indices
            .iter()
            .map(|&input| (input, exploded.contains(&input)))
            .collect();
        Ok(Explode {
            inputs,
            columns,
            output_schema: Arc::new(unnest.schema.as_arrow().clone()),
        })
    }

    /// The exploded rows of `batch`, and for each the input row it came from.
    pub fn apply(
        &self,
        batch: &RecordBatch,
    ) -> Result<(UInt32Array, RecordBatch), DataFusionError> {
        let rows = batch.num_rows();
        let inputs = self
            .inputs
            .iter()
            .map(|expr| expr.evaluate(batch)?.into_array(rows))
            .collect::<Result<Vec<_>, _>>()?;
        let lists: Vec<&arrow::array::ListArray> = self
            .columns
            .iter()
            .filter(|(_, exploded)| *exploded)
            .map(|(input, _)| {
                inputs[*input].as_list_opt::<i32>().ok_or_else(|| {
                    DataFusionError::Execution("a table function takes an array".into())
                })
            })
            .collect::<Result<_, _>>()?;
        let length = |list: &arrow::array::ListArray, row: usize| {
            if list.is_valid(row) {
                list.value_length(row) as usize
            } else {
                0
            }
        };
        let mut source_rows = Vec::new();
        let mut item_numbers = Vec::new();
        for row in 0..rows {
            let longest = lists.iter().map(|l| length(l, row)).max().unwrap_or(0);
            for item in 0..longest {
                source_rows.push(row as u32);
                item_numbers.push(item);
            }
        }
        let source_rows = UInt32Array::from(source_rows);
        let columns = self
            .columns
            .iter()
            .zip(self.output_schema.fields())
            .map(|((input, exploded), field)| {
                let array = &inputs[*input];
                let column = if *exploded {
                    let list = array.as_list::<i32>();
                    // Each output row's item, NULL past the end of this array.
                    let items: UInt32Array = source_rows
                        .values()
                        .iter()
                        .zip(&item_numbers)
                        .map(|(&row, &item)| {
                            let row = row as usize;
                            (item < length(list, row))
                                .then(|| list.value_offsets()[row] as u32 + item as u32)
                        })
                        .collect();
                    arrow::compute::take(list.values(), &items, None)?
                } else {
                    arrow::compute::take(array, &source_rows, None)?
                };
                cast_to(column, field.data_type())
            })
            .collect::<Result<Vec<_>, _>>()?;
        let output = RecordBatch::try_new(self.output_schema.clone(), columns)?;
        Ok((source_rows, output))
    }
}

fn cast_to(array: ArrayRef, data_type: &DataType) -> Result<ArrayRef, DataFusionError> {
    if array.data_type() == data_type {
        Ok(array)
    } else {
        Ok(arrow::compute::cast(&array, data_type)?)
    }
}
