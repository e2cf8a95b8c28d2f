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

/// Bytes per block of [`string_specials`].
pub(crate) const BLOCK: usize = 64;

/// Bit *i* set when `block[i]` ends a run of plain JSON string text: a quote, a backslash
/// or a control character (below 0x20, which JSON forbids unescaped). Also whether the
/// block holds a byte above ASCII: the scanner learns from its strings' blocks whether the
/// event needs a full UTF-8 validation, without a pass of its own.
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
        let mut mask = 0u64;
        for (i, &b) in block.iter().enumerate() {
            mask |= u64::from(b == b'"' || b == b'\\' || b < 0x20) << i;
        }
        (mask, !block.is_ascii())
    }
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
        fn string_specials_flags_quotes_backslashes_and_controls(
            bytes in proptest::collection::vec(edge_byte(), BLOCK),
        ) {
            let full: [u8; BLOCK] = bytes.try_into().unwrap();
            let naive = full.iter().enumerate().fold(0u64, |m, (i, &b)| {
                m | (u64::from(b == b'"' || b == b'\\' || b < 0x20) << i)
            });
            prop_assert_eq!(string_specials(&full), (naive, !full.is_ascii()));
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
