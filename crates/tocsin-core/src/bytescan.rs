//! Byte-class bit masks over fixed blocks, for the JSON scanner and the unescaper.
//!
//! Why masks: strings in Windows events are short runs between `\\` escapes (paths,
//! command lines). Finding the next special byte with a search per run pays the set-up of
//! the search at every escape. A mask answers for a whole block at once (bit *i* set when
//! byte *i* is special); the caller then walks the set bits with `trailing_zeros` and only
//! loads the next block when it has passed this one.
//!
//! On x86-64 the masks come from SSE2 compares and `movemask` (SSE2 is part of the
//! x86-64 baseline, so no run-time detection is needed); elsewhere from a plain loop that
//! the compiler vectorises where it can.

/// Bytes per block of [`classify`].
pub(crate) const BLOCK: usize = 64;

/// The classification of one block by [`classify`]: bit *i* of each mask stands for
/// byte *i* of the block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BlockClasses {
    pub quotes: u64,
    pub backslashes: u64,
    /// Bytes below 0x20, which JSON forbids inside strings.
    pub controls: u64,
    /// The block holds a byte above ASCII: the scanner learns from its strings' blocks
    /// whether the event needs a full UTF-8 validation, without a pass of its own.
    pub high: bool,
}

impl BlockClasses {
    /// The masks moved down by `shift` bits (a block read from before where it starts,
    /// see the event decoder's last block); `high` as it was.
    #[inline]
    pub(crate) fn shifted_down(self, shift: usize) -> BlockClasses {
        BlockClasses {
            quotes: self.quotes >> shift,
            backslashes: self.backslashes >> shift,
            controls: self.controls >> shift,
            high: self.high,
        }
    }
}

/// Bit *i* set when `block[i]` ends a run of plain JSON string text: a quote, a backslash
/// or a control character; and whether the block holds a byte above ASCII. What the
/// byte-by-byte scanner needs of a block (lines the string index does not take, and nested
/// objects read by dotted paths): [`classify`] without the masks it would not use.
#[inline]
pub(crate) fn string_specials(block: &[u8; BLOCK]) -> (u64, bool) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        // SAFETY: SSE2 is enabled on every x86-64 target; the loads are unaligned loads of
        // 16 bytes inside the 64-byte array.
        unsafe {
            let quote = _mm_set1_epi8(b'"' as i8);
            let backslash = _mm_set1_epi8(b'\\' as i8);
            let below_space = _mm_set1_epi8(0x1F);
            let mut mask = 0u64;
            let mut high = _mm_setzero_si128();
            for lane in 0..4 {
                let v = _mm_loadu_si128(block.as_ptr().add(lane * 16).cast());
                high = _mm_or_si128(high, v);
                // Unsigned `v <= 0x1F`: max(v, 0x1F) == 0x1F.
                let control = _mm_cmpeq_epi8(_mm_max_epu8(v, below_space), below_space);
                let special = _mm_or_si128(
                    _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)),
                    control,
                );
                mask |= u64::from(_mm_movemask_epi8(special) as u16) << (lane * 16);
            }
            (mask, _mm_movemask_epi8(high) != 0)
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let c = classify(block);
        (c.quotes | c.backslashes | c.controls, c.high)
    }
}

/// The bytes that follow a backslash in the common two-byte escapes (`\/` is valid too,
/// but uncommon: the decoder looks at it apart).
pub(crate) const PLAIN_ESCAPES: [u8; 6] = *b"\"bfnrt";

/// Classify the bytes of one block (see [`BlockClasses`]).
#[inline]
pub(crate) fn classify(block: &[u8; BLOCK]) -> BlockClasses {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        // SAFETY: SSE2 is enabled on every x86-64 target; the loads are unaligned loads of
        // 16 bytes inside the 64-byte array.
        unsafe {
            let quote = _mm_set1_epi8(b'"' as i8);
            let backslash = _mm_set1_epi8(b'\\' as i8);
            let below_space = _mm_set1_epi8(0x1F);
            let (mut quotes, mut backslashes, mut controls) = (0u64, 0u64, 0u64);
            let mut high = _mm_setzero_si128();
            for lane in 0..4 {
                let v = _mm_loadu_si128(block.as_ptr().add(lane * 16).cast());
                high = _mm_or_si128(high, v);
                let shift = lane * 16;
                quotes |= u64::from(_mm_movemask_epi8(_mm_cmpeq_epi8(v, quote)) as u16) << shift;
                backslashes |=
                    u64::from(_mm_movemask_epi8(_mm_cmpeq_epi8(v, backslash)) as u16) << shift;
                // Unsigned `v <= 0x1F`: max(v, 0x1F) == 0x1F.
                let control = _mm_cmpeq_epi8(_mm_max_epu8(v, below_space), below_space);
                controls |= u64::from(_mm_movemask_epi8(control) as u16) << shift;
            }
            BlockClasses {
                quotes,
                backslashes,
                controls,
                high: _mm_movemask_epi8(high) != 0,
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let (mut quotes, mut backslashes, mut controls) = (0u64, 0u64, 0u64);
        for (i, &b) in block.iter().enumerate() {
            quotes |= u64::from(b == b'"') << i;
            backslashes |= u64::from(b == b'\\') << i;
            controls |= u64::from(b < 0x20) << i;
        }
        BlockClasses {
            quotes,
            backslashes,
            controls,
            high: !block.is_ascii(),
        }
    }
}

/// The bytes of one block that make a common two-byte escape after a backslash
/// ([`PLAIN_ESCAPES`]), bit *i* for byte *i*. Asked apart from [`classify`], only for the
/// blocks where a byte other than a backslash is escaped: paths escape backslashes alone,
/// and most blocks of a Windows event need no more.
#[inline]
pub(crate) fn escapable(block: &[u8; BLOCK]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        // SAFETY: SSE2 is enabled on every x86-64 target; the loads are unaligned loads of
        // 16 bytes inside the 64-byte array.
        unsafe {
            let mut mask = 0u64;
            for lane in 0..4 {
                let v = _mm_loadu_si128(block.as_ptr().add(lane * 16).cast());
                let mut plain = _mm_setzero_si128();
                for letter in PLAIN_ESCAPES {
                    plain = _mm_or_si128(plain, _mm_cmpeq_epi8(v, _mm_set1_epi8(letter as i8)));
                }
                mask |= u64::from(_mm_movemask_epi8(plain) as u16) << (lane * 16);
            }
            mask
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        block.iter().enumerate().fold(0u64, |mask, (i, &b)| {
            mask | (u64::from(PLAIN_ESCAPES.contains(&b)) << i)
        })
    }
}

/// [`classify`] with AVX-512BW: one load and three compares into bit masks, where the
/// SSE2 version needs four loads, a dozen compares and twelve mask moves. It is the
/// largest part of the string index that every event gets ([`crate::event`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512bw")]
#[inline]
pub(crate) fn classify_avx512(block: &[u8; BLOCK]) -> BlockClasses {
    use std::arch::x86_64::*;
    // SAFETY: one unaligned 64-byte load of the 64-byte array.
    let v = unsafe { _mm512_loadu_si512(block.as_ptr().cast()) };
    BlockClasses {
        quotes: _mm512_cmpeq_epi8_mask(v, _mm512_set1_epi8(b'"' as i8)),
        backslashes: _mm512_cmpeq_epi8_mask(v, _mm512_set1_epi8(b'\\' as i8)),
        controls: _mm512_cmplt_epu8_mask(v, _mm512_set1_epi8(0x20)),
        high: _mm512_movepi8_mask(v) != 0,
    }
}

/// [`escapable`] with AVX-512BW: six compares into one mask.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512bw")]
#[inline]
pub(crate) fn escapable_avx512(block: &[u8; BLOCK]) -> u64 {
    use std::arch::x86_64::*;
    // SAFETY: one unaligned 64-byte load of the 64-byte array.
    let v = unsafe { _mm512_loadu_si512(block.as_ptr().cast()) };
    PLAIN_ESCAPES.iter().fold(0u64, |mask, &letter| {
        mask | _mm512_cmpeq_epi8_mask(v, _mm512_set1_epi8(letter as i8))
    })
}

/// Whether [`classify_avx512`] can run here (detected once, then a cached flag).
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn avx512_available() -> bool {
    std::arch::is_x86_feature_detected!("avx512bw")
}

/// Bytes at even positions of a block.
const EVEN_BITS: u64 = 0x5555_5555_5555_5555;

/// Which bytes of a block are escaped, from its backslashes: returns `(escapes, escaped)`,
/// the backslashes that begin an escape and the bytes that follow them.
///
/// `first_escaped` says that the block's first byte is escaped by a backslash that ended
/// the previous block (its `escapes` bit 63). In a run of backslashes, the first, third,
/// fifth... begin escapes and the others are escaped; so whether a run's backslash escapes
/// depends on the parity of its distance to the run's start. Adding each even-started run's
/// lowest bit to the backslash mask carries through that run and clears it, which tells
/// the even-started runs from the odd-started ones in one addition, whatever their length;
/// an even-started run escapes from its even positions, an odd-started one from its odd.
#[inline]
pub(crate) fn escapes(backslashes: u64, first_escaped: bool) -> (u64, u64) {
    let carried = u64::from(first_escaped);
    // A backslash that is itself escaped begins no run.
    let potential = backslashes & !carried;
    let run_starts = potential & !(potential << 1);
    let odd_started = potential.wrapping_add(run_starts & EVEN_BITS) & potential;
    let even_started = potential & !odd_started;
    let escapes = (even_started & EVEN_BITS) | (odd_started & !EVEN_BITS);
    (escapes, (escapes << 1) | carried)
}

/// Bit *i* set when `block[i]` is a backslash.
#[inline]
pub(crate) fn backslashes(block: &[u8; 16]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        // SAFETY: SSE2 is enabled on every x86-64 target; one unaligned 16-byte load of
        // the array.
        unsafe {
            let v = _mm_loadu_si128(block.as_ptr().cast());
            _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8))) as u32 & 0xFFFF
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let mut mask = 0u32;
        for (i, &b) in block.iter().enumerate() {
            mask |= u32::from(b == b'\\') << i;
        }
        mask
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Bytes at the edges of the classes (and any byte).
    fn edge_byte() -> impl Strategy<Value = u8> {
        prop_oneof![
            Just(b'"'),
            Just(b'\\'),
            Just(b'n'),
            Just(b't'),
            Just(0x1F),
            Just(0x20),
            Just(0x00),
            Just(0x7F),
            Just(0x80),
            Just(0xDC),
            any::<u8>()
        ]
    }

    proptest! {
        #[test]
        fn classify_flags_quotes_backslashes_and_controls(
            bytes in proptest::collection::vec(edge_byte(), BLOCK),
        ) {
            let full: [u8; BLOCK] = bytes.try_into().unwrap();
            let bits = |test: fn(u8) -> bool| {
                full.iter().enumerate().fold(0u64, |m, (i, &b)| m | (u64::from(test(b)) << i))
            };
            let classes = classify(&full);
            prop_assert_eq!(
                string_specials(&full),
                (classes.quotes | classes.backslashes | classes.controls, classes.high)
            );
            #[cfg(target_arch = "x86_64")]
            if avx512_available() {
                // SAFETY: the processor has AVX-512BW.
                prop_assert_eq!(unsafe { classify_avx512(&full) }, classify(&full));
                prop_assert_eq!(unsafe { escapable_avx512(&full) }, escapable(&full));
            }
            prop_assert_eq!(
                classify(&full),
                BlockClasses {
                    quotes: bits(|b| b == b'"'),
                    backslashes: bits(|b| b == b'\\'),
                    controls: bits(|b| b < 0x20),
                    high: !full.is_ascii(),
                }
            );
            prop_assert_eq!(escapable(&full), bits(|b| b"\"bfnrt".contains(&b)));
        }

        #[test]
        fn escapes_agree_with_a_byte_by_byte_walk(
            backslashes in prop_oneof![any::<u64>(), Just(u64::MAX), Just(u64::MAX << 1), Just(u64::MAX >> 1)],
            first_escaped in any::<bool>(),
        ) {
            let (mut escapes_naive, mut escaped_naive) = (0u64, 0u64);
            let mut next_escaped = first_escaped;
            for i in 0..64 {
                let bit = 1u64 << i;
                if next_escaped {
                    escaped_naive |= bit;
                    next_escaped = false;
                } else if backslashes & bit != 0 {
                    escapes_naive |= bit;
                    next_escaped = true;
                }
            }
            prop_assert_eq!(escapes(backslashes, first_escaped), (escapes_naive, escaped_naive));
        }

        #[test]
        fn backslashes_flags_exactly_the_backslashes(
            bytes in proptest::collection::vec(edge_byte(), 16),
        ) {
            let block: [u8; 16] = bytes.try_into().unwrap();
            let naive = block.iter().enumerate().fold(0u32, |m, (i, &b)| m | (u32::from(b == b'\\') << i));
            prop_assert_eq!(backslashes(&block), naive);
        }
    }
}
