//! `PartitionSet`: a set of partition indices as sorted, disjoint, non-adjacent ranges.
//!
//! Partitions are mostly contiguous (a year of days, a backfill range), so a few ranges
//! describe millions of partitions; sets are never lists of key strings.

use std::ops::Range;

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct PartitionSet {
    /// Sorted, disjoint, non-empty, and never touching (`a.end < b.start`).
    ranges: Vec<Range<u32>>,
}

impl PartitionSet {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn from_range(range: Range<u32>) -> Self {
        if range.is_empty() {
            Self::new()
        } else {
            Self {
                ranges: vec![range],
            }
        }
    }

    pub fn single(index: u32) -> Self {
        Self::from_range(index..index + 1)
    }

    /// Builds a set from ranges in any order, possibly overlapping.
    pub fn from_ranges(ranges: impl IntoIterator<Item = Range<u32>>) -> Self {
        let mut all: Vec<Range<u32>> = ranges.into_iter().filter(|r| !r.is_empty()).collect();
        all.sort_by_key(|r| r.start);
        let mut out: Vec<Range<u32>> = Vec::with_capacity(all.len());
        for r in all {
            match out.last_mut() {
                Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
                _ => out.push(r),
            }
        }
        Self { ranges: out }
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The number of partitions in the set.
    pub fn len(&self) -> u64 {
        self.ranges.iter().map(|r| u64::from(r.end - r.start)).sum()
    }

    pub fn ranges(&self) -> &[Range<u32>] {
        &self.ranges
    }

    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.ranges.iter().flat_map(|r| r.clone())
    }

    pub fn first(&self) -> Option<u32> {
        self.ranges.first().map(|r| r.start)
    }

    pub fn last(&self) -> Option<u32> {
        self.ranges.last().map(|r| r.end - 1)
    }

    pub fn contains(&self, index: u32) -> bool {
        let i = self.ranges.partition_point(|r| r.end <= index);
        self.ranges.get(i).is_some_and(|r| r.start <= index)
    }

    /// Whether any index of `range` is in the set, in O(log n).
    pub fn intersects_range(&self, range: &Range<u32>) -> bool {
        if range.is_empty() {
            return false;
        }
        let i = self.ranges.partition_point(|r| r.end <= range.start);
        self.ranges.get(i).is_some_and(|r| r.start < range.end)
    }

    pub fn insert(&mut self, index: u32) {
        self.insert_range(index..index + 1);
    }

    pub fn insert_range(&mut self, range: Range<u32>) {
        if range.is_empty() {
            return;
        }
        // Ranges that overlap or touch `range` are merged into it.
        let lo = self.ranges.partition_point(|r| r.end < range.start);
        let hi = self.ranges.partition_point(|r| r.start <= range.end);
        let merged = if lo < hi {
            self.ranges[lo].start.min(range.start)..self.ranges[hi - 1].end.max(range.end)
        } else {
            range
        };
        self.ranges.splice(lo..hi, std::iter::once(merged));
    }

    pub fn remove_range(&mut self, range: Range<u32>) {
        if range.is_empty() {
            return;
        }
        *self = self.difference(&Self::from_range(range));
    }

    pub fn remove(&mut self, index: u32) {
        self.remove_range(index..index + 1);
    }

    pub fn union(&self, other: &Self) -> Self {
        Self::from_ranges(self.ranges.iter().chain(&other.ranges).cloned())
    }

    pub fn intersection(&self, other: &Self) -> Self {
        let (mut i, mut j) = (0, 0);
        let mut out = Vec::new();
        while i < self.ranges.len() && j < other.ranges.len() {
            let (a, b) = (&self.ranges[i], &other.ranges[j]);
            let start = a.start.max(b.start);
            let end = a.end.min(b.end);
            if start < end {
                out.push(start..end);
            }
            if a.end < b.end { i += 1 } else { j += 1 }
        }
        Self { ranges: out }
    }

    pub fn difference(&self, other: &Self) -> Self {
        let mut out = Vec::with_capacity(self.ranges.len());
        let mut j = 0;
        for r in &self.ranges {
            let mut start = r.start;
            while j < other.ranges.len() && other.ranges[j].end <= start {
                j += 1;
            }
            let mut k = j;
            while k < other.ranges.len() && other.ranges[k].start < r.end {
                let cut = &other.ranges[k];
                if cut.start > start {
                    out.push(start..cut.start);
                }
                start = start.max(cut.end);
                k += 1;
            }
            if start < r.end {
                out.push(start..r.end);
            }
        }
        Self { ranges: out }
    }

    /// Keeps only indices below `len` (partitions that exist).
    pub fn clip(&self, len: u32) -> Self {
        self.intersection(&Self::from_range(0..len))
    }
}

impl FromIterator<u32> for PartitionSet {
    fn from_iter<I: IntoIterator<Item = u32>>(iter: I) -> Self {
        Self::from_ranges(iter.into_iter().map(|i| i..i + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_touching_ranges() {
        let mut s = PartitionSet::from_ranges([5..7, 0..2, 2..3]);
        assert_eq!(s.ranges(), &[0..3, 5..7]);
        s.insert(4);
        assert_eq!(s.ranges(), &[0..3, 4..7]);
        s.insert(3);
        assert_eq!(s, PartitionSet::from_range(0..7));
        s.remove(3);
        assert_eq!(s.ranges(), &[0..3, 4..7]);
        assert_eq!(s.len(), 6);
        assert!(s.contains(6) && !s.contains(3) && !s.contains(7));
    }
}
