//! The identities of the detections a Sigma correlation group took last, so that a
//! redelivered detection is not counted twice.
//!
//! Why not just a list: a busy group remembers up to [`RecentIds::CAPACITY`] identities,
//! and scanning 64 KB of them for every detection it receives was half of what a detection
//! cost at a thousand busy groups (`cargo bench -p tocsin-benches --bench correlate --
//! correlate-sigma`). The identities stay in a ring in arrival order (what a snapshot
//! saves, and what decides which one is forgotten first); beside it, an open-addressing
//! table of 16-bit slots points into the ring, so that "seen before?" is a probe or two.
//! At capacity the table adds 16 KB to the ring's 64 KB. Most groups take a few detections:
//! up to [`SCANNED`] identities are compared one by one, with no table to allocate.

use std::collections::VecDeque;

/// The latest identities of one group, oldest first, with an index to find them.
#[derive(Debug, Default)]
pub(crate) struct RecentIds {
    /// The identities in arrival order; at most [`RecentIds::CAPACITY`], all distinct
    /// unless a snapshot said otherwise.
    ring: VecDeque<u128>,
    /// Empty while the ring holds at most [`SCANNED`] identities; then the ring position
    /// of every identity, by linear probing from its hash: 0 is a free
    /// slot, otherwise `OCCUPIED | number`, where `number` is the identity's arrival number
    /// (counted from the group's first) modulo [`NUMBER_SPACE`].
    slots: Vec<u16>,
    /// The arrival number of `ring[0]`, modulo [`NUMBER_SPACE`].
    first: u16,
}

/// Rings up to this long are scanned, not indexed.
const SCANNED: usize = 8;

/// Set on every taken slot.
const OCCUPIED: u16 = 0x8000;
/// Arrival numbers are kept modulo this, which must exceed the capacity for a number to
/// name one ring position.
const NUMBER_SPACE: u16 = 0x8000;

impl RecentIds {
    /// How many identities a group remembers.
    pub(crate) const CAPACITY: usize = 4096;

    /// An index over `ring` (as a snapshot saved it), keeping its newest
    /// [`RecentIds::CAPACITY`] identities.
    fn from_ring(mut ring: VecDeque<u128>) -> Self {
        let excess = ring.len().saturating_sub(Self::CAPACITY);
        ring.drain(..excess);
        let indexed = ring.len() > SCANNED;
        let mut recent = RecentIds {
            ring,
            slots: Vec::new(),
            first: 0,
        };
        if indexed {
            recent.rebuild(table_size(recent.ring.len()));
        }
        recent
    }

    /// The identities, oldest first.
    #[cfg(test)]
    fn ring(&self) -> &VecDeque<u128> {
        &self.ring
    }

    /// Whether `id` is among the remembered identities.
    pub(crate) fn contains(&self, id: u128) -> bool {
        if self.slots.is_empty() {
            return self.ring.contains(&id);
        }
        let mask = self.slots.len() - 1;
        let mut slot = home(id, mask);
        loop {
            let tag = self.slots[slot];
            if tag == 0 {
                return false;
            }
            if self.ring[self.position(tag)] == id {
                return true;
            }
            slot = (slot + 1) & mask;
        }
    }

    /// Remember `id` as the newest, forgetting the oldest when full. The caller asks
    /// [`RecentIds::contains`] first: an identity pushed twice is remembered twice.
    pub(crate) fn push(&mut self, id: u128) {
        self.push_within(id, Self::CAPACITY);
    }

    /// [`RecentIds::push`] with room for `capacity` identities (below [`NUMBER_SPACE`]).
    fn push_within(&mut self, id: u128, capacity: usize) {
        debug_assert!(capacity < usize::from(NUMBER_SPACE));
        if self.ring.len() >= capacity {
            self.forget_oldest();
        }
        if self.slots.is_empty() && self.ring.len() < SCANNED {
            self.ring.push_back(id);
            return;
        }
        if (self.ring.len() + 1) * 2 > self.slots.len() {
            self.rebuild(table_size(self.ring.len() + 1));
        }
        self.append(id);
    }

    /// Put `id` at the ring's end and in the table (which has room).
    fn append(&mut self, id: u128) {
        let number = self.first.wrapping_add(self.ring.len() as u16) % NUMBER_SPACE;
        let mask = self.slots.len() - 1;
        let mut slot = home(id, mask);
        while self.slots[slot] != 0 {
            slot = (slot + 1) & mask;
        }
        self.slots[slot] = OCCUPIED | number;
        self.ring.push_back(id);
    }

    /// Drop the oldest identity from the table, closing the gap its slot leaves (so that
    /// no probe stops early), then from the ring.
    fn forget_oldest(&mut self) {
        let Some(&oldest) = self.ring.front() else {
            return;
        };
        if self.slots.is_empty() {
            self.ring.pop_front();
            self.first = self.first.wrapping_add(1) % NUMBER_SPACE;
            return;
        }
        let mask = self.slots.len() - 1;
        // The oldest is the one entry at ring position 0; its probe reaches it before any
        // free slot.
        let mut hole = home(oldest, mask);
        let mut probes = 0;
        while self.slots[hole] == 0 || self.position(self.slots[hole]) != 0 {
            probes += 1;
            assert!(
                probes < self.slots.len(),
                "the oldest identity is in the table"
            );
            hole = (hole + 1) & mask;
        }
        let mut next = hole;
        loop {
            next = (next + 1) & mask;
            let tag = self.slots[next];
            if tag == 0 {
                break;
            }
            // An entry may fill the hole if its probe from home passes the hole on the way.
            let from_home = next.wrapping_sub(home(self.ring[self.position(tag)], mask)) & mask;
            if from_home >= next.wrapping_sub(hole) & mask {
                self.slots[hole] = tag;
                hole = next;
            }
        }
        self.slots[hole] = 0;
        self.ring.pop_front();
        self.first = self.first.wrapping_add(1) % NUMBER_SPACE;
    }

    /// A table of `size` slots over the current ring.
    fn rebuild(&mut self, size: usize) {
        let ring = std::mem::take(&mut self.ring);
        self.slots = vec![0; size];
        self.ring = VecDeque::with_capacity(ring.len().max(1));
        // The arrival numbers stay: `first` is unchanged, and each comes back in its place.
        for id in ring {
            self.append(id);
        }
    }

    /// The ring position a taken slot's tag names.
    fn position(&self, tag: u16) -> usize {
        usize::from((tag & !OCCUPIED).wrapping_sub(self.first) % NUMBER_SPACE)
    }
}

/// Slots for `len` identities: a power of two, at most half full.
fn table_size(len: usize) -> usize {
    (len * 2).next_power_of_two().max(4)
}

/// The slot a probe for `id` starts at. Identities are digests already; their halves are
/// folded and spread, so that the low bits the mask keeps depend on every bit.
fn home(id: u128, mask: usize) -> usize {
    let folded = (id as u64) ^ ((id >> 64) as u64);
    (folded.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as usize & mask
}

impl serde::Serialize for RecentIds {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.ring.serialize(serializer)
    }
}

impl<'de> serde::Deserialize<'de> for RecentIds {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        VecDeque::<u128>::deserialize(deserializer).map(RecentIds::from_ring)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Identities whose two halves are equal fold to zero: all share one home slot, so
    /// probes must step past each other and deletions must close gaps in a run.
    fn colliding(i: u64) -> u128 {
        (u128::from(i) << 64) | u128::from(i)
    }

    #[test]
    fn a_full_group_forgets_its_oldest_and_finds_the_rest() {
        let mut recent = RecentIds::default();
        let n = RecentIds::CAPACITY as u64 + 100;
        for i in 0..n {
            assert!(!recent.contains(u128::from(i)));
            recent.push(u128::from(i));
        }
        assert_eq!(recent.ring().len(), RecentIds::CAPACITY);
        for i in 0..100u64 {
            assert!(!recent.contains(u128::from(i)), "{i} forgotten");
        }
        for i in 100..n {
            assert!(recent.contains(u128::from(i)), "{i} remembered");
        }
        assert_eq!(recent.slots.len(), 2 * RecentIds::CAPACITY);
    }

    #[test]
    fn arrival_numbers_wrap_many_times_over() {
        let mut recent = RecentIds::default();
        let n = 10 * u64::from(NUMBER_SPACE) + 123;
        for i in 0..n {
            recent.push(u128::from(i));
        }
        for i in n - RecentIds::CAPACITY as u64..n {
            assert!(recent.contains(u128::from(i)), "{i} remembered");
        }
        for i in n - 2 * RecentIds::CAPACITY as u64..n - RecentIds::CAPACITY as u64 {
            assert!(!recent.contains(u128::from(i)), "{i} forgotten");
        }
    }

    #[test]
    fn a_snapshot_ring_comes_back_with_its_index() {
        let mut recent = RecentIds::default();
        for i in 0..5_000u64 {
            recent.push(colliding(i % 13) + u128::from(i));
        }
        let json = serde_json::to_string(&recent).unwrap();
        let back: RecentIds = serde_json::from_str(&json).unwrap();
        assert_eq!(back.ring(), recent.ring());
        for id in recent.ring() {
            assert!(back.contains(*id));
        }
        // A saved ring longer than the capacity keeps its newest.
        let long: VecDeque<u128> = (0..5_000u128).collect();
        let back = RecentIds::from_ring(long);
        assert_eq!(back.ring().len(), RecentIds::CAPACITY);
        assert!(back.contains(4_999) && back.contains(904) && !back.contains(903));
    }

    /// The least value whose identities all probe from the table's last slot, whatever
    /// its size (up to 2^16 slots), so that their run wraps round to the first slots.
    const FOLDED_TO_THE_LAST_SLOT: u64 = 6_098_305;

    #[test]
    fn identities_folded_so_probe_from_the_last_slot() {
        for mask in [3, 15, 1023, 0xFFFF] {
            assert_eq!(home(u128::from(FOLDED_TO_THE_LAST_SLOT), mask), mask);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Whatever the capacity, order, collisions (identities sharing the first or the
        /// last slot), arrival numbers near their wrap and restores from a snapshot along
        /// the way, the index answers as a scan of the ring would, and the ring holds the
        /// newest pushes.
        #[test]
        fn answers_as_a_scan_of_the_ring(
            capacity in 1usize..40,
            first in prop_oneof![Just(0u16), (NUMBER_SPACE - 64)..NUMBER_SPACE],
            ops in proptest::collection::vec((0u64..48, 0u8..4), 1..400),
        ) {
            let mut recent = RecentIds { first, ..RecentIds::default() };
            let mut model: VecDeque<u128> = VecDeque::new();
            for (i, (value, family)) in ops.into_iter().enumerate() {
                let id = match family {
                    0 => u128::from(value),
                    1 => colliding(value),
                    2 => colliding(value) ^ u128::from(FOLDED_TO_THE_LAST_SLOT),
                    // A restore from a snapshot, then the same value as family 0.
                    _ => {
                        recent = RecentIds::from_ring(recent.ring().clone());
                        u128::from(value)
                    }
                };
                prop_assert_eq!(recent.contains(id), model.contains(&id), "op {}", i);
                if !model.contains(&id) {
                    recent.push_within(id, capacity);
                    model.push_back(id);
                    if model.len() > capacity {
                        model.pop_front();
                    }
                }
            }
            prop_assert_eq!(recent.ring(), &model);
            for id in &model {
                prop_assert!(recent.contains(*id));
            }
        }
    }

    /// A saved ring holding an identity twice (no version writes one, but a snapshot is
    /// data) is indexed and forgets both copies in turn.
    #[test]
    fn a_ring_with_an_identity_twice_is_forgotten_in_order() {
        let mut ring: VecDeque<u128> = (0..20u128).collect();
        ring.push_back(3);
        let mut recent = RecentIds::from_ring(ring);
        assert!(recent.contains(3));
        for id in 100..104u128 {
            recent.push_within(id, 21);
        }
        // 0 to 3 forgotten; the later copy of 3 is still there.
        assert!(!recent.contains(0) && !recent.contains(2) && recent.contains(3));
        for id in 104..121u128 {
            recent.push_within(id, 21);
        }
        assert!(!recent.contains(3) && recent.contains(120));
    }
}
