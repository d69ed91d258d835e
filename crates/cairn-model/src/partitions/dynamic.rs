//! Runtime keys of dynamic partitions definitions.

use std::collections::HashMap;

use super::PartitionSet;

/// The keys of every dynamic definition, as the store holds them: each key's index is the
/// order it was first added, and a removed key leaves a hole, so indices never move.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DynamicKeys {
    defs: HashMap<String, KeyList>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct KeyList {
    keys: Vec<String>,
    removed: PartitionSet,
    index: HashMap<String, u32>,
}

impl DynamicKeys {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a key (a no-op when present; re-adding a removed key revives its index).
    /// Returns its index.
    pub fn add(&mut self, def: &str, key: &str) -> u32 {
        let list = self.defs.entry(def.to_owned()).or_default();
        if let Some(&i) = list.index.get(key) {
            list.removed.remove(i);
            return i;
        }
        let i = list.keys.len() as u32;
        list.keys.push(key.to_owned());
        list.index.insert(key.to_owned(), i);
        i
    }

    pub fn remove(&mut self, def: &str, key: &str) -> bool {
        let Some(list) = self.defs.get_mut(def) else {
            return false;
        };
        match list.index.get(key) {
            Some(&i) if !list.removed.contains(i) => {
                list.removed.insert(i);
                true
            }
            _ => false,
        }
    }

    /// One past the highest index ever given out.
    pub fn len(&self, def: &str) -> u32 {
        self.defs.get(def).map_or(0, |l| l.keys.len() as u32)
    }

    pub fn is_empty(&self, def: &str) -> bool {
        self.len(def) == 0
    }

    /// Indices of keys that are currently present.
    pub fn live(&self, def: &str) -> PartitionSet {
        self.defs.get(def).map_or_else(PartitionSet::new, |l| {
            PartitionSet::from_range(0..l.keys.len() as u32).difference(&l.removed)
        })
    }

    pub fn key_of(&self, def: &str, index: u32) -> Option<&str> {
        let list = self.defs.get(def)?;
        (!list.removed.contains(index))
            .then(|| list.keys.get(index as usize).map(String::as_str))
            .flatten()
    }

    pub fn index_of(&self, def: &str, key: &str) -> Option<u32> {
        let list = self.defs.get(def)?;
        list.index
            .get(key)
            .copied()
            .filter(|&i| !list.removed.contains(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_survive_removal() {
        let mut keys = DynamicKeys::new();
        assert_eq!(keys.add("enc", "E1"), 0);
        assert_eq!(keys.add("enc", "E2"), 1);
        assert!(keys.remove("enc", "E1"));
        assert_eq!(keys.index_of("enc", "E2"), Some(1));
        assert_eq!(keys.key_of("enc", 0), None);
        assert_eq!(keys.live("enc"), PartitionSet::from_range(1..2));
        assert_eq!(keys.add("enc", "E1"), 0);
        assert_eq!(keys.live("enc"), PartitionSet::from_range(0..2));
    }
}
