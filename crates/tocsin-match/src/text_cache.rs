//! The unescaped texts of the current event's values, kept while the event is matched.
//!
//! Why: a value written with escapes (every Windows path, every script block with a line
//! break) has no text of its own in the event's bytes; each glob, regex, class run, field
//! reference, CIDR, time part or short compared literal of it, and each indicator lookup,
//! unescaped it again. On process creation one `CommandLine` is read
//! by dozens of candidate rules, and on a PowerShell module event each regex of the
//! obfuscation rules unescaped the same 18 KB payload anew. Here a value's text is made
//! once per event and handed out again while it stays among the last few made.
//!
//! Identity: a value is known by where its raw bytes lie (start and length). Within one
//! event two values at the same place are the same bytes, so they have the same text;
//! the event's buffer is reused for the next one, so the cache is cleared before each
//! event ([`TextCache::clear`]). Values without escapes are their own text and are not
//! copied.

use tocsin_core::{FieldValue, ValueKind};

/// How many texts are kept: rules read a few escaped fields of one event in turn (`Image`,
/// `ParentImage`, `CommandLine`), and a slot per field they alternate between keeps each.
const SLOTS: usize = 4;

/// Per-thread texts of escaped values of the current event (see the module docs).
#[derive(Default)]
pub(crate) struct TextCache {
    /// Start and length of the raw bytes of the value each slot holds the text of.
    held: [Option<(usize, usize)>; SLOTS],
    texts: [String; SLOTS],
    /// The slot the next new text takes (the oldest).
    next: usize,
}

impl TextCache {
    /// Forget every text: the next event's values may lie where this one's did. The slots
    /// are taken in the same order for each event, so that events alike put texts of the
    /// same lengths into the same slots, whose buffers have grown to hold them.
    #[inline]
    pub(crate) fn clear(&mut self) {
        self.held = [None; SLOTS];
        self.next = 0;
    }

    /// The value's text, as [`FieldValue::text`] gives it: made when the value is not among
    /// those held, otherwise the one made earlier for this event.
    pub(crate) fn text<'s, 'a: 's>(&'s mut self, value: FieldValue<'a>) -> Option<&'s str> {
        if value.kind() != (ValueKind::String { escaped: true }) {
            // Its own bytes: `text` writes nothing into the buffer.
            return value.text(&mut self.texts[self.next]);
        }
        let raw = value.raw();
        let id = Some((raw.as_ptr() as usize, raw.len()));
        if let Some(slot) = self.held.iter().position(|&held| held == id) {
            return Some(&self.texts[slot]);
        }
        let slot = self.next;
        self.next = (slot + 1) % SLOTS;
        self.held[slot] = id;
        value.text(&mut self.texts[slot])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tocsin_core::{Event, EventIndex};

    #[test]
    fn texts_are_the_values_texts_and_follow_the_event() {
        let mut cache = TextCache::default();
        let mut index = EventIndex::new();
        let mut buf =
            br#"{"a":"C:\\x","b":"C:\\y","c":"plain","d":5,"e":"D:\\z","f":"E:\\w","g":"F:\\v"}"#
                .to_vec();
        {
            let event = Event::parse(&buf, &mut index).unwrap();
            // More escaped values than slots, read twice in turn: each text is right.
            for _ in 0..2 {
                for (name, want) in [
                    ("a", r"C:\x"),
                    ("b", r"C:\y"),
                    ("c", "plain"),
                    ("d", "5"),
                    ("e", r"D:\z"),
                    ("a", r"C:\x"),
                    ("f", r"E:\w"),
                    ("g", r"F:\v"),
                    ("b", r"C:\y"),
                ] {
                    let value = event.get_flat(name).unwrap();
                    assert_eq!(cache.text(value), Some(want), "{name}");
                }
            }
            assert_eq!(cache.text(event.get_flat("a").unwrap()), Some(r"C:\x"));
        }
        // The next event in the same buffer, its values where the first one's were.
        buf[6] = b'Q';
        cache.clear();
        let event = Event::parse(&buf, &mut index).unwrap();
        assert_eq!(cache.text(event.get_flat("a").unwrap()), Some(r"Q:\x"));
    }
}
