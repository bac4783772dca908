//! The conntrack index: tuple hash → `entry << 1 | direction`, in cache-line buckets.
//!
//! Each 64-byte bucket holds 10 slots (a 16-bit tag from the hash and the 32-bit value) and a count of
//! the keys that probed past it because it was full (F14's scheme): a lookup reads the home bucket and
//! only goes on while that count says someone overflowed. So a lookup is usually one cache line, which
//! the packet path can prefetch for a whole batch before it looks anything up ([`Index::prefetch`]), and
//! a key costs 6.4 bytes at full load (hashbrown: 5 bytes at a load it keeps at most 7/8, with no way to
//! prefetch its groups).

const SLOTS: usize = 10;

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Bucket {
    /// 0: free slot; else the key's tag (never 0).
    tags: [u16; SLOTS],
    /// Keys stored further on whose home is this bucket or one before it that passed through it.
    overflow: u16,
    _pad: u16,
    vals: [u32; SLOTS],
}

const EMPTY: Bucket = Bucket {
    tags: [0; SLOTS],
    overflow: 0,
    _pad: 0,
    vals: [0; SLOTS],
};

pub(super) struct Index {
    buckets: Vec<Bucket>,
    mask: usize,
    len: usize,
}

#[inline]
fn tag(h: u64) -> u16 {
    ((h >> 48) as u16) | 1
}

impl Index {
    /// An index for `keys` keys without growing (buckets at most 80% full on average).
    pub(super) fn with_capacity(keys: usize) -> Index {
        let n = (keys.div_ceil(8)).next_power_of_two().max(2);
        Index {
            buckets: vec![EMPTY; n],
            mask: n - 1,
            len: 0,
        }
    }

    #[inline]
    fn home(&self, h: u64) -> usize {
        h as usize & self.mask
    }

    /// Brings the home bucket of hash `h` toward the cache.
    #[inline(always)]
    pub(super) fn prefetch(&self, h: u64) {
        let b = &self.buckets[self.home(h)];
        prefetch(b as *const Bucket as *const u8);
    }

    /// The value stored under `h` for which `eq` holds.
    #[inline]
    pub(super) fn find(&self, h: u64, mut eq: impl FnMut(u32) -> bool) -> Option<u32> {
        let t = tag(h);
        let mut i = self.home(h);
        loop {
            let b = &self.buckets[i];
            for s in 0..SLOTS {
                if b.tags[s] == t && eq(b.vals[s]) {
                    return Some(b.vals[s]);
                }
            }
            if b.overflow == 0 {
                return None;
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Stores `v` under `h` (the caller knows it is not there). `rehash` gives the hash of a stored
    /// value, for growing.
    pub(super) fn insert(&mut self, h: u64, v: u32, rehash: impl Fn(u32) -> u64) {
        if (self.len + 1) * 10 > self.buckets.len() * SLOTS * 9 {
            self.grow(&rehash);
        }
        self.put(h, v);
    }

    fn put(&mut self, h: u64, v: u32) {
        let t = tag(h);
        let mut i = self.home(h);
        loop {
            let b = &mut self.buckets[i];
            if let Some(s) = b.tags.iter().position(|&x| x == 0) {
                b.tags[s] = t;
                b.vals[s] = v;
                self.len += 1;
                return;
            }
            b.overflow = b.overflow.saturating_add(1);
            i = (i + 1) & self.mask;
        }
    }

    /// Removes value `v` stored under `h`; false if it is not there.
    pub(super) fn remove(&mut self, h: u64, v: u32) -> bool {
        let t = tag(h);
        let home = self.home(h);
        let mut i = home;
        loop {
            let b = &self.buckets[i];
            if let Some(s) = (0..SLOTS).find(|&s| b.tags[s] == t && b.vals[s] == v) {
                self.buckets[i].tags[s] = 0;
                // the buckets it passed through on the way no longer overflow because of it
                let mut j = home;
                while j != i {
                    let o = &mut self.buckets[j].overflow;
                    // a saturated count stays (it only makes lookups go one bucket further)
                    if *o != u16::MAX {
                        *o -= 1;
                    }
                    j = (j + 1) & self.mask;
                }
                self.len -= 1;
                return true;
            }
            if b.overflow == 0 {
                return false;
            }
            i = (i + 1) & self.mask;
        }
    }

    fn grow(&mut self, rehash: &dyn Fn(u32) -> u64) {
        let old = std::mem::replace(&mut self.buckets, vec![EMPTY; 2 * (self.mask + 1)]);
        self.mask = self.buckets.len() - 1;
        self.len = 0;
        for b in &old {
            for s in 0..SLOTS {
                if b.tags[s] != 0 {
                    let v = b.vals[s];
                    self.put(rehash(v), v);
                }
            }
        }
    }

    pub(super) fn clear(&mut self) {
        self.buckets.fill(EMPTY);
        self.len = 0;
    }

    pub(super) fn bytes(&self) -> usize {
        self.buckets.len() * std::mem::size_of::<Bucket>()
    }
}

#[inline(always)]
pub(super) fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetching is a hint; it never faults, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch(p as *const i8, std::arch::x86_64::_MM_HINT_T0);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(x: u32) -> u64 {
        (x as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    #[test]
    fn insert_find_remove_with_overflow_and_growth() {
        let mut ix = Index::with_capacity(16);
        // Everything in one home bucket (same low bits) forces overflow chains.
        let same = |x: u32| (x as u64) << 40;
        for x in 0..40u32 {
            ix.insert(same(x), x, same);
        }
        for x in 0..40u32 {
            assert_eq!(ix.find(same(x), |v| v == x), Some(x));
        }
        assert_eq!(ix.find(same(99), |v| v == 99), None);
        for x in (0..40u32).step_by(2) {
            assert!(ix.remove(same(x), x));
        }
        assert!(!ix.remove(same(0), 0));
        for x in 0..40u32 {
            assert_eq!(ix.find(same(x), |v| v == x).is_some(), x % 2 == 1);
        }
        // Growth keeps every key.
        let mut ix = Index::with_capacity(8);
        for x in 0..10_000u32 {
            ix.insert(h(x), x, h);
        }
        assert!((0..10_000u32).all(|x| ix.find(h(x), |v| v == x) == Some(x)));
        for x in 0..10_000u32 {
            assert!(ix.remove(h(x), x));
        }
        assert!(ix
            .buckets
            .iter()
            .all(|b| b.overflow == 0 && b.tags == [0; SLOTS]));
    }
}
