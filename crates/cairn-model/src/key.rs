//! Asset keys: `group/name` style paths of lowercase `[a-z0-9_]` segments.

use std::fmt;

/// A validated asset key such as `staging/lab_results`.
///
/// Validation happens once, at construction, so everything downstream can rely on the
/// shape (non-empty segments of `[a-z0-9_]`, joined by `/`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AssetKey(String);

/// Why a string is not an asset key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("asset key is empty")]
    Empty,
    #[error("asset key {key:?} has an empty segment (keys look like \"group/name\")")]
    EmptySegment { key: String },
    #[error(
        "asset key {key:?} has the character {ch:?}: segments are lowercase letters, digits and '_'"
    )]
    BadChar { key: String, ch: char },
}

impl AssetKey {
    pub fn parse(raw: &str) -> Result<Self, KeyError> {
        if raw.is_empty() {
            return Err(KeyError::Empty);
        }
        for segment in raw.split('/') {
            if segment.is_empty() {
                return Err(KeyError::EmptySegment {
                    key: raw.to_owned(),
                });
            }
            if let Some(ch) = segment
                .chars()
                .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'))
            {
                return Err(KeyError::BadChar {
                    key: raw.to_owned(),
                    ch,
                });
            }
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// The default group: the first segment of a multi-segment key, else `default`.
    pub fn default_group(&self) -> &str {
        match self.0.split_once('/') {
            Some((group, _)) => group,
            None => "default",
        }
    }
}

impl fmt::Display for AssetKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for AssetKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_group_paths() {
        let key = AssetKey::parse("staging/lab_results_2").unwrap();
        assert_eq!(key.default_group(), "staging");
        assert_eq!(
            AssetKey::parse("orphans").unwrap().default_group(),
            "default"
        );
    }

    #[test]
    fn rejects_malformed_keys() {
        assert_eq!(AssetKey::parse(""), Err(KeyError::Empty));
        assert!(matches!(
            AssetKey::parse("a//b"),
            Err(KeyError::EmptySegment { .. })
        ));
        assert!(matches!(
            AssetKey::parse("a/b/"),
            Err(KeyError::EmptySegment { .. })
        ));
        assert_eq!(
            AssetKey::parse("Staging/x"),
            Err(KeyError::BadChar {
                key: "Staging/x".into(),
                ch: 'S'
            })
        );
        assert!(matches!(
            AssetKey::parse("a-b"),
            Err(KeyError::BadChar { ch: '-', .. })
        ));
    }
}
