//! Decoded format columns into Arrow arrays.
//!
//! Integer columns move into Arrow buffers without a copy (a `Vec<u64>` of
//! sequence numbers becomes the `Int64` array's buffer as is); ids become the
//! keys of dictionary arrays whose values are shared per trace; value texts
//! are gathered into plain strings, because a chunk's value dictionary is
//! large and private to it, and dragging it along every filtered batch would
//! cost more than the copy.
//!
//! Ids come from an untrusted file: a key outside its dictionary becomes a
//! null, never an invalid array.

use std::sync::{Arc, LazyLock};

use arrow::array::{
    Array, ArrayRef, DictionaryArray, Int32Array, Int64Array, StringArray, StringBuilder,
};
use arrow::buffer::{Buffer, NullBuffer, ScalarBuffer};
use arrow::datatypes::{ArrowDictionaryKeyType, DataType, Int8Type, Int32Type};
use chronolog_format::{EventKind, Values, VarChange};

/// Dictionary of 32-bit keys over strings: ids of names, files, functions.
pub fn names_type() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

/// Dictionary of 8-bit keys over a small fixed vocabulary (`kind`, `change`).
pub fn vocabulary_type() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int8), Box::new(DataType::Utf8))
}

/// `u64` values as `Int64`, reusing the vector's memory. Values past
/// `i64::MAX` would read negative; sequence numbers, times and ids stay far
/// below it.
pub fn int64(values: Vec<u64>) -> ArrayRef {
    let len = values.len();
    Arc::new(Int64Array::new(
        ScalarBuffer::new(Buffer::from_vec(values), 0, len),
        None,
    ))
}

/// `u64` values as `Int64`, 0 (the format's "none") as null.
pub fn nonzero_int64(values: &[u64]) -> ArrayRef {
    Arc::new(
        values
            .iter()
            .map(|&v| (v != 0).then_some(v as i64))
            .collect::<Int64Array>(),
    )
}

/// `u32` values as `Int32`, reusing the vector's memory.
pub fn int32(values: Vec<u32>) -> ArrayRef {
    let len = values.len();
    Arc::new(Int32Array::new(
        ScalarBuffer::new(Buffer::from_vec(values), 0, len),
        None,
    ))
}

/// `values[i]` for each index (indexes come from a validated batch).
pub fn gather<T: Copy + Default>(values: &[T], indexes: &[u32]) -> Vec<T> {
    indexes
        .iter()
        .map(|&i| values.get(i as usize).copied().unwrap_or_default())
        .collect()
}

/// A dictionary column with `keys` into `values`; out-of-range keys are null.
fn dictionary<K: ArrowDictionaryKeyType>(
    keys: ScalarBuffer<K::Native>,
    in_range: impl Fn(K::Native) -> bool,
    values: &ArrayRef,
) -> ArrayRef {
    let nulls = if keys.iter().all(|&k| in_range(k)) {
        None
    } else {
        Some(NullBuffer::from_iter(keys.iter().map(|&k| in_range(k))))
    };
    let keys = arrow::array::PrimitiveArray::<K>::new(keys, nulls);
    // Keys are in range or null, so this cannot fail; an empty array keeps
    // the schema if it ever did.
    match DictionaryArray::<K>::try_new(keys, Arc::clone(values)) {
        Ok(array) => Arc::new(array),
        Err(_) => arrow::array::new_null_array(
            &DataType::Dictionary(Box::new(K::DATA_TYPE), Box::new(values.data_type().clone())),
            0,
        ),
    }
}

/// Ids (string, code or thread ids) as keys into `values`.
pub fn ids(ids: Vec<u32>, values: &ArrayRef) -> ArrayRef {
    let len = ids.len();
    let limit = values.len();
    let keys = ScalarBuffer::<i32>::new(Buffer::from_vec(ids), 0, len);
    dictionary::<Int32Type>(keys, |k| k >= 0 && (k as usize) < limit, values)
}

/// "Id + 1" fields (0 = none) as keys into `values`.
pub fn optional_ids(ids_plus_one: &[u32], values: &ArrayRef) -> ArrayRef {
    let keys: Vec<u32> = ids_plus_one.iter().map(|&id| id.wrapping_sub(1)).collect();
    ids(keys, values)
}

/// The same value on every row, as a dictionary of one entry.
pub fn constant(len: usize, value: &ArrayRef) -> ArrayRef {
    ids(vec![0; len], value)
}

static KIND_NAMES: LazyLock<ArrayRef> = LazyLock::new(|| {
    Arc::new(StringArray::from_iter_values(
        EventKind::ALL.iter().map(|k| k.name()),
    ))
});

static CHANGE_NAMES: LazyLock<ArrayRef> = LazyLock::new(|| {
    Arc::new(StringArray::from_iter_values(
        VarChange::ALL.iter().map(|c| c.name()),
    ))
});

fn vocabulary(codes: Vec<u8>, names: &ArrayRef) -> ArrayRef {
    let len = codes.len();
    let limit = names.len();
    let keys = ScalarBuffer::<i8>::new(Buffer::from_vec(codes), 0, len);
    dictionary::<Int8Type>(keys, |k| k >= 0 && (k as usize) < limit, names)
}

/// Event kind codes as their names (`call`, `line`, ...); unknown kinds null.
pub fn kinds(codes: Vec<u8>) -> ArrayRef {
    vocabulary(codes, &KIND_NAMES)
}

/// Variable change codes as their names (`start`, `new`, ...).
pub fn changes(codes: Vec<u8>) -> ArrayRef {
    vocabulary(codes, &CHANGE_NAMES)
}

/// The texts of value refs (0 or an unknown ref = null).
pub fn texts(values: &Values, refs: impl ExactSizeIterator<Item = u32>) -> ArrayRef {
    let mut builder = StringBuilder::with_capacity(refs.len(), 16 * refs.len());
    for value_ref in refs {
        builder.append_option(values.get(value_ref));
    }
    Arc::new(builder.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int8Array;

    fn kind_codes(array: &ArrayRef) -> Option<Vec<Option<String>>> {
        let dict = array.as_any().downcast_ref::<DictionaryArray<Int8Type>>()?;
        let names = dict.values().as_any().downcast_ref::<StringArray>()?;
        let keys: &Int8Array = dict.keys();
        Some(
            keys.iter()
                .map(|k| k.map(|k| names.value(k as usize).to_string()))
                .collect(),
        )
    }

    #[test]
    fn out_of_range_ids_become_nulls() {
        let values: ArrayRef = Arc::new(StringArray::from(vec!["a", "b"]));
        let array = ids(vec![1, 7, 0], &values);
        assert_eq!(array.len(), 3);
        assert!(array.is_valid(0) && array.is_null(1) && array.is_valid(2));
        let none = optional_ids(&[0, 2], &values);
        assert!(none.is_null(0) && none.is_valid(1));
    }

    #[test]
    fn unknown_kinds_become_nulls() {
        let names = kind_codes(&kinds(vec![0, 1, 200])).expect("dictionary");
        assert_eq!(
            names,
            vec![Some("call".to_string()), Some("line".to_string()), None]
        );
    }

    #[test]
    fn integers_keep_their_values() {
        let a = int64(vec![1, 2, 3]);
        let a = a.as_any().downcast_ref::<Int64Array>().expect("int64");
        assert_eq!(a.values().as_ref(), &[1, 2, 3]);
    }
}
