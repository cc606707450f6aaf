//! `GEO_DISTANCE`, `AS_VALUE`, and the collection functions `ARRAY_JOIN`, `ARRAY_REMOVE`,
//! `GENERATE_SERIES`, `ENTRIES`, `MAP_UNION`, `SLICE` and `AS_MAP`.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int32Array, Int64Array, ListArray,
    MapArray, StructArray,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Fields};
use datafusion::common::DataFusionError;
use datafusion::logical_expr::ScalarUDF;

use super::udf::{
    KsqlFunction, any_null, constant_string, doubles, failure, integers, is_number, is_string,
    row_failure, strings,
};

pub fn functions() -> Vec<ScalarUDF> {
    vec![
        KsqlFunction::udf("geo_distance", geo_distance_type, geo_distance),
        KsqlFunction::udf(
            "as_value",
            |args| match args {
                [t] => Some(t.clone()),
                _ => None,
            },
            |args, _| Ok(args[0].clone()),
        ),
        KsqlFunction::udf("generate_series", generate_series_type, generate_series),
        KsqlFunction::udf("entries", entries_type, entries),
        KsqlFunction::udf("map_union", map_union_type, map_union),
        KsqlFunction::udf("slice", slice_type, slice),
        KsqlFunction::udf("array_join", array_join_type, array_join),
        KsqlFunction::udf(
            "array_remove",
            |args| match args {
                [list @ DataType::List(_), _] => Some(list.clone()),
                _ => None,
            },
            array_remove,
        ),
        KsqlFunction::udf("as_map", as_map_type, as_map),
        // `STRUCT()`: the planner's name for a struct without fields.
        KsqlFunction::udf(
            super::EMPTY_STRUCT,
            |args| args.is_empty().then(|| DataType::Struct(Fields::empty())),
            |_, _| {
                Ok(Arc::new(arrow::array::StructArray::new_empty_fields(
                    1, None,
                )))
            },
        ),
    ]
}

fn geo_distance_type(args: &[DataType]) -> Option<DataType> {
    let coordinates = args.get(..4)?.iter().all(is_number);
    let unit = args.get(4).is_none_or(is_string);
    (coordinates && unit && args.len() <= 5).then_some(DataType::Float64)
}

/// `GEO_DISTANCE(lat1, lon1, lat2, lon2 [, 'KM' | 'MILES'])`: the great-circle distance by
/// the haversine formula, on a sphere of radius 6371 km (3959 miles).
fn geo_distance(args: &[ArrayRef], _: &DataType) -> Result<ArrayRef, DataFusionError> {
    let radius = match args.get(4) {
        None => 6371.0,
        Some(unit) => match constant_string(unit)?.map(|u| u.to_ascii_lowercase()) {
            None => 6371.0,
            Some(u) if u == "km" || u == "kilometers" || u == "kilometres" => 6371.0,
            Some(u) if u == "mi" || u == "miles" => 3959.0,
            Some(u) => {
                return Err(failure(format!(
                    "GeoDistance function units parameter must be one of miles, mi, km or \
                     kilometers. Values entered: {u}"
                )));
            }
        },
    };
    let values = args[..4]
        .iter()
        .map(doubles)
        .collect::<Result<Vec<Float64Array>, DataFusionError>>()?;
    let rows = args[0].len();
    let mut out = Vec::with_capacity(rows);
    for row in 0..rows {
        if values.iter().any(|v| v.is_null(row)) {
            out.push(None);
            continue;
        }
        let [lat1, lon1, lat2, lon2] = [0, 1, 2, 3].map(|i| values[i].value(row));
        if let Some(lat) = [lat1, lat2]
            .into_iter()
            .find(|lat| !(-90.0..=90.0).contains(lat))
        {
            out.push(row_failure(
                row,
                format!(
                    "valid latitude values for GeoDistance function are in the range of -90 to \
                     90 decimal degrees. Value entered: {lat}"
                ),
            ));
            continue;
        }
        if let Some(lon) = [lon1, lon2]
            .into_iter()
            .find(|lon| !(-180.0..=180.0).contains(lon))
        {
            out.push(row_failure(
                row,
                format!(
                    "valid longitude values for GeoDistance function are in the range of -180 \
                     to +180 decimal degrees. Value entered: {lon}"
                ),
            ));
            continue;
        }
        let (phi1, phi2) = (lat1.to_radians(), lat2.to_radians());
        let half_dphi = (phi2 - phi1) / 2.0;
        let half_dlambda = (lon2 - lon1).to_radians() / 2.0;
        let a = half_dphi.sin().powi(2) + half_dlambda.sin().powi(2) * phi1.cos() * phi2.cos();
        out.push(Some(2.0 * radius * a.sqrt().asin()));
    }
    Ok(Arc::new(Float64Array::from(out)))
}

fn generate_series_type(args: &[DataType]) -> Option<DataType> {
    if !(2..=3).contains(&args.len()) || !args.iter().all(|t| t.is_integer() || t.is_null()) {
        return None;
    }
    let element = if args.contains(&DataType::Int64) {
        DataType::Int64
    } else {
        DataType::Int32
    };
    Some(DataType::List(Arc::new(Field::new("item", element, true))))
}

/// `GENERATE_SERIES(start, end [, step])`: the numbers from `start` to `end` inclusive;
/// the step defaults to 1, or -1 when `end` is below `start`.
fn generate_series(args: &[ArrayRef], result: &DataType) -> Result<ArrayRef, DataFusionError> {
    let bounds = args
        .iter()
        .map(|a| Ok(arrow::compute::cast(a, &DataType::Int64)?))
        .collect::<Result<Vec<ArrayRef>, DataFusionError>>()?;
    let value = |i: usize, row: usize| {
        bounds[i]
            .as_primitive::<arrow::datatypes::Int64Type>()
            .value(row)
    };
    let mut offsets = vec![0i32];
    let mut items: Vec<i64> = Vec::new();
    let mut valid = Vec::with_capacity(args[0].len());
    for row in 0..args[0].len() {
        if any_null(&bounds, row) {
            valid.push(false);
            offsets.push(items.len() as i32);
            continue;
        }
        let (start, end) = (value(0, row), value(1, row));
        let step = match bounds.get(2) {
            Some(_) => value(2, row),
            None if end < start => -1,
            None => 1,
        };
        let problem = if step == 0 {
            Some("GENERATE_SERIES step cannot be zero".to_string())
        } else if (end - start).signum() * step.signum() < 0 {
            Some(format!(
                "GENERATE_SERIES step has wrong sign: {step} does not lead from {start} to {end}"
            ))
        } else {
            None
        };
        if let Some(message) = problem {
            row_failure::<()>(row, message);
            valid.push(false);
            offsets.push(items.len() as i32);
            continue;
        }
        let mut at = start;
        while (step > 0 && at <= end) || (step < 0 && at >= end) {
            items.push(at);
            at += step;
        }
        valid.push(true);
        offsets.push(items.len() as i32);
    }
    let DataType::List(field) = result else {
        return Err(failure("GENERATE_SERIES returns a list"));
    };
    let values: ArrayRef = match field.data_type() {
        DataType::Int32 => Arc::new(Int32Array::from_iter_values(
            items.iter().map(|v| *v as i32),
        )),
        _ => Arc::new(Int64Array::from(items)),
    };
    Ok(Arc::new(ListArray::try_new(
        field.clone(),
        OffsetBuffer::new(offsets.into()),
        values,
        Some(valid.into()),
    )?))
}

/// The entry struct of a map type and its value type.
fn map_value_type(map: &DataType) -> Option<DataType> {
    let DataType::Map(entries, _) = map else {
        return None;
    };
    let DataType::Struct(fields) = entries.data_type() else {
        return None;
    };
    Some(fields.get(1)?.data_type().clone())
}

fn entries_type(args: &[DataType]) -> Option<DataType> {
    let [map, sorted] = args else { return None };
    if *sorted != DataType::Boolean && !sorted.is_null() {
        return None;
    }
    let value = map_value_type(map)?;
    Some(DataType::List(Arc::new(Field::new(
        "item",
        DataType::Struct(entry_fields(value)),
        true,
    ))))
}

fn entry_fields(value: DataType) -> Fields {
    Fields::from(vec![
        Field::new("K", DataType::Utf8, true),
        Field::new("V", value, true),
    ])
}

/// `ENTRIES(map, sorted)`: the map as an array of `STRUCT<K, V>`, by key when `sorted`.
fn entries(args: &[ArrayRef], result: &DataType) -> Result<ArrayRef, DataFusionError> {
    let map = args[0].as_map();
    let sorted: BooleanArray = arrow::compute::cast(&args[1], &DataType::Boolean)?
        .as_boolean()
        .clone();
    let keys = strings(map.keys())?;
    let mut order: Vec<u32> = Vec::with_capacity(keys.len());
    let mut offsets = vec![0i32];
    for row in 0..map.len() {
        let range = map.value_offsets()[row] as usize..map.value_offsets()[row + 1] as usize;
        let mut indices: Vec<u32> = if map.is_null(row) {
            Vec::new()
        } else {
            range.map(|i| i as u32).collect()
        };
        if sorted.is_valid(row) && sorted.value(row) {
            indices.sort_by(|a, b| keys.value(*a as usize).cmp(keys.value(*b as usize)));
        }
        order.extend(indices);
        offsets.push(order.len() as i32);
    }
    let take = arrow::array::UInt32Array::from(order);
    let entry_keys = arrow::compute::take(&keys, &take, None)?;
    let entry_values = arrow::compute::take(map.values(), &take, None)?;
    let DataType::List(field) = result else {
        return Err(failure("ENTRIES returns a list"));
    };
    let DataType::Struct(fields) = field.data_type() else {
        return Err(failure("ENTRIES returns structs"));
    };
    let structs = StructArray::try_new(fields.clone(), vec![entry_keys, entry_values], None)?;
    Ok(Arc::new(ListArray::try_new(
        field.clone(),
        OffsetBuffer::new(offsets.into()),
        Arc::new(structs),
        map.nulls().cloned(),
    )?))
}

fn map_union_type(args: &[DataType]) -> Option<DataType> {
    let [first, second] = args else { return None };
    map_value_type(first)?;
    if second.is_null() {
        return Some(first.clone());
    }
    (map_value_type(second)? == map_value_type(first)?).then(|| first.clone())
}

/// `MAP_UNION(a, b)`: every entry of both maps; `b` wins where both have a key. NULL only
/// when both maps are.
fn map_union(args: &[ArrayRef], result: &DataType) -> Result<ArrayRef, DataFusionError> {
    let first = args[0].as_map();
    let second = if args[1].data_type().is_null() {
        arrow::array::new_null_array(result, args[1].len())
    } else {
        args[1].clone()
    };
    let second = second.as_map();
    let (first_keys, second_keys) = (strings(first.keys())?, strings(second.keys())?);
    // Picks are (map, index) pairs fed to `interleave`.
    let mut picks: Vec<(usize, usize)> = Vec::new();
    let mut offsets = vec![0i32];
    let mut valid = Vec::with_capacity(first.len());
    for row in 0..first.len() {
        let mut row_picks: Vec<(usize, usize)> = Vec::new();
        for (which, map, keys) in [(0, first, &first_keys), (1, second, &second_keys)] {
            if map.is_null(row) {
                continue;
            }
            let range = map.value_offsets()[row] as usize..map.value_offsets()[row + 1] as usize;
            for i in range {
                let key = keys.value(i);
                let existing = row_picks.iter().position(|(w, j)| {
                    let other = if *w == 0 { &first_keys } else { &second_keys };
                    other.value(*j) == key
                });
                match existing {
                    Some(at) => row_picks[at] = (which, i),
                    None => row_picks.push((which, i)),
                }
            }
        }
        valid.push(!(first.is_null(row) && second.is_null(row)));
        picks.extend(row_picks);
        offsets.push(picks.len() as i32);
    }
    let keys =
        arrow::compute::interleave(&[first.keys().as_ref(), second.keys().as_ref()], &picks)?;
    let values =
        arrow::compute::interleave(&[first.values().as_ref(), second.values().as_ref()], &picks)?;
    let DataType::Map(entries, ordered) = result else {
        return Err(failure("MAP_UNION returns a map"));
    };
    let DataType::Struct(fields) = entries.data_type() else {
        return Err(failure("a map holds structs"));
    };
    let structs = StructArray::try_new(fields.clone(), vec![keys, values], None)?;
    Ok(Arc::new(MapArray::try_new(
        entries.clone(),
        OffsetBuffer::new(offsets.into()),
        structs,
        Some(valid.into()),
        *ordered,
    )?))
}

fn slice_type(args: &[DataType]) -> Option<DataType> {
    match args {
        [list @ DataType::List(_), from, to]
            if [from, to].iter().all(|t| t.is_integer() || t.is_null()) =>
        {
            Some(list.clone())
        }
        _ => None,
    }
}

/// `SLICE(array, from, to)`: the items from position `from` to `to` (from 1, both
/// included; NULL `from` is the first, NULL `to` the last). NULL when a position is
/// outside the array.
fn slice(args: &[ArrayRef], _: &DataType) -> Result<ArrayRef, DataFusionError> {
    let list = args[0].as_list::<i32>();
    let bounds = [integers(&args[1])?, integers(&args[2])?];
    let bound = |i: usize, row: usize| bounds[i].is_valid(row).then(|| bounds[i].value(row));
    let mut take: Vec<u32> = Vec::new();
    let mut offsets = vec![0i32];
    let mut valid = Vec::with_capacity(list.len());
    for row in 0..list.len() {
        let start = list.value_offsets()[row] as i64;
        let length = list.value_length(row) as i64;
        let from = bound(0, row).map_or(0, |from| from - 1);
        let to = bound(1, row).unwrap_or(length);
        let in_range = list.is_valid(row) && 0 <= from && from <= to && to <= length;
        if list.is_valid(row) && from > to && 0 <= from && to <= length {
            row_failure::<()>(row, format!("SLICE from {} is after to {to}", from + 1));
        }
        if in_range {
            take.extend((start + from..start + to).map(|i| i as u32));
        }
        valid.push(in_range);
        offsets.push(take.len() as i32);
    }
    let DataType::List(field) = args[0].data_type() else {
        return Err(failure("SLICE takes an array"));
    };
    let items = arrow::compute::take(list.values(), &arrow::array::UInt32Array::from(take), None)?;
    Ok(Arc::new(ListArray::try_new(
        field.clone(),
        OffsetBuffer::new(offsets.into()),
        items,
        Some(valid.into()),
    )?))
}

fn array_join_type(args: &[DataType]) -> Option<DataType> {
    let primitive = |t: &DataType| {
        t.is_numeric() || is_string(t) || matches!(t, DataType::Boolean | DataType::Null)
    };
    match args {
        [DataType::List(item)] if primitive(item.data_type()) => Some(DataType::Utf8),
        [DataType::List(item), delimiter]
            if primitive(item.data_type()) && is_string(delimiter) =>
        {
            Some(DataType::Utf8)
        }
        _ => None,
    }
}

/// `ARRAY_JOIN(array [, delimiter])`: the items as text joined by the delimiter (`,` when
/// none is given, nothing when it is NULL); a NULL item is `null`, as Java writes it.
fn array_join(args: &[ArrayRef], _: &DataType) -> Result<ArrayRef, DataFusionError> {
    let list = args[0].as_list::<i32>();
    let items = strings(list.values())?;
    let delimiters = args.get(1).map(strings).transpose()?;
    let mut out = arrow::array::StringBuilder::with_capacity(list.len(), 0);
    let mut text = String::new();
    for row in 0..list.len() {
        if list.is_null(row) {
            out.append_null();
            continue;
        }
        let delimiter = match &delimiters {
            None => ",",
            Some(d) if d.is_null(row) => "",
            Some(d) => d.value(row),
        };
        text.clear();
        let offsets = list.value_offsets();
        for (n, item) in (offsets[row] as usize..offsets[row + 1] as usize).enumerate() {
            if n > 0 {
                text.push_str(delimiter);
            }
            text.push_str(if items.is_null(item) {
                "null"
            } else {
                items.value(item)
            });
        }
        out.append_value(&text);
    }
    Ok(Arc::new(out.finish()))
}

/// `ARRAY_REMOVE(array, item)`: the array without every item equal to `item` (NULL removes
/// the NULLs).
fn array_remove(args: &[ArrayRef], _: &DataType) -> Result<ArrayRef, DataFusionError> {
    let list = args[0].as_list::<i32>();
    let DataType::List(field) = args[0].data_type() else {
        return Err(failure("ARRAY_REMOVE takes an array"));
    };
    let offsets = list.value_offsets();
    // The item to remove, repeated for each item of its row.
    let rows: arrow::array::UInt32Array = (0..list.len())
        .flat_map(|row| std::iter::repeat_n(row as u32, (offsets[row + 1] - offsets[row]) as usize))
        .collect();
    let first = offsets[0] as usize;
    let items = list
        .values()
        .slice(first, offsets[list.len()] as usize - first);
    let victim = arrow::compute::cast(&args[1], field.data_type())?;
    let victims = arrow::compute::take(&victim, &rows, None)?;
    let kept = arrow::compute::kernels::cmp::distinct(&items, &victims)?;
    let mut new_offsets = Vec::with_capacity(list.len() + 1);
    new_offsets.push(0i32);
    for row in 0..list.len() {
        let (start, end) = (
            offsets[row] as usize - first,
            offsets[row + 1] as usize - first,
        );
        let count = (start..end).filter(|&i| kept.value(i)).count() as i32;
        new_offsets.push(new_offsets[row] + count);
    }
    Ok(Arc::new(ListArray::try_new(
        field.clone(),
        OffsetBuffer::new(new_offsets.into()),
        arrow::compute::filter(&items, &kept)?,
        list.nulls().cloned(),
    )?))
}

fn as_map_type(args: &[DataType]) -> Option<DataType> {
    let [DataType::List(keys), DataType::List(values)] = args else {
        return None;
    };
    if !is_string(keys.data_type()) {
        return None;
    }
    let value = crate::types::SqlType::from_arrow(values.data_type())?;
    Some(
        crate::types::SqlType::Map(Box::new(crate::types::SqlType::String), Box::new(value))
            .to_arrow(),
    )
}

/// `AS_MAP(keys, values)`: a map of each key to the value at its position (NULL past the
/// end of `values`); a repeated key keeps its last value, a NULL key is left out.
fn as_map(args: &[ArrayRef], result: &DataType) -> Result<ArrayRef, DataFusionError> {
    let (keys, values) = (args[0].as_list::<i32>(), args[1].as_list::<i32>());
    let key_texts = strings(keys.values())?;
    let DataType::Map(entries_field, _) = result else {
        return Err(failure("AS_MAP returns a map"));
    };
    let DataType::Struct(entry_fields) = entries_field.data_type() else {
        return Err(failure("AS_MAP returns a map of entries"));
    };
    let value_type = entry_fields[1].data_type().clone();
    let value_items = arrow::compute::cast(values.values(), &value_type)?;
    let mut key_take: Vec<u32> = Vec::new();
    // Positions in `value_items`, `None` for a key past the end of the values.
    let mut value_take: Vec<Option<u32>> = Vec::new();
    let mut offsets = vec![0i32];
    let mut valid = Vec::with_capacity(keys.len());
    for row in 0..keys.len() {
        let present = keys.is_valid(row) && values.is_valid(row);
        valid.push(present);
        if present {
            let first = key_take.len();
            let key_start = keys.value_offsets()[row] as usize;
            let value_start = values.value_offsets()[row] as usize;
            let value_count = values.value_length(row) as usize;
            for i in 0..keys.value_length(row) as usize {
                let key = key_start + i;
                if key_texts.is_null(key) {
                    continue;
                }
                let value = (i < value_count).then_some((value_start + i) as u32);
                let earlier = (first..key_take.len())
                    .find(|&e| key_texts.value(key_take[e] as usize) == key_texts.value(key));
                match earlier {
                    Some(e) => value_take[e] = value,
                    None => {
                        key_take.push(key as u32);
                        value_take.push(value);
                    }
                }
            }
        }
        offsets.push(key_take.len() as i32);
    }
    let entry_keys =
        arrow::compute::take(&key_texts, &arrow::array::UInt32Array::from(key_take), None)?;
    let entry_values = arrow::compute::take(
        &value_items,
        &arrow::array::UInt32Array::from(value_take),
        None,
    )?;
    let entries = StructArray::try_new(entry_fields.clone(), vec![entry_keys, entry_values], None)?;
    Ok(Arc::new(MapArray::try_new(
        entries_field.clone(),
        OffsetBuffer::new(offsets.into()),
        entries,
        Some(valid.into()),
        false,
    )?))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::eval;

    #[test]
    fn slice_takes_positions_from_one_both_included() {
        assert_eq!(eval("slice(make_array(1, 2, 3, 4), 2, 3)"), "[2, 3]");
        assert_eq!(eval("slice(make_array(1, 2, 3), NULL, 2)"), "[1, 2]");
        assert_eq!(eval("slice(make_array(1, 2, 3), 2, NULL)"), "[2, 3]");
        assert_eq!(eval("slice(make_array(1, 2, 3), 0, 2)"), "NULL");
        assert_eq!(eval("slice(make_array(1, 2, 3), 2, 4)"), "NULL");
        assert_eq!(eval("slice(make_array(1, 2, 3), 3, 1)"), "NULL");
        assert_eq!(eval("slice(make_array('a'), 1, 1)"), "[a]");
    }

    #[test]
    fn as_map_pairs_keys_with_values_by_position() {
        assert_eq!(
            eval("as_map(make_array('a', 'b'), make_array(1, 2))"),
            "{a: 1, b: 2}"
        );
        assert_eq!(
            eval("as_map(make_array('a', 'b'), make_array(1))"),
            "{a: 1, b: NULL}"
        );
        assert_eq!(
            eval("as_map(make_array('a', 'a'), make_array(1, 2))"),
            "{a: 2}"
        );
        assert_eq!(
            eval("as_map(make_array('a', NULL), make_array(1, 2))"),
            "{a: 1}"
        );
        assert_eq!(
            eval("as_map(CAST(NULL AS ARRAY<STRING>), make_array(1))"),
            "NULL"
        );
    }
}
