//! Which files get their bytes compared: all, a seeded sample, a rotating slice.
//!
//! Selection is a keyed hash of the relative path, so it depends only on the seed
//! and the path, not on walk order or on what else is in the tree: the same seed
//! picks the same files, and a file keeps its rotation slice as the tree grows.

use std::collections::BinaryHeap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The content-check policy of a drill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContentSelection {
    /// Every file's bytes.
    All,
    /// `files` files chosen by `seed` (bottom-k of the keyed path hash).
    Sample { files: u64, seed: u64 },
    /// Slice `slice` of `over`: `over` consecutive drills cover every file.
    Rotate { over: u64, slice: u64, seed: u64 },
    /// Inventory only.
    None,
}

impl ContentSelection {
    pub fn mode_name(&self) -> &'static str {
        match self {
            ContentSelection::All => "all",
            ContentSelection::Sample { .. } => "sample",
            ContentSelection::Rotate { .. } => "rotate",
            ContentSelection::None => "none",
        }
    }

    pub fn seed(&self) -> Option<u64> {
        match self {
            ContentSelection::Sample { seed, .. } | ContentSelection::Rotate { seed, .. } => {
                Some(*seed)
            }
            _ => None,
        }
    }
}

/// A 64-bit keyed hash of a path.
pub fn path_key(seed: u64, rel: &Path) -> u64 {
    let mut h = Sha256::new();
    h.update(seed.to_le_bytes());
    h.update(rel.as_os_str().as_encoded_bytes());
    let d = h.finalize();
    u64::from_le_bytes(d[..8].try_into().expect("8 bytes"))
}

/// Keeps the `k` paths with the smallest keys seen so far.
pub struct BottomK {
    k: usize,
    seed: u64,
    /// (key, path, expected SHA-256 when known, size)
    heap: BinaryHeap<(u64, PathBuf, Option<String>, u64)>,
}

impl BottomK {
    pub fn new(k: u64, seed: u64) -> BottomK {
        BottomK {
            k: usize::try_from(k).unwrap_or(usize::MAX),
            seed,
            heap: BinaryHeap::new(),
        }
    }

    pub fn offer(&mut self, rel: &Path, expected: Option<&str>, size: u64) {
        if self.k == 0 {
            return;
        }
        let key = path_key(self.seed, rel);
        let item = || (key, rel.to_path_buf(), expected.map(String::from), size);
        if self.heap.len() < self.k {
            self.heap.push(item());
        } else if let Some(top) = self.heap.peek()
            && key < top.0
        {
            self.heap.pop();
            self.heap.push(item());
        }
    }

    /// The chosen paths (with their expected hashes and sizes) in tree order.
    pub fn into_sorted(self) -> Vec<(PathBuf, Option<String>, u64)> {
        let mut v: Vec<(PathBuf, Option<String>, u64)> = self
            .heap
            .into_iter()
            .map(|(_, p, h, n)| (p, h, n))
            .collect();
        v.sort();
        v
    }
}

/// True when `rel` belongs to rotation slice `slice` of `over`.
pub fn in_slice(seed: u64, over: u64, slice: u64, rel: &Path) -> bool {
    over <= 1 || path_key(seed, rel) % over == slice % over
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn paths(n: usize) -> Vec<PathBuf> {
        (0..n)
            .map(|i| PathBuf::from(format!("d{}/f{i}", i % 7)))
            .collect()
    }

    #[test]
    fn same_seed_same_sample_any_order() {
        let ps = paths(500);
        let mut a = BottomK::new(20, 42);
        ps.iter().for_each(|p| a.offer(p, None, 0));
        let mut b = BottomK::new(20, 42);
        ps.iter().rev().for_each(|p| b.offer(p, None, 0));
        let (a, b) = (a.into_sorted(), b.into_sorted());
        assert_eq!(a.len(), 20);
        assert_eq!(a, b);
        let mut c = BottomK::new(20, 43);
        ps.iter().for_each(|p| c.offer(p, None, 0));
        assert_ne!(a, c.into_sorted(), "another seed picks another sample");
    }

    proptest! {
        #[test]
        fn rotation_slices_are_disjoint_and_cover(n in 1usize..300, over in 1u64..20, seed: u64) {
            for p in paths(n) {
                let hits = (0..over).filter(|s| in_slice(seed, over, *s, &p)).count();
                prop_assert_eq!(hits, 1);
            }
        }
    }
}
