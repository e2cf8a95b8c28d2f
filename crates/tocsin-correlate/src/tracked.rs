//! A map of per-key states that can record which keys changed since its changes were last
//! taken: what a state *delta* writes.
//!
//! Why: a correlate worker writes each partition's state to the changelog every few
//! seconds. Written whole, that costs what the partition holds (about a kilobyte a live
//! key: a gigabyte a write at 10^6 keys), however few keys the detections since touched. A
//! delta holds only the keys inserted, changed or removed since the write before. For the
//! delta to be complete, every change must be seen, so the map hands out mutable access
//! only through methods that record it: a key whose state was borrowed mutably counts as
//! changed, whether or not it was then changed.
//!
//! Recording starts when the whole map is marked written ([`TrackedMap::start_recording`]);
//! before that (in `tocsin run`, which writes no state) nothing is recorded and nothing is
//! spent on it. Each state carries its own flag ([`ChangeFlag`]), set the first time it is
//! borrowed mutably after the changes were taken, when its key is also copied onto a list:
//! marking again costs a branch on a state about to be read anyway, not a second hash lookup
//! or a copy, and the table's slots stay a key and a state. A removed key goes onto a list
//! of its own (the `String` moved there, not copied).

use std::collections::HashMap;

/// A state that carries the flag its [`TrackedMap`] records changes with (not written
/// with the state: `#[serde(skip)]`).
pub(crate) trait ChangeFlag {
    fn change_flag(&mut self) -> &mut bool;
}

impl<T: ChangeFlag> ChangeFlag for Box<T> {
    fn change_flag(&mut self) -> &mut bool {
        (**self).change_flag()
    }
}

/// A `HashMap<String, V>` that, once recording, records the keys changed and removed since
/// [`TrackedMap::take_changes`] or [`TrackedMap::start_recording`].
pub(crate) struct TrackedMap<V> {
    map: HashMap<String, V>,
    recording: bool,
    /// Keys inserted or borrowed mutably since the changes were taken (each once while its
    /// flag is set; a key removed since may still be here).
    changed: Vec<String>,
    /// Keys removed since the changes were taken (a key may be here and in the map again).
    removed: Vec<String>,
}

/// What changed in a [`TrackedMap`]: the keys removed, then the keys present and changed
/// with their states, each sorted by key. Applied in that order ([`TrackedMap::apply`]), they
/// turn the map as it was into the map as it is.
pub(crate) struct Changes<'a, V> {
    pub(crate) removed: Vec<String>,
    pub(crate) changed: Vec<(&'a String, &'a V)>,
}

impl<V> std::fmt::Debug for TrackedMap<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrackedMap")
            .field("entries", &self.map.len())
            .field("recording", &self.recording)
            .field("changed", &self.changed.len())
            .field("removed", &self.removed.len())
            .finish()
    }
}

impl<V> Default for TrackedMap<V> {
    fn default() -> Self {
        TrackedMap {
            map: HashMap::new(),
            recording: false,
            changed: Vec::new(),
            removed: Vec::new(),
        }
    }
}

impl<V: ChangeFlag> FromIterator<(String, V)> for TrackedMap<V> {
    /// A map holding these entries, not recording (a restored state).
    fn from_iter<I: IntoIterator<Item = (String, V)>>(entries: I) -> Self {
        TrackedMap {
            map: entries
                .into_iter()
                .map(|(k, mut value)| {
                    *value.change_flag() = false;
                    (k, value)
                })
                .collect(),
            ..TrackedMap::default()
        }
    }
}

impl<V: ChangeFlag> TrackedMap<V> {
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub(crate) fn contains_key(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    pub(crate) fn get(&self, key: &str) -> Option<&V> {
        self.map.get(key)
    }

    /// The state of `key`, to change: the key counts as changed.
    pub(crate) fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        let value = self.map.get_mut(key)?;
        if self.recording {
            let flag = value.change_flag();
            if !*flag {
                *flag = true;
                self.changed.push(key.to_owned());
            }
        }
        Some(value)
    }

    /// Put `value` under `key` (a new key, or in place of its state): the key counts as
    /// changed.
    pub(crate) fn insert(&mut self, key: String, mut value: V) {
        *value.change_flag() = self.recording;
        if !self.recording {
            self.map.insert(key, value);
            return;
        }
        // One lookup: the state it replaces tells whether the key is listed already.
        let listed = self
            .map
            .insert(key.clone(), value)
            .is_some_and(|mut earlier| *earlier.change_flag());
        if !listed {
            self.changed.push(key);
        }
    }

    /// Take `key`'s state out: the key counts as removed.
    pub(crate) fn remove(&mut self, key: &str) -> Option<V> {
        let (k, value) = self.map.remove_entry(key)?;
        if self.recording {
            self.removed.push(k);
        }
        Some(value)
    }

    /// Keep the entries `keep` says to; the others count as removed.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&String, &V) -> bool) {
        let (recording, removed) = (self.recording, &mut self.removed);
        self.map.retain(|k, v| {
            let kept = keep(k, v);
            if !kept && recording {
                removed.push(k.clone());
            }
            kept
        });
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&String, &V)> + '_ {
        self.map.iter()
    }

    pub(crate) fn keys(&self) -> impl Iterator<Item = &String> + '_ {
        self.map.keys()
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &V> + '_ {
        self.map.values()
    }

    /// Whether changes are being recorded ([`TrackedMap::start_recording`]).
    pub(crate) fn is_recording(&self) -> bool {
        self.recording
    }

    /// Whether anything changed since the changes were last taken (nothing does before
    /// recording starts).
    pub(crate) fn has_changes(&self) -> bool {
        !self.changed.is_empty() || !self.removed.is_empty()
    }

    /// What changed since the changes were last taken or recording started; `None` when
    /// not recording. Changes are recorded anew from here.
    pub(crate) fn take_changes(&mut self) -> Option<Changes<'_, V>> {
        if !self.recording {
            return None;
        }
        let mut removed = std::mem::take(&mut self.removed);
        removed.sort_unstable();
        removed.dedup();
        let mut changed_keys = std::mem::take(&mut self.changed);
        for key in &changed_keys {
            if let Some(value) = self.map.get_mut(key) {
                *value.change_flag() = false;
            }
        }
        changed_keys.sort_unstable();
        changed_keys.dedup();
        let changed = changed_keys
            .iter()
            .filter_map(|k| self.map.get_key_value(k.as_str()))
            .collect();
        Some(Changes { removed, changed })
    }

    /// The whole map was written: record the changes from here (dropping those recorded).
    pub(crate) fn start_recording(&mut self) {
        for key in std::mem::take(&mut self.changed) {
            if let Some(value) = self.map.get_mut(&key) {
                *value.change_flag() = false;
            }
        }
        self.removed.clear();
        self.recording = true;
    }

    /// Apply changes taken from another map (a delta read back): remove, then put. Nothing
    /// is recorded: the map is then as the other was when its changes were taken.
    pub(crate) fn apply(
        &mut self,
        removed: impl IntoIterator<Item = String>,
        changed: impl IntoIterator<Item = (String, V)>,
    ) {
        for key in removed {
            self.map.remove(&key);
        }
        for (key, mut value) in changed {
            *value.change_flag() = false;
            self.map.insert(key, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    /// A state: a number, and the flag.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct State(u8, bool);

    impl ChangeFlag for State {
        fn change_flag(&mut self) -> &mut bool {
            &mut self.1
        }
    }

    /// One operation on both maps: 0 insert, 1 change, 2 remove, 3 retain those not equal
    /// to the value; 4 take the changes (and apply them to the copy).
    fn operate(
        op: u8,
        key: u8,
        value: u8,
        tracked: &mut TrackedMap<State>,
        model: &mut BTreeMap<String, u8>,
        copy: &mut TrackedMap<State>,
    ) {
        let k = format!("k{key}");
        match op {
            0 => {
                tracked.insert(k.clone(), State(value, false));
                model.insert(k, value);
            }
            1 => {
                if let Some(v) = tracked.get_mut(&k) {
                    v.0 = value;
                    model.insert(k, value);
                }
            }
            2 => {
                assert_eq!(tracked.remove(&k).map(|s| s.0), model.remove(&k));
            }
            3 => {
                tracked.retain(|_, v| v.0 != value);
                model.retain(|_, v| *v != value);
            }
            _ => {
                let changes = tracked.take_changes().expect("recording");
                let changed: Vec<(String, State)> = changes
                    .changed
                    .iter()
                    .map(|(k, v)| ((*k).clone(), **v))
                    .collect();
                copy.apply(changes.removed, changed);
            }
        }
    }

    fn contents(map: &TrackedMap<State>) -> BTreeMap<String, u8> {
        map.iter().map(|(k, v)| (k.clone(), v.0)).collect()
    }

    proptest! {
        /// A copy that takes only the changes, at any points, ends equal to the map; and
        /// the changes name every key whose state differs or that is gone.
        #[test]
        fn changes_taken_at_any_points_rebuild_the_map(
            ops in proptest::collection::vec((0u8..5, 0u8..8, 0u8..4), 0..120)
        ) {
            let mut tracked = TrackedMap::default();
            tracked.start_recording();
            let mut model = BTreeMap::new();
            let mut copy = TrackedMap::default();
            for (op, key, value) in ops {
                operate(op, key, value, &mut tracked, &mut model, &mut copy);
                prop_assert_eq!(&contents(&tracked), &model);
            }
            let before = contents(&copy);
            let changes = tracked.take_changes().expect("recording");
            for (k, v) in &changes.changed {
                prop_assert!(model.get(*k) == Some(&v.0));
            }
            for (k, v) in &model {
                if before.get(k) != Some(v) {
                    prop_assert!(changes.changed.iter().any(|(c, _)| *c == k), "{} missed", k);
                }
            }
            for k in before.keys() {
                if !model.contains_key(k) {
                    prop_assert!(changes.removed.contains(k), "{} not removed", k);
                }
            }
            let changed: Vec<(String, State)> =
                changes.changed.iter().map(|(k, v)| ((*k).clone(), **v)).collect();
            copy.apply(changes.removed, changed);
            prop_assert_eq!(contents(&copy), model);
            prop_assert!(!tracked.has_changes());
        }
    }

    #[test]
    fn nothing_is_recorded_before_recording_starts() {
        let mut map = TrackedMap::default();
        map.insert("a".to_owned(), State(1, false));
        map.insert("b".to_owned(), State(2, false));
        *map.get_mut("a").unwrap() = State(5, false);
        map.remove("b");
        assert!(!map.has_changes());
        assert!(map.take_changes().is_none(), "no base to take changes from");
        map.start_recording();
        let changes = map.take_changes().unwrap();
        assert!(changes.changed.is_empty() && changes.removed.is_empty());
        // A key borrowed after it counts, once.
        map.get_mut("a").unwrap().0 = 3;
        map.get_mut("a").unwrap().0 = 4;
        let changes = map.take_changes().unwrap();
        assert_eq!(changes.changed, [(&"a".to_owned(), &State(4, false))]);
    }
}
