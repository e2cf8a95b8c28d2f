//! Small sorted maps and sets: what a correlation key's candidate keeps.
//!
//! Why not `BTreeMap` and `BTreeSet` alone: a live correlation key holds a dozen maps and
//! sets of one to a few entries each (its organisations, rules, indicators and their feeds,
//! its timeline), and a B-tree allocates a node for eleven entries even for one: a map of
//! rule summaries took about 1 KB for one rule. [`SortedMap`] and [`SortedSet`] hold up to
//! 64 entries (`VEC_LIMIT`) in one vector kept in order (grown one entry at a time up to four,
//! then doubling), and move them to a B-tree past that, so that a key gathering thousands
//! of indicators (a campaign's) does not shift them all at each insert. Either way they
//! answer, iterate and serialise exactly as the B-tree collections (in key order; a map as a
//! JSON object, a set as an array), and compare and hash alike in either form, so
//! snapshots, warnings and every id derived from them are the same whichever form holds
//! them.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::{btree_map, btree_set, BTreeMap, BTreeSet};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The most entries a collection keeps in its vector: an insert there shifts at most this
/// many, which costs less than a B-tree's allocations; past it, a B-tree takes them.
pub(crate) const VEC_LIMIT: usize = if cfg!(test) { 8 } else { 64 };

/// Make room for one more entry: exactly one while the vector is short, then doubling.
fn grow_for_one<T>(entries: &mut Vec<T>) {
    if entries.len() == entries.capacity() {
        let extra = if entries.len() < 4 { 1 } else { entries.len() };
        entries.reserve_exact(extra);
    }
}

/// A sorted map: a vector while small, a B-tree past [`VEC_LIMIT`] (see the module docs).
#[derive(Clone)]
pub struct SortedMap<K, V> {
    repr: MapRepr<K, V>,
}

#[derive(Clone)]
enum MapRepr<K, V> {
    Vec(Vec<(K, V)>),
    Tree(BTreeMap<K, V>),
}

impl<K, V> Default for SortedMap<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

/// Where `key` is in sorted `entries`.
fn search<K, V, Q>(entries: &[(K, V)], key: &Q) -> Result<usize, usize>
where
    K: Borrow<Q>,
    Q: Ord + ?Sized,
{
    entries.binary_search_by(|(k, _)| k.borrow().cmp(key))
}

impl<K, V> SortedMap<K, V> {
    /// An empty map (allocates nothing).
    pub const fn new() -> Self {
        SortedMap {
            repr: MapRepr::Vec(Vec::new()),
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        match &self.repr {
            MapRepr::Vec(v) => v.len(),
            MapRepr::Tree(t) => t.len(),
        }
    }

    /// Whether it has no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The entries in key order.
    pub fn iter(&self) -> Iter<'_, K, V> {
        Iter(match &self.repr {
            MapRepr::Vec(v) => IterRepr::Vec(v.iter()),
            MapRepr::Tree(t) => IterRepr::Tree(t.iter()),
        })
    }

    /// The keys in order.
    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &K> + ExactSizeIterator {
        self.iter().map(|(k, _)| k)
    }

    /// The values in key order.
    pub fn values(&self) -> impl DoubleEndedIterator<Item = &V> + ExactSizeIterator {
        self.iter().map(|(_, v)| v)
    }

    /// The entry with the smallest key.
    pub fn first_key_value(&self) -> Option<(&K, &V)> {
        self.iter().next()
    }
}

impl<K: Ord, V> SortedMap<K, V> {
    /// The value under `key`.
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        match &self.repr {
            MapRepr::Vec(v) => search(v, key).ok().map(|i| &v[i].1),
            MapRepr::Tree(t) => t.get(key),
        }
    }

    /// Move the entries to a B-tree when the vector is full and `key` would be a new one.
    fn make_room_for<Q>(&mut self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        if let MapRepr::Vec(v) = &mut self.repr {
            if v.len() >= VEC_LIMIT && search(v, key).is_err() {
                let tree = std::mem::take(v).into_iter().collect();
                self.repr = MapRepr::Tree(tree);
            }
        }
    }

    /// Put `value` under `key`, returning the value it replaces.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        self.make_room_for(&key);
        match &mut self.repr {
            MapRepr::Vec(v) => match search(v, &key) {
                Ok(i) => Some(std::mem::replace(&mut v[i].1, value)),
                Err(i) => {
                    grow_for_one(v);
                    v.insert(i, (key, value));
                    None
                }
            },
            MapRepr::Tree(t) => t.insert(key, value),
        }
    }

    /// The value under `key`, first put there by `make` when there is none (a `BTreeMap`'s
    /// `entry(key).or_insert_with(make)`). `key` is built only when needed: pass a borrowed
    /// form and how to own it (`owned(key)` must borrow as `key`).
    pub fn get_or_insert_with<Q>(
        &mut self,
        key: &Q,
        owned: impl FnOnce(&Q) -> K,
        make: impl FnOnce() -> V,
    ) -> &mut V
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.make_room_for(key);
        match &mut self.repr {
            MapRepr::Vec(v) => {
                let i = match search(v, key) {
                    Ok(i) => i,
                    Err(i) => {
                        let new = owned(key);
                        debug_assert!(new.borrow().cmp(key).is_eq(), "owned(key) is not key");
                        grow_for_one(v);
                        v.insert(i, (new, make()));
                        i
                    }
                };
                &mut v[i].1
            }
            MapRepr::Tree(t) => {
                if !t.contains_key(key) {
                    t.insert(owned(key), make());
                }
                t.get_mut(key).expect("just inserted")
            }
        }
    }

    /// Remove the entry under `key`, returning its value.
    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        match &mut self.repr {
            MapRepr::Vec(v) => search(v, key).ok().map(|i| v.remove(i).1),
            MapRepr::Tree(t) => t.remove(key),
        }
    }

    /// Keep only the entries `keep` accepts.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        match &mut self.repr {
            MapRepr::Vec(v) => v.retain_mut(|(k, v)| keep(k, v)),
            MapRepr::Tree(t) => t.retain(|k, v| keep(k, v)),
        }
    }
}

/// The entries of a [`SortedMap`], in key order.
#[derive(Clone, Debug)]
pub struct Iter<'a, K, V>(IterRepr<'a, K, V>);

#[derive(Clone, Debug)]
enum IterRepr<'a, K, V> {
    Vec(std::slice::Iter<'a, (K, V)>),
    Tree(btree_map::Iter<'a, K, V>),
}

impl<'a, K, V> Iterator for Iter<'a, K, V> {
    type Item = (&'a K, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.0 {
            IterRepr::Vec(i) => i.next().map(|(k, v)| (k, v)),
            IterRepr::Tree(i) => i.next(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match &self.0 {
            IterRepr::Vec(i) => i.size_hint(),
            IterRepr::Tree(i) => i.size_hint(),
        }
    }
}

impl<K, V> DoubleEndedIterator for Iter<'_, K, V> {
    fn next_back(&mut self) -> Option<Self::Item> {
        match &mut self.0 {
            IterRepr::Vec(i) => i.next_back().map(|(k, v)| (k, v)),
            IterRepr::Tree(i) => i.next_back(),
        }
    }
}

impl<K, V> ExactSizeIterator for Iter<'_, K, V> {}

impl<K, V> std::iter::FusedIterator for Iter<'_, K, V> {}

impl<K: Ord, V> FromIterator<(K, V)> for SortedMap<K, V> {
    /// Of equal keys, the last one's value is kept (as `BTreeMap` does).
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut entries: Vec<(K, V)> = iter.into_iter().collect();
        // Stable: equal keys keep their order, and the last of each run wins.
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let mut kept: Vec<(K, V)> = Vec::with_capacity(entries.len());
        for entry in entries {
            match kept.last_mut() {
                Some(last) if last.0.cmp(&entry.0).is_eq() => *last = entry,
                _ => kept.push(entry),
            }
        }
        if kept.len() > VEC_LIMIT {
            return SortedMap {
                repr: MapRepr::Tree(kept.into_iter().collect()),
            };
        }
        kept.shrink_to_fit();
        SortedMap {
            repr: MapRepr::Vec(kept),
        }
    }
}

impl<'a, K, V> IntoIterator for &'a SortedMap<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = Iter<'a, K, V>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<K: PartialEq, V: PartialEq> PartialEq for SortedMap<K, V> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl<K: Eq, V: Eq> Eq for SortedMap<K, V> {}

impl<K: PartialOrd, V: PartialOrd> PartialOrd for SortedMap<K, V> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        self.iter().partial_cmp(other.iter())
    }
}

impl<K: Ord, V: Ord> Ord for SortedMap<K, V> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.iter().cmp(other.iter())
    }
}

impl<K: Hash, V: Hash> Hash for SortedMap<K, V> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_usize(self.len());
        for entry in self.iter() {
            entry.hash(state);
        }
    }
}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for SortedMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: Serialize, V: Serialize> Serialize for SortedMap<K, V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl<'de, K, V> Deserialize<'de> for SortedMap<K, V>
where
    K: Deserialize<'de> + Ord,
    V: Deserialize<'de>,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor<K, V>(PhantomData<(K, V)>);

        impl<'de, K, V> Visitor<'de> for MapVisitor<K, V>
        where
            K: Deserialize<'de> + Ord,
            V: Deserialize<'de>,
        {
            type Value = SortedMap<K, V>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::with_capacity(access.size_hint().unwrap_or(0).min(4096));
                while let Some(entry) = access.next_entry()? {
                    entries.push(entry);
                }
                Ok(entries.into_iter().collect())
            }
        }

        deserializer.deserialize_map(MapVisitor(PhantomData))
    }
}

/// A sorted set: a vector while small, a B-tree past [`VEC_LIMIT`] (see the module docs).
#[derive(Clone)]
pub struct SortedSet<T> {
    repr: SetRepr<T>,
}

#[derive(Clone)]
enum SetRepr<T> {
    Vec(Vec<T>),
    Tree(BTreeSet<T>),
}

impl<T> Default for SortedSet<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// Where `item` is in sorted `items`.
fn search_item<T, Q>(items: &[T], item: &Q) -> Result<usize, usize>
where
    T: Borrow<Q>,
    Q: Ord + ?Sized,
{
    items.binary_search_by(|x| x.borrow().cmp(item))
}

impl<T> SortedSet<T> {
    /// An empty set (allocates nothing).
    pub const fn new() -> Self {
        SortedSet {
            repr: SetRepr::Vec(Vec::new()),
        }
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        match &self.repr {
            SetRepr::Vec(v) => v.len(),
            SetRepr::Tree(t) => t.len(),
        }
    }

    /// Whether it has no item.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The items in order.
    pub fn iter(&self) -> SetIter<'_, T> {
        SetIter(match &self.repr {
            SetRepr::Vec(v) => SetIterRepr::Vec(v.iter()),
            SetRepr::Tree(t) => SetIterRepr::Tree(t.iter()),
        })
    }

    /// The largest item.
    pub fn last(&self) -> Option<&T> {
        self.iter().next_back()
    }
}

impl<T: Ord> SortedSet<T> {
    /// Whether `item` is in the set.
    pub fn contains<Q>(&self, item: &Q) -> bool
    where
        T: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        match &self.repr {
            SetRepr::Vec(v) => search_item(v, item).is_ok(),
            SetRepr::Tree(t) => t.contains(item),
        }
    }

    /// Move the items to a B-tree when the vector is full and `item` would be a new one.
    fn make_room_for<Q>(&mut self, item: &Q)
    where
        T: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        if let SetRepr::Vec(v) = &mut self.repr {
            if v.len() >= VEC_LIMIT && search_item(v, item).is_err() {
                let tree = std::mem::take(v).into_iter().collect();
                self.repr = SetRepr::Tree(tree);
            }
        }
    }

    /// Add `item`; false when it was there already (which is kept, as in a `BTreeSet`).
    pub fn insert(&mut self, item: T) -> bool {
        self.make_room_for(&item);
        match &mut self.repr {
            SetRepr::Vec(v) => match search_item(v, &item) {
                Ok(_) => false,
                Err(i) => {
                    grow_for_one(v);
                    v.insert(i, item);
                    true
                }
            },
            SetRepr::Tree(t) => t.insert(item),
        }
    }

    /// Add the owned form of `item` unless it is there already (no allocation then);
    /// `owned(item)` must borrow as `item`.
    pub fn insert_borrowed<Q>(&mut self, item: &Q, owned: impl FnOnce(&Q) -> T) -> bool
    where
        T: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        if self.contains(item) {
            return false;
        }
        let new = owned(item);
        debug_assert!(new.borrow().cmp(item).is_eq(), "owned(item) is not item");
        self.insert(new)
    }

    /// Keep only the items `keep` accepts.
    pub fn retain(&mut self, keep: impl FnMut(&T) -> bool) {
        match &mut self.repr {
            SetRepr::Vec(v) => v.retain(keep),
            SetRepr::Tree(t) => t.retain(keep),
        }
    }
}

/// The items of a [`SortedSet`], in order.
#[derive(Clone, Debug)]
pub struct SetIter<'a, T>(SetIterRepr<'a, T>);

#[derive(Clone, Debug)]
enum SetIterRepr<'a, T> {
    Vec(std::slice::Iter<'a, T>),
    Tree(btree_set::Iter<'a, T>),
}

impl<'a, T> Iterator for SetIter<'a, T> {
    type Item = &'a T;

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.0 {
            SetIterRepr::Vec(i) => i.next(),
            SetIterRepr::Tree(i) => i.next(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match &self.0 {
            SetIterRepr::Vec(i) => i.size_hint(),
            SetIterRepr::Tree(i) => i.size_hint(),
        }
    }
}

impl<T> DoubleEndedIterator for SetIter<'_, T> {
    fn next_back(&mut self) -> Option<Self::Item> {
        match &mut self.0 {
            SetIterRepr::Vec(i) => i.next_back(),
            SetIterRepr::Tree(i) => i.next_back(),
        }
    }
}

impl<T> ExactSizeIterator for SetIter<'_, T> {}

impl<T> std::iter::FusedIterator for SetIter<'_, T> {}

impl<T: Ord> FromIterator<T> for SortedSet<T> {
    /// Of equal items, the first is kept (as `BTreeSet::insert` does).
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        let mut items: Vec<T> = iter.into_iter().collect();
        // Stable: of equal items the first stays first, and is the one kept.
        items.sort();
        items.dedup_by(|later, earlier| (*later).cmp(earlier).is_eq());
        if items.len() > VEC_LIMIT {
            return SortedSet {
                repr: SetRepr::Tree(items.into_iter().collect()),
            };
        }
        items.shrink_to_fit();
        SortedSet {
            repr: SetRepr::Vec(items),
        }
    }
}

impl<'a, T> IntoIterator for &'a SortedSet<T> {
    type Item = &'a T;
    type IntoIter = SetIter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<T: PartialEq> PartialEq for SortedSet<T> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl<T: Eq> Eq for SortedSet<T> {}

impl<T: PartialOrd> PartialOrd for SortedSet<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        self.iter().partial_cmp(other.iter())
    }
}

impl<T: Ord> Ord for SortedSet<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.iter().cmp(other.iter())
    }
}

impl<T: Hash> Hash for SortedSet<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_usize(self.len());
        for item in self.iter() {
            item.hash(state);
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for SortedSet<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl<T: Serialize> Serialize for SortedSet<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl<'de, T> Deserialize<'de> for SortedSet<T>
where
    T: Deserialize<'de> + Ord,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Vec::<T>::deserialize(deserializer)?.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::hash_map::DefaultHasher;
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;

    use super::*;

    fn hash_of(value: &impl Hash) -> u64 {
        let mut hasher = DefaultHasher::new();
        value.hash(&mut hasher);
        hasher.finish()
    }

    proptest! {
        /// Whatever is inserted and removed, in whatever order, in a vector or past
        /// `VEC_LIMIT` (8 in tests) in a B-tree: the same answers, entries, order and JSON
        /// as the B-tree collections; read back from that JSON, or collected afresh, equal,
        /// in order and hash too, whichever form each is in.
        #[test]
        fn behaves_and_serialises_as_the_btree_collections(
            inserts in proptest::collection::vec((0u8..40, any::<u16>()), 0..60),
            removes in proptest::collection::vec(0u8..40, 0..30),
            lookups in proptest::collection::vec(0u8..40, 0..20),
        ) {
            let mut map = SortedMap::new();
            let mut btree = BTreeMap::new();
            let mut set = SortedSet::new();
            let mut bset = BTreeSet::new();
            for (k, v) in &inserts {
                let key = format!("k{k:02}");
                prop_assert_eq!(map.insert(key.clone(), *v), btree.insert(key.clone(), *v));
                prop_assert_eq!(set.insert(key.clone()), bset.insert(key));
            }
            for k in &removes {
                let key = format!("k{k:02}");
                prop_assert_eq!(map.remove(key.as_str()), btree.remove(key.as_str()));
                set.retain(|x| *x != key);
                bset.remove(key.as_str());
            }
            for k in &lookups {
                let key = format!("k{k:02}");
                prop_assert_eq!(map.get(key.as_str()), btree.get(key.as_str()));
                prop_assert_eq!(set.contains(key.as_str()), bset.contains(key.as_str()));
                let before = map.len();
                let mine = map.get_or_insert_with(key.as_str(), str::to_owned, || 7);
                *mine = mine.wrapping_add(1);
                let theirs = btree.entry(key.clone()).or_insert(7);
                *theirs = theirs.wrapping_add(1);
                prop_assert_eq!(map.len(), btree.len(), "{}", before);
                prop_assert_eq!(set.insert_borrowed(key.as_str(), str::to_owned), bset.insert(key));
            }
            prop_assert_eq!(map.len(), btree.len());
            prop_assert!(map.iter().eq(btree.iter()));
            prop_assert!(map.iter().rev().eq(btree.iter().rev()));
            prop_assert!(set.iter().eq(bset.iter()));
            prop_assert_eq!(map.first_key_value(), btree.first_key_value());
            prop_assert_eq!(set.last(), bset.last());
            let json = serde_json::to_string(&map).unwrap();
            prop_assert_eq!(&json, &serde_json::to_string(&btree).unwrap());
            let read = serde_json::from_str::<SortedMap<String, u16>>(&json).unwrap();
            prop_assert_eq!(&read, &map);
            prop_assert_eq!(read.cmp(&map), Ordering::Equal);
            prop_assert_eq!(hash_of(&read), hash_of(&map));
            let json = serde_json::to_string(&set).unwrap();
            prop_assert_eq!(&json, &serde_json::to_string(&bset).unwrap());
            let read = serde_json::from_str::<SortedSet<String>>(&json).unwrap();
            prop_assert_eq!(&read, &set);
            prop_assert_eq!(hash_of(&read), hash_of(&set));
            // Ordered as the B-tree collections order (by their entries, in turn).
            let other: BTreeMap<String, u16> = btree.iter().skip(1).map(|(k, v)| (k.clone(), *v)).collect();
            let other_map: SortedMap<String, u16> = other.clone().into_iter().collect();
            prop_assert_eq!(map.cmp(&other_map), btree.cmp(&other));
            // Collected, equal keys keep the last value, as a B-tree map does.
            let collected: SortedMap<String, u16> =
                inserts.iter().map(|(k, v)| (format!("k{k:02}"), *v)).collect();
            let expected: BTreeMap<String, u16> =
                inserts.iter().map(|(k, v)| (format!("k{k:02}"), *v)).collect();
            prop_assert!(collected.iter().eq(expected.iter()));
        }
    }

    #[test]
    fn a_small_collection_holds_only_its_entries() {
        let capacity = |map: &SortedMap<String, u64>| match &map.repr {
            MapRepr::Vec(v) => v.capacity(),
            MapRepr::Tree(_) => panic!("a B-tree"),
        };
        let mut map = SortedMap::new();
        map.insert(String::from("a"), 1u64);
        assert_eq!(capacity(&map), 1);
        map.get_or_insert_with("b", str::to_owned, || 2);
        assert_eq!(capacity(&map), 2);
        // An unsorted JSON object (written by hand) is read sorted, the last duplicate kept.
        let read: SortedMap<String, u64> = serde_json::from_str(r#"{"b":1,"a":2,"b":3}"#).unwrap();
        assert_eq!(serde_json::to_string(&read).unwrap(), r#"{"a":2,"b":3}"#);
        let mut set = SortedSet::new();
        assert!(set.insert_borrowed("x", str::to_owned));
        assert!(!set.insert_borrowed("x", |_| unreachable!("not built when present")));
        assert!(matches!(&set.repr, SetRepr::Vec(v) if v.capacity() == 1));
        // Past the limit, a B-tree: an insert no longer shifts the entries after it.
        for i in 0..=VEC_LIMIT {
            map.insert(format!("k{i:03}"), 0);
            set.insert(format!("k{i:03}"));
        }
        assert!(matches!(map.repr, MapRepr::Tree(_)));
        assert!(matches!(set.repr, SetRepr::Tree(_)));
    }
}
