//! CRUSH's rjenkins1 hash (`CRUSH_HASH_RJENKINS1 = 0`): the inputs are
//! XORed into a fixed seed, then mixed with two constants by Jenkins' mix.

use crate::hash::jenkins_mix;

const SEED: u32 = 1_315_423_911;
const X: u32 = 231_232;
const Y: u32 = 1232;

/// Hash of one value.
pub fn crush_hash32_1(a: u32) -> u32 {
    let mut h = SEED ^ a;
    let (mut a, mut b, mut x, mut y) = (a, a, X, Y);
    jenkins_mix(&mut b, &mut x, &mut h);
    jenkins_mix(&mut y, &mut a, &mut h);
    h
}

/// Hash of two values (placement seeds, `is_out` draws).
#[inline]
pub fn crush_hash32_2(a: u32, b: u32) -> u32 {
    let mut h = SEED ^ a ^ b;
    let (mut a, mut b, mut x, mut y) = (a, b, X, Y);
    jenkins_mix(&mut a, &mut b, &mut h);
    jenkins_mix(&mut x, &mut a, &mut h);
    jenkins_mix(&mut b, &mut y, &mut h);
    h
}

/// Hash of three values (straw2 draws: input, item, replica rank).
#[inline]
pub fn crush_hash32_3(a: u32, b: u32, c: u32) -> u32 {
    let mut h = SEED ^ a ^ b ^ c;
    let (mut a, mut b, mut c, mut x, mut y) = (a, b, c, X, Y);
    jenkins_mix(&mut a, &mut b, &mut h);
    jenkins_mix(&mut c, &mut x, &mut h);
    jenkins_mix(&mut y, &mut a, &mut h);
    jenkins_mix(&mut b, &mut x, &mut h);
    jenkins_mix(&mut y, &mut c, &mut h);
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_mixing() {
        // Sanity only: exactness is proven by the crushtool golden fixtures.
        assert_ne!(crush_hash32_2(0, 1), crush_hash32_2(1, 0) ^ 1);
        assert_ne!(crush_hash32_3(1, 2, 3), crush_hash32_3(1, 2, 4));
        assert_ne!(crush_hash32_1(0), crush_hash32_1(1));
    }
}
