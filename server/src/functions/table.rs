//! ksqlDB's table functions as the arrays of rows they make: `EXPLODE(array)` is the
//! array itself, `CUBE_EXPLODE(array)` every combination of its items with some replaced by
//! NULL, from all NULL to none, as ksqlDB orders them (an item that is NULL already does
//! not double the combinations). The planner reads `f(…)` as `unnest(f(…))` for every
//! table function `f` (see `plan::explode`).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, ListArray, UInt32Array};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field};
use datafusion::common::DataFusionError;
use datafusion::logical_expr::ScalarUDF;

use super::udf::{KsqlFunction, failure, row_failure};

/// More items than this would make over a million rows from one.
const MOST_ITEMS: usize = 20;

/// The table functions' names.
pub const NAMES: [&str; 2] = ["explode", "cube_explode"];

pub fn functions() -> Vec<ScalarUDF> {
    vec![
        KsqlFunction::udf(
            "explode",
            |args| match args {
                [list @ DataType::List(_)] => Some(list.clone()),
                _ => None,
            },
            |args, _| Ok(args[0].clone()),
        ),
        KsqlFunction::udf(
            "cube_explode",
            |args| match args {
                [list @ DataType::List(_)] => Some(DataType::List(Arc::new(Field::new(
                    "item",
                    list.clone(),
                    true,
                )))),
                _ => None,
            },
            cube_combinations,
        ),
    ]
}

fn cube_combinations(args: &[ArrayRef], result: &DataType) -> Result<ArrayRef, DataFusionError> {
    let list = args[0].as_list::<i32>();
    let DataType::List(outer_field) = result else {
        return Err(failure("CUBE_EXPLODE makes arrays"));
    };
    let DataType::List(inner_field) = args[0].data_type() else {
        return Err(failure("CUBE_EXPLODE takes an array"));
    };
    let values = list.values();
    // Each combination as positions in `values`, NULL for a left-out item.
    let mut take: Vec<Option<u32>> = Vec::new();
    let mut inner_offsets = vec![0i32];
    let mut outer_offsets = vec![0i32];
    for row in 0..list.len() {
        let start = list.value_offsets()[row] as usize;
        let count = if list.is_valid(row) {
            list.value_length(row) as usize
        } else {
            0
        };
        if count > MOST_ITEMS {
            row_failure::<()>(
                row,
                format!("CUBE_EXPLODE takes at most {MOST_ITEMS} items, not {count}"),
            );
        } else if count > 0 {
            for mask in 0u32..(1 << count) {
                // Item j is kept when bit (count - 1 - j) is set: all NULL first.
                let kept = |j: usize| mask & (1 << (count - 1 - j)) != 0;
                let duplicate = (0..count).any(|j| kept(j) && values.is_null(start + j));
                if duplicate {
                    continue;
                }
                take.extend((0..count).map(|j| kept(j).then_some((start + j) as u32)));
                inner_offsets.push(take.len() as i32);
            }
        }
        outer_offsets.push(inner_offsets.len() as i32 - 1);
    }
    let items = arrow::compute::take(values, &UInt32Array::from(take), None)?;
    let inner = ListArray::try_new(
        inner_field.clone(),
        OffsetBuffer::new(inner_offsets.into()),
        items,
        None,
    )?;
    Ok(Arc::new(ListArray::try_new(
        outer_field.clone(),
        OffsetBuffer::new(outer_offsets.into()),
        Arc::new(inner),
        list.nulls().cloned(),
    )?))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::eval;

    #[test]
    fn combinations_run_from_all_null_to_all_kept() {
        assert_eq!(
            eval("cube_explode(make_array('a', 'b'))"),
            "[[NULL, NULL], [NULL, b], [a, NULL], [a, b]]"
        );
        assert_eq!(
            eval("cube_explode(make_array('a', NULL))"),
            "[[NULL, NULL], [a, NULL]]"
        );
        assert_eq!(eval("cube_explode(make_array(1))"), "[[NULL], [1]]");
        assert_eq!(eval("cube_explode(CAST(NULL AS ARRAY<INT>))"), "NULL");
    }
}
