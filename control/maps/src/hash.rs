//! Ceph's object-name hash (`ceph_str_hash_rjenkins`, Bob Jenkins' lookup2
//! over the name bytes) and `ceph_stable_mod`.

/// Jenkins' 96-bit mix, shared by the string hash and CRUSH's hash.
#[inline(always)]
pub(crate) fn jenkins_mix(a: &mut u32, b: &mut u32, c: &mut u32) {
    *a = a.wrapping_sub(*b).wrapping_sub(*c) ^ (*c >> 13);
    *b = b.wrapping_sub(*c).wrapping_sub(*a) ^ (*a << 8);
    *c = c.wrapping_sub(*a).wrapping_sub(*b) ^ (*b >> 13);
    *a = a.wrapping_sub(*b).wrapping_sub(*c) ^ (*c >> 12);
    *b = b.wrapping_sub(*c).wrapping_sub(*a) ^ (*a << 16);
    *c = c.wrapping_sub(*a).wrapping_sub(*b) ^ (*b >> 5);
    *a = a.wrapping_sub(*b).wrapping_sub(*c) ^ (*c >> 3);
    *b = b.wrapping_sub(*c).wrapping_sub(*a) ^ (*a << 10);
    *c = c.wrapping_sub(*a).wrapping_sub(*b) ^ (*b >> 15);
}

/// Little-endian u32 from up to four bytes (missing bytes are zero).
fn le_word(bytes: &[u8]) -> u32 {
    bytes
        .iter()
        .take(4)
        .enumerate()
        .fold(0u32, |acc, (i, &b)| acc | (u32::from(b) << (8 * i)))
}

/// The placement hash of an object name (`object_hash rjenkins`).
pub fn str_hash_rjenkins(name: &[u8]) -> u32 {
    const GOLDEN_RATIO: u32 = 0x9e37_79b9;
    let (mut a, mut b, mut c) = (GOLDEN_RATIO, GOLDEN_RATIO, 0u32);
    let mut chunks = name.chunks_exact(12);
    for k in &mut chunks {
        a = a.wrapping_add(le_word(&k[0..4]));
        b = b.wrapping_add(le_word(&k[4..8]));
        c = c.wrapping_add(le_word(&k[8..12]));
        jenkins_mix(&mut a, &mut b, &mut c);
    }
    let tail = chunks.remainder();
    // The low byte of c carries the total length; the last (up to 11)
    // bytes fill a, b and the upper three bytes of c.
    c = c.wrapping_add(name.len() as u32);
    a = a.wrapping_add(le_word(tail.get(0..tail.len().min(4)).unwrap_or(&[])));
    if tail.len() > 4 {
        b = b.wrapping_add(le_word(&tail[4..tail.len().min(8)]));
    }
    if tail.len() > 8 {
        c = c.wrapping_add(le_word(&tail[8..]) << 8);
    }
    jenkins_mix(&mut a, &mut b, &mut c);
    c
}

/// Number of significant bits in `v` (`cbits` in Ceph).
pub fn cbits(v: u32) -> u32 {
    32 - v.leading_zeros()
}

/// Ceph's `ceph_stable_mod`: `x` modulo `b` such that growing `b` towards
/// the next power of two only splits PGs, never reshuffles them.
/// `bmask` is the next power of two at or above `b`, minus one.
pub fn stable_mod(x: u32, b: u32, bmask: u32) -> u32 {
    if (x & bmask) < b {
        x & bmask
    } else {
        x & (bmask >> 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_mod_splits() {
        // pg_num 12 (mask 15): 13 & 15 = 13 >= 12, so it folds to 13 & 7.
        assert_eq!(stable_mod(13, 12, 15), 5);
        assert_eq!(stable_mod(11, 12, 15), 11);
        assert_eq!(stable_mod(0xdead_beef, 1, 0), 0);
        assert_eq!(cbits(0), 0);
        assert_eq!(cbits(31), 5);
        assert_eq!(cbits(32), 6);
    }
}
