//! MD5 of several independent byte streams at once: the eight 32-bit lanes
//! of an AVX2 register each carry one stream's state, so one thread hashes
//! eight streams for little more than the cost of one (MD5's rounds are a
//! single dependency chain, which leaves a core's vector units idle when it
//! hashes one stream; see bench/NOTES.md for the measurement).
//!
//! This is only the compression function over whole 64-byte blocks, and the
//! padding that ends a stream; batchput's `engine::hasher` feeds it. Without AVX2 (or off
//! x86-64) each lane is compressed in turn with the md-5 crate's function,
//! so the result never depends on the machine; the differential tests below
//! compare both paths with md-5's `Md5` on random lengths.

/// Streams hashed together.
pub const LANES: usize = 8;

/// MD5's initial state.
pub const INIT: [u32; 4] = [0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476];

/// Compresses `blocks` 64-byte blocks of each lane's `data` into its state.
/// Every `data[j]` holds at least `blocks * 64` bytes; a lane nobody uses is
/// given any such buffer and its state ignored.
pub fn compress(states: &mut [[u32; 4]; LANES], data: [&[u8]; LANES], blocks: usize) {
    for d in &data {
        assert!(
            d.len() >= blocks * 64,
            "a lane holds fewer bytes than its blocks"
        );
    }
    if blocks == 0 {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is present (checked above) and every lane holds
        // `blocks * 64` readable bytes (asserted above).
        unsafe { avx2::compress(states, data, blocks) };
        return;
    }
    compress_each(states, data, blocks);
}

/// One lane at a time (md-5's own compression function).
pub fn compress_each(states: &mut [[u32; 4]; LANES], data: [&[u8]; LANES], blocks: usize) {
    for (state, d) in states.iter_mut().zip(data) {
        let (chunks, _) = d[..blocks * 64].as_chunks::<64>();
        md5::block_api::compress(state, chunks);
    }
}

/// MD5's padding after `tail` (the last `len % 64` bytes of a stream of
/// `len` bytes): the final one or two blocks, and how many bytes of `out`
/// they fill (64 or 128).
pub fn final_blocks(tail: &[u8], len: u64, out: &mut [u8; 128]) -> usize {
    debug_assert!(tail.len() < 64 && tail.len() as u64 == len % 64);
    out.fill(0);
    out[..tail.len()].copy_from_slice(tail);
    out[tail.len()] = 0x80;
    let n = if tail.len() < 56 { 64 } else { 128 };
    out[n - 8..n].copy_from_slice(&len.wrapping_mul(8).to_le_bytes());
    n
}

/// The digest a final state stands for.
pub fn digest(state: &[u32; 4]) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (o, s) in out.chunks_exact_mut(4).zip(state) {
        o.copy_from_slice(&s.to_le_bytes());
    }
    out
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::LANES;

    macro_rules! rotl {
        ($x:expr, $l:literal, $r:literal) => {
            _mm256_or_si256(_mm256_slli_epi32::<$l>($x), _mm256_srli_epi32::<$r>($x))
        };
    }
    // The round functions, in the forms with fewest operations.
    macro_rules! f {
        ($b:expr, $c:expr, $d:expr) => {
            _mm256_xor_si256($d, _mm256_and_si256($b, _mm256_xor_si256($c, $d)))
        };
    }
    macro_rules! g {
        ($b:expr, $c:expr, $d:expr) => {
            _mm256_xor_si256($c, _mm256_and_si256($d, _mm256_xor_si256($b, $c)))
        };
    }
    macro_rules! h {
        ($b:expr, $c:expr, $d:expr) => {
            _mm256_xor_si256(_mm256_xor_si256($b, $c), $d)
        };
    }
    macro_rules! i {
        ($b:expr, $c:expr, $d:expr) => {
            _mm256_xor_si256(
                $c,
                _mm256_or_si256($b, _mm256_xor_si256($d, _mm256_set1_epi32(-1))),
            )
        };
    }
    /// a = b + rotl(a + fn(b, c, d) + word + k, s)
    macro_rules! step {
        ($fn:ident, $a:ident, $b:ident, $c:ident, $d:ident, $w:expr, $k:literal, $l:literal, $r:literal) => {
            let sum = _mm256_add_epi32(
                _mm256_add_epi32($a, $fn!($b, $c, $d)),
                _mm256_add_epi32($w, _mm256_set1_epi32($k as i32)),
            );
            $a = _mm256_add_epi32($b, rotl!(sum, $l, $r));
        };
    }

    /// Eight rows of eight words become eight columns: `out[w]` holds word
    /// `w` of every lane.
    #[target_feature(enable = "avx2")]
    fn transpose(r: [__m256i; 8]) -> [__m256i; 8] {
        let t0 = _mm256_unpacklo_epi32(r[0], r[1]);
        let t1 = _mm256_unpackhi_epi32(r[0], r[1]);
        let t2 = _mm256_unpacklo_epi32(r[2], r[3]);
        let t3 = _mm256_unpackhi_epi32(r[2], r[3]);
        let t4 = _mm256_unpacklo_epi32(r[4], r[5]);
        let t5 = _mm256_unpackhi_epi32(r[4], r[5]);
        let t6 = _mm256_unpacklo_epi32(r[6], r[7]);
        let t7 = _mm256_unpackhi_epi32(r[6], r[7]);
        let u0 = _mm256_unpacklo_epi64(t0, t2);
        let u1 = _mm256_unpackhi_epi64(t0, t2);
        let u2 = _mm256_unpacklo_epi64(t1, t3);
        let u3 = _mm256_unpackhi_epi64(t1, t3);
        let u4 = _mm256_unpacklo_epi64(t4, t6);
        let u5 = _mm256_unpackhi_epi64(t4, t6);
        let u6 = _mm256_unpacklo_epi64(t5, t7);
        let u7 = _mm256_unpackhi_epi64(t5, t7);
        [
            _mm256_permute2x128_si256::<0x20>(u0, u4),
            _mm256_permute2x128_si256::<0x20>(u1, u5),
            _mm256_permute2x128_si256::<0x20>(u2, u6),
            _mm256_permute2x128_si256::<0x20>(u3, u7),
            _mm256_permute2x128_si256::<0x31>(u0, u4),
            _mm256_permute2x128_si256::<0x31>(u1, u5),
            _mm256_permute2x128_si256::<0x31>(u2, u6),
            _mm256_permute2x128_si256::<0x31>(u3, u7),
        ]
    }

    /// # Safety
    /// AVX2 must be present and every lane must hold `blocks * 64` bytes.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn compress(
        states: &mut [[u32; 4]; LANES],
        data: [&[u8]; LANES],
        blocks: usize,
    ) {
        let lane = |i: usize| -> __m256i {
            _mm256_setr_epi32(
                states[0][i] as i32,
                states[1][i] as i32,
                states[2][i] as i32,
                states[3][i] as i32,
                states[4][i] as i32,
                states[5][i] as i32,
                states[6][i] as i32,
                states[7][i] as i32,
            )
        };
        let (mut a, mut b, mut c, mut d) = (lane(0), lane(1), lane(2), lane(3));
        for block in 0..blocks {
            let row = |half: usize| -> [__m256i; 8] {
                std::array::from_fn(|j| {
                    let p = data[j][block * 64 + half * 32..].as_ptr();
                    // SAFETY: 32 bytes from here lie within the lane's
                    // `blocks * 64` (the caller's contract).
                    unsafe { _mm256_loadu_si256(p.cast()) }
                })
            };
            let lo = transpose(row(0));
            let hi = transpose(row(1));
            let w: [__m256i; 16] = std::array::from_fn(|i| if i < 8 { lo[i] } else { hi[i - 8] });
            let (a0, b0, c0, d0) = (a, b, c, d);
            step!(f, a, b, c, d, w[0], 0xd76aa478u32, 7, 25);
            step!(f, d, a, b, c, w[1], 0xe8c7b756u32, 12, 20);
            step!(f, c, d, a, b, w[2], 0x242070dbu32, 17, 15);
            step!(f, b, c, d, a, w[3], 0xc1bdceeeu32, 22, 10);
            step!(f, a, b, c, d, w[4], 0xf57c0fafu32, 7, 25);
            step!(f, d, a, b, c, w[5], 0x4787c62au32, 12, 20);
            step!(f, c, d, a, b, w[6], 0xa8304613u32, 17, 15);
            step!(f, b, c, d, a, w[7], 0xfd469501u32, 22, 10);
            step!(f, a, b, c, d, w[8], 0x698098d8u32, 7, 25);
            step!(f, d, a, b, c, w[9], 0x8b44f7afu32, 12, 20);
            step!(f, c, d, a, b, w[10], 0xffff5bb1u32, 17, 15);
            step!(f, b, c, d, a, w[11], 0x895cd7beu32, 22, 10);
            step!(f, a, b, c, d, w[12], 0x6b901122u32, 7, 25);
            step!(f, d, a, b, c, w[13], 0xfd987193u32, 12, 20);
            step!(f, c, d, a, b, w[14], 0xa679438eu32, 17, 15);
            step!(f, b, c, d, a, w[15], 0x49b40821u32, 22, 10);
            step!(g, a, b, c, d, w[1], 0xf61e2562u32, 5, 27);
            step!(g, d, a, b, c, w[6], 0xc040b340u32, 9, 23);
            step!(g, c, d, a, b, w[11], 0x265e5a51u32, 14, 18);
            step!(g, b, c, d, a, w[0], 0xe9b6c7aau32, 20, 12);
            step!(g, a, b, c, d, w[5], 0xd62f105du32, 5, 27);
            step!(g, d, a, b, c, w[10], 0x02441453u32, 9, 23);
            step!(g, c, d, a, b, w[15], 0xd8a1e681u32, 14, 18);
            step!(g, b, c, d, a, w[4], 0xe7d3fbc8u32, 20, 12);
            step!(g, a, b, c, d, w[9], 0x21e1cde6u32, 5, 27);
            step!(g, d, a, b, c, w[14], 0xc33707d6u32, 9, 23);
            step!(g, c, d, a, b, w[3], 0xf4d50d87u32, 14, 18);
            step!(g, b, c, d, a, w[8], 0x455a14edu32, 20, 12);
            step!(g, a, b, c, d, w[13], 0xa9e3e905u32, 5, 27);
            step!(g, d, a, b, c, w[2], 0xfcefa3f8u32, 9, 23);
            step!(g, c, d, a, b, w[7], 0x676f02d9u32, 14, 18);
            step!(g, b, c, d, a, w[12], 0x8d2a4c8au32, 20, 12);
            step!(h, a, b, c, d, w[5], 0xfffa3942u32, 4, 28);
            step!(h, d, a, b, c, w[8], 0x8771f681u32, 11, 21);
            step!(h, c, d, a, b, w[11], 0x6d9d6122u32, 16, 16);
            step!(h, b, c, d, a, w[14], 0xfde5380cu32, 23, 9);
            step!(h, a, b, c, d, w[1], 0xa4beea44u32, 4, 28);
            step!(h, d, a, b, c, w[4], 0x4bdecfa9u32, 11, 21);
            step!(h, c, d, a, b, w[7], 0xf6bb4b60u32, 16, 16);
            step!(h, b, c, d, a, w[10], 0xbebfbc70u32, 23, 9);
            step!(h, a, b, c, d, w[13], 0x289b7ec6u32, 4, 28);
            step!(h, d, a, b, c, w[0], 0xeaa127fau32, 11, 21);
            step!(h, c, d, a, b, w[3], 0xd4ef3085u32, 16, 16);
            step!(h, b, c, d, a, w[6], 0x04881d05u32, 23, 9);
            step!(h, a, b, c, d, w[9], 0xd9d4d039u32, 4, 28);
            step!(h, d, a, b, c, w[12], 0xe6db99e5u32, 11, 21);
            step!(h, c, d, a, b, w[15], 0x1fa27cf8u32, 16, 16);
            step!(h, b, c, d, a, w[2], 0xc4ac5665u32, 23, 9);
            step!(i, a, b, c, d, w[0], 0xf4292244u32, 6, 26);
            step!(i, d, a, b, c, w[7], 0x432aff97u32, 10, 22);
            step!(i, c, d, a, b, w[14], 0xab9423a7u32, 15, 17);
            step!(i, b, c, d, a, w[5], 0xfc93a039u32, 21, 11);
            step!(i, a, b, c, d, w[12], 0x655b59c3u32, 6, 26);
            step!(i, d, a, b, c, w[3], 0x8f0ccc92u32, 10, 22);
            step!(i, c, d, a, b, w[10], 0xffeff47du32, 15, 17);
            step!(i, b, c, d, a, w[1], 0x85845dd1u32, 21, 11);
            step!(i, a, b, c, d, w[8], 0x6fa87e4fu32, 6, 26);
            step!(i, d, a, b, c, w[15], 0xfe2ce6e0u32, 10, 22);
            step!(i, c, d, a, b, w[6], 0xa3014314u32, 15, 17);
            step!(i, b, c, d, a, w[13], 0x4e0811a1u32, 21, 11);
            step!(i, a, b, c, d, w[4], 0xf7537e82u32, 6, 26);
            step!(i, d, a, b, c, w[11], 0xbd3af235u32, 10, 22);
            step!(i, c, d, a, b, w[2], 0x2ad7d2bbu32, 15, 17);
            step!(i, b, c, d, a, w[9], 0xeb86d391u32, 21, 11);
            a = _mm256_add_epi32(a, a0);
            b = _mm256_add_epi32(b, b0);
            c = _mm256_add_epi32(c, c0);
            d = _mm256_add_epi32(d, d0);
        }
        let mut out = [[0u32; LANES]; 4];
        for (o, v) in out.iter_mut().zip([a, b, c, d]) {
            // SAFETY: `o` is 32 bytes, what one register holds.
            unsafe { _mm256_storeu_si256(o.as_mut_ptr().cast(), v) };
        }
        for (j, state) in states.iter_mut().enumerate() {
            *state = [out[0][j], out[1][j], out[2][j], out[3][j]];
        }
    }
}

#[cfg(test)]
mod tests {
    use md5::{Digest, Md5};

    use super::*;

    /// A deterministic byte stream (xorshift), so a failure reproduces.
    fn bytes(seed: u64, n: usize) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// `compress` or `compress_each`.
    type Compress = fn(&mut [[u32; 4]; LANES], [&[u8]; LANES], usize);

    /// Hashes eight whole messages through `compress_fn` and the padding.
    fn lanes_md5(msgs: &[Vec<u8>; LANES], compress_fn: Compress) -> [[u8; 16]; LANES] {
        let mut states = [INIT; LANES];
        // Whole blocks, lane by lane as far as each goes, then each tail.
        let min_blocks = msgs.iter().map(|m| m.len() / 64).min().unwrap();
        compress_fn(
            &mut states,
            std::array::from_fn(|j| &msgs[j][..]),
            min_blocks,
        );
        let mut out = [[0u8; 16]; LANES];
        for j in 0..LANES {
            let m = &msgs[j];
            let whole = m.len() / 64 * 64;
            let mut one = [INIT; LANES];
            one[0] = states[j];
            let rest = &m[min_blocks * 64..whole];
            let dummy = vec![0u8; rest.len()];
            let mut data: [&[u8]; LANES] = [&dummy[..]; LANES];
            data[0] = rest;
            compress_fn(&mut one, data, rest.len() / 64);
            let mut pad = [0u8; 128];
            let n = final_blocks(&m[whole..], m.len() as u64, &mut pad);
            let dummy = [0u8; 128];
            let mut data: [&[u8]; LANES] = [&dummy[..]; LANES];
            data[0] = &pad[..n];
            compress_fn(&mut one, data, n / 64);
            out[j] = digest(&one[0]);
        }
        out
    }

    #[test]
    fn both_paths_agree_with_md5_on_random_lengths() {
        let mut seed = 0x9e3779b97f4a7c15u64;
        for round in 0..300 {
            let msgs: [Vec<u8>; LANES] = std::array::from_fn(|j| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                // Mostly short (every padding case), sometimes long.
                let len = if round % 10 == 0 {
                    (seed >> 33) as usize % 70_000
                } else {
                    (seed >> 33) as usize % 300
                };
                bytes(seed ^ j as u64, len)
            });
            let want: [[u8; 16]; LANES] = std::array::from_fn(|j| Md5::digest(&msgs[j]).into());
            assert_eq!(lanes_md5(&msgs, compress), want, "round {round}");
            assert_eq!(lanes_md5(&msgs, compress_each), want, "round {round}");
        }
    }

    #[test]
    fn empty_and_block_edge_lengths() {
        for len in [0usize, 1, 55, 56, 63, 64, 65, 119, 120, 127, 128, 129] {
            let msgs: [Vec<u8>; LANES] =
                std::array::from_fn(|j| bytes(len as u64 * 31 + j as u64, len + j));
            let want: [[u8; 16]; LANES] = std::array::from_fn(|j| Md5::digest(&msgs[j]).into());
            assert_eq!(lanes_md5(&msgs, compress), want, "length {len}");
        }
    }
}
