//! Code versions: what a materialization was built with.

use sha2::{Digest, Sha256};

/// sha256 (hex) of the canonical definition (JSON with sorted keys) followed by each code
/// file's length and contents. The lengths keep `["ab", "c"]` and `["a", "bc"]` apart.
pub fn derive_code_version(
    canonical_definition: &serde_json::Value,
    code_files: &[Vec<u8>],
) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"cairn-code-version-1\n");
    let mut text = String::new();
    write_sorted(canonical_definition, &mut text);
    hasher.update(text.as_bytes());
    for contents in code_files {
        hasher.update((contents.len() as u64).to_le_bytes());
        hasher.update(contents);
    }
    hex::encode(hasher.finalize())
}

/// JSON with object keys sorted, whatever order the map keeps them in (serde_json's
/// `preserve_order` may be switched on by any crate in the build).
fn write_sorted(value: &serde_json::Value, out: &mut String) {
    match value {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::Value::String(k.clone()).to_string());
                out.push(':');
                write_sorted(v, out);
            }
            out.push('}');
        }
        serde_json::Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_sorted(v, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn changes_with_definition_and_code_but_not_key_order() {
        let a = derive_code_version(
            &json!({"key": "a", "compute": {"command": ["x"]}}),
            &[b"print(1)".to_vec()],
        );
        let same = derive_code_version(
            &json!({"compute": {"command": ["x"]}, "key": "a"}),
            &[b"print(1)".to_vec()],
        );
        assert_eq!(a, same);
        assert_ne!(
            a,
            derive_code_version(
                &json!({"key": "a", "compute": {"command": ["y"]}}),
                &[b"print(1)".to_vec()]
            )
        );
        assert_ne!(
            a,
            derive_code_version(
                &json!({"key": "a", "compute": {"command": ["x"]}}),
                &[b"print(2)".to_vec()]
            )
        );
        let split1 = derive_code_version(&json!({}), &[b"ab".to_vec(), b"c".to_vec()]);
        let split2 = derive_code_version(&json!({}), &[b"a".to_vec(), b"bc".to_vec()]);
        assert_ne!(split1, split2);
        assert_eq!(a.len(), 64);
    }
}
