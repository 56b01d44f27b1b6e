//! Key paths for the array functions' key arguments (`sort(Emails[]; sender.name)`).

use serde_json::Value;

/// The value at a dot path: segments name collection keys, numbers index arrays from 1
/// (`items.1.name`), and `name[n]` indexes an array too (`items[1].name`). A key that itself
/// contains dots is found when the whole path is a key of the collection. `None` when any step
/// is missing.
pub fn get_path<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    if let Value::Object(map) = value
        && let Some(found) = map.get(path)
    {
        return Some(found);
    }
    let mut current = value;
    for segment in path.split('.') {
        let (name, indexes) = split_indexes(segment);
        if !name.is_empty() {
            current = step(current, name)?;
        }
        for index in indexes {
            current = nth(current, index)?;
        }
    }
    Some(current)
}

/// `items[1][2]` → (`items`, [1, 2]); a segment whose brackets do not parse is all name.
fn split_indexes(segment: &str) -> (&str, Vec<usize>) {
    let Some(open) = segment.find('[') else {
        return (segment, Vec::new());
    };
    let mut indexes = Vec::new();
    let mut rest = &segment[open..];
    while let Some(inner) = rest.strip_prefix('[') {
        let Some(close) = inner.find(']') else {
            return (segment, Vec::new());
        };
        let Ok(index) = inner[..close].trim().parse::<usize>() else {
            return (segment, Vec::new());
        };
        indexes.push(index);
        rest = &inner[close + 1..];
    }
    if rest.is_empty() {
        (&segment[..open], indexes)
    } else {
        (segment, Vec::new())
    }
}

fn step<'a>(value: &'a Value, name: &str) -> Option<&'a Value> {
    match value {
        Value::Object(map) => map.get(name),
        Value::Array(_) => nth(value, name.parse().ok()?),
        _ => None,
    }
}

/// The `index`-th item (1-based) of an array.
fn nth(value: &Value, index: usize) -> Option<&Value> {
    match value {
        Value::Array(items) => items.get(index.checked_sub(1)?),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn walks_collections_and_arrays() {
        let v = json!({
            "sender": {"name": "Ann", "tags": ["a", "b"]},
            "items": [{"id": 1}, {"id": 2}],
            "a.b": "dotted",
            "": "empty"
        });
        assert_eq!(get_path(&v, "sender.name"), Some(&json!("Ann")));
        assert_eq!(get_path(&v, "sender.tags.2"), Some(&json!("b")));
        assert_eq!(get_path(&v, "sender.tags[1]"), Some(&json!("a")));
        assert_eq!(get_path(&v, "items[2].id"), Some(&json!(2)));
        assert_eq!(get_path(&v, "items.1.id"), Some(&json!(1)));
        assert_eq!(get_path(&v, "a.b"), Some(&json!("dotted")));
        assert_eq!(get_path(&v, ""), Some(&json!("empty")));
        for missing in [
            "sender.age",
            "items.0.id",
            "items[0]",
            "items[3]",
            "items[x]",
            "items[1",
            "sender.name.first",
            "nope",
            "items.99999999999999999999999",
        ] {
            assert_eq!(get_path(&v, missing), None, "{missing}");
        }
        assert_eq!(get_path(&json!(5), "a"), None);
        assert_eq!(get_path(&json!([[1, 2]]), "[1][2]"), Some(&json!(2)));
    }
}
