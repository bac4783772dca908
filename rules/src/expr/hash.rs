//! `jhash KEY mod M [seed S] [offset O]` and `symhash mod M [offset O]` (nft_hash): a bucket number
//! from the packet, as load balancers use it (`dnat to jhash ip saddr mod 2 map { 0 : a, 1 : b }`).
//!
//! `jhash` is the kernel's `jhash()` (Bob Jenkins' lookup3 with `JHASH_INITVAL`) over the key as the
//! kernel's registers hold it — every part in whole 32-bit words, zero-padded — then
//! `reciprocal_scale` into `[0, M)`: with a seed the bucket of every packet is the kernel's.
//! `symhash` stands for `__skb_get_hash_symmetric`, whose key the kernel seeds at random at boot: the
//! same for both directions of a flow, different from the kernel's numbers.

const JHASH_INITVAL: u32 = 0xdead_beef;

#[inline]
fn mix(a: &mut u32, b: &mut u32, c: &mut u32) {
    *a = a.wrapping_sub(*c);
    *a ^= c.rotate_left(4);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a);
    *b ^= a.rotate_left(6);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b);
    *c ^= b.rotate_left(8);
    *b = b.wrapping_add(*a);
    *a = a.wrapping_sub(*c);
    *a ^= c.rotate_left(16);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a);
    *b ^= a.rotate_left(19);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b);
    *c ^= b.rotate_left(4);
    *b = b.wrapping_add(*a);
}

#[inline]
fn last(a: &mut u32, b: &mut u32, c: &mut u32) {
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(14));
    *a ^= *c;
    *a = a.wrapping_sub(c.rotate_left(11));
    *b ^= *a;
    *b = b.wrapping_sub(a.rotate_left(25));
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(16));
    *a ^= *c;
    *a = a.wrapping_sub(c.rotate_left(4));
    *b ^= *a;
    *b = b.wrapping_sub(a.rotate_left(14));
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(24));
}

/// The kernel's `jhash(key, length, initval)` on a little-endian machine.
pub fn jhash(key: &[u8], initval: u32) -> u32 {
    let mut a = JHASH_INITVAL
        .wrapping_add(key.len() as u32)
        .wrapping_add(initval);
    let (mut b, mut c) = (a, a);
    let mut k = key;
    let word = |s: &[u8]| u32::from_le_bytes([s[0], s[1], s[2], s[3]]);
    while k.len() > 12 {
        a = a.wrapping_add(word(&k[0..]));
        b = b.wrapping_add(word(&k[4..]));
        c = c.wrapping_add(word(&k[8..]));
        mix(&mut a, &mut b, &mut c);
        k = &k[12..];
    }
    if k.is_empty() {
        return c;
    }
    // the tail: byte i goes to word i / 4 at bits 8 * (i % 4), as the kernel's fall-through switch
    for (i, &x) in k.iter().enumerate() {
        let v = (x as u32) << (8 * (i % 4));
        match i / 4 {
            0 => a = a.wrapping_add(v),
            1 => b = b.wrapping_add(v),
            _ => c = c.wrapping_add(v),
        }
    }
    last(&mut a, &mut b, &mut c);
    c
}

/// `reciprocal_scale(h, m) + offset`: the bucket.
pub fn bucket(h: u32, modulus: u32, offset: u32) -> u32 {
    (((h as u64) * (modulus as u64)) >> 32) as u32 + offset
}

/// A symmetric flow hash: the same for `a → b` and `b → a` (addresses and ports swapped together).
pub fn symmetric(src: &[u8], dst: &[u8], proto: u8, sport: u16, dport: u16, seed: u32) -> u32 {
    let mut key = [0u8; 40];
    let (lo, hi, plo, phi) = if (src, sport) <= (dst, dport) {
        (src, dst, sport, dport)
    } else {
        (dst, src, dport, sport)
    };
    let n = lo.len().min(16);
    key[..n].copy_from_slice(&lo[..n]);
    key[16..16 + n].copy_from_slice(&hi[..n]);
    key[32..34].copy_from_slice(&plo.to_be_bytes());
    key[34..36].copy_from_slice(&phi.to_be_bytes());
    key[36] = proto;
    jhash(&key, seed)
}

/// A seed for hashes the ruleset does not seed (`jhash` without `seed`, `symhash`): random, as the
/// kernel's `get_random_bytes`.
pub fn random_seed() -> u32 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(0u8) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jhash_matches_the_kernel() {
        // an empty key leaves the initial state (the kernel's `case 0`)
        assert_eq!(jhash(&[], 0), 0xdead_beef);
        // whole blocks and a tail through each branch, against a straight transcription of lookup3
        for len in 0..=40usize {
            let key: Vec<u8> = (0..len as u8).map(|i| i.wrapping_mul(37) ^ 0x5a).collect();
            assert_eq!(jhash(&key, 0x1234), reference(&key, 0x1234), "len {len}");
        }
    }

    /// lookup3's hashlittle() for a little-endian machine, written from its reference text (a
    /// separate rendering of the same algorithm: one `switch` arm per tail length).
    fn reference(k: &[u8], initval: u32) -> u32 {
        let mut a = 0xdead_beefu32
            .wrapping_add(k.len() as u32)
            .wrapping_add(initval);
        let mut b = a;
        let mut c = a;
        let mut k = k;
        while k.len() > 12 {
            a = a.wrapping_add(u32::from_le_bytes(k[0..4].try_into().unwrap()));
            b = b.wrapping_add(u32::from_le_bytes(k[4..8].try_into().unwrap()));
            c = c.wrapping_add(u32::from_le_bytes(k[8..12].try_into().unwrap()));
            mix(&mut a, &mut b, &mut c);
            k = &k[12..];
        }
        let g = |i: usize| k[i] as u32;
        let n = k.len();
        if n == 0 {
            return c;
        }
        if n >= 12 {
            c = c.wrapping_add(g(11) << 24);
        }
        if n >= 11 {
            c = c.wrapping_add(g(10) << 16);
        }
        if n >= 10 {
            c = c.wrapping_add(g(9) << 8);
        }
        if n >= 9 {
            c = c.wrapping_add(g(8));
        }
        if n >= 8 {
            b = b.wrapping_add(g(7) << 24);
        }
        if n >= 7 {
            b = b.wrapping_add(g(6) << 16);
        }
        if n >= 6 {
            b = b.wrapping_add(g(5) << 8);
        }
        if n >= 5 {
            b = b.wrapping_add(g(4));
        }
        if n >= 4 {
            a = a.wrapping_add(g(3) << 24);
        }
        if n >= 3 {
            a = a.wrapping_add(g(2) << 16);
        }
        if n >= 2 {
            a = a.wrapping_add(g(1) << 8);
        }
        a = a.wrapping_add(g(0));
        last(&mut a, &mut b, &mut c);
        c
    }

    #[test]
    fn symmetric_in_both_directions() {
        let a = [192, 0, 2, 2];
        let b = [198, 51, 100, 2];
        assert_eq!(
            symmetric(&a, &b, 6, 40000, 80, 7),
            symmetric(&b, &a, 6, 80, 40000, 7)
        );
        assert_ne!(
            symmetric(&a, &b, 6, 40000, 80, 7),
            symmetric(&a, &b, 6, 40001, 80, 7)
        );
        assert_eq!(bucket(u32::MAX, 2, 100), 101);
        assert_eq!(bucket(0, 2, 0), 0);
    }
}
