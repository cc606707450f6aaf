//! A map from byte keys to values for large states (an aggregation's groups, a table's
//! rows): every key lives in one byte arena, a hash table of slot numbers finds them, and
//! each slot holds its value. An entry costs its key's bytes plus a few words, with no
//! allocation per key; removed entries free their slot for the next one, and the arena is
//! compacted once half of it is dead keys. Entry point: [`ArenaMap`].

use hashbrown::HashTable;
use std::hash::BuildHasher;

/// Where a state key sits in the arena.
#[derive(Debug, Clone, Copy)]
struct Span {
    offset: usize,
    len: u32,
}

/// Values by byte key (see the module header).
pub struct ArenaMap<V> {
    table: HashTable<u32>,
    hasher: foldhash::fast::RandomState,
    arena: Vec<u8>,
    spans: Vec<Span>,
    slots: Vec<Option<V>>,
    free: Vec<u32>,
    /// Arena bytes of removed keys.
    dead_bytes: usize,
}

/// Below this many dead bytes the arena is never compacted.
const COMPACT_FROM: usize = 1 << 20;

impl<V> Default for ArenaMap<V> {
    fn default() -> Self {
        Self::with_hasher(foldhash::fast::RandomState::default())
    }
}

impl<V> std::fmt::Debug for ArenaMap<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArenaMap")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl<V> ArenaMap<V> {
    /// A map hashing keys with `hasher`: maps that share one can be given a key's hash
    /// computed once (see [`ArenaMap::slot_or_insert_hashed`]).
    pub fn with_hasher(hasher: foldhash::fast::RandomState) -> Self {
        Self {
            table: HashTable::new(),
            hasher,
            arena: Vec::new(),
            spans: Vec::new(),
            slots: Vec::new(),
            free: Vec::new(),
            dead_bytes: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    fn key_at<'a>(arena: &'a [u8], spans: &[Span], slot: u32) -> &'a [u8] {
        let span = spans[slot as usize];
        &arena[span.offset..span.offset + span.len as usize]
    }

    /// The slot of a key.
    pub fn slot(&self, key: &[u8]) -> Option<u32> {
        let hash = self.hasher.hash_one(key);
        self.table
            .find(hash, |&slot| {
                Self::key_at(&self.arena, &self.spans, slot) == key
            })
            .copied()
    }

    pub fn contains_key(&self, key: &[u8]) -> bool {
        self.slot(key).is_some()
    }

    pub fn get(&self, key: &[u8]) -> Option<&V> {
        let slot = self.slot(key)?;
        self.slots[slot as usize].as_ref()
    }

    pub fn get_mut(&mut self, key: &[u8]) -> Option<&mut V> {
        let slot = self.slot(key)?;
        self.slots[slot as usize].as_mut()
    }

    /// The value in a slot (`None` for a free slot).
    pub fn value_at(&mut self, slot: u32) -> Option<&mut V> {
        self.slots.get_mut(slot as usize)?.as_mut()
    }

    /// The value in a slot and its key (`None` for a free slot).
    pub fn at_slot(&mut self, slot: u32) -> Option<(&[u8], &mut V)> {
        let value = self.slots.get_mut(slot as usize)?.as_mut()?;
        Some((Self::key_at(&self.arena, &self.spans, slot), value))
    }

    /// The key and value in a slot (`None` for a free slot).
    pub fn entry_at_slot(&self, slot: u32) -> Option<(&[u8], &V)> {
        let value = self.slots.get(slot as usize)?.as_ref()?;
        Some((Self::key_at(&self.arena, &self.spans, slot), value))
    }

    /// The key in a slot (`None` for a free slot).
    pub fn key_at_slot(&self, slot: u32) -> Option<&[u8]> {
        self.slots.get(slot as usize)?.as_ref()?;
        Some(Self::key_at(&self.arena, &self.spans, slot))
    }

    /// The slot of a key, adding it with the value `make` answers when new (the key is
    /// hashed once).
    pub fn slot_or_insert_with(&mut self, key: &[u8], make: impl FnOnce() -> V) -> u32 {
        let hash = self.hasher.hash_one(key);
        self.slot_or_insert_hashed(hash, key, make)
    }

    /// [`ArenaMap::slot_or_insert_with`] for a key whose hash is known: `hash` must be the
    /// map's hasher's hash of `key`.
    pub fn slot_or_insert_hashed(
        &mut self,
        hash: u64,
        key: &[u8],
        make: impl FnOnce() -> V,
    ) -> u32 {
        let (arena, spans) = (&self.arena, &self.spans);
        if let Some(&slot) = self
            .table
            .find(hash, |&slot| Self::key_at(arena, spans, slot) == key)
        {
            return slot;
        }
        self.insert_new(hash, key, make())
    }

    /// Sets a key's value (adding the key when new); answers its slot.
    pub fn insert(&mut self, key: &[u8], value: V) -> u32 {
        if let Some(slot) = self.slot(key) {
            self.slots[slot as usize] = Some(value);
            return slot;
        }
        let hash = self.hasher.hash_one(key);
        self.insert_new(hash, key, value)
    }

    /// Adds a key known to be absent, with its hash.
    fn insert_new(&mut self, hash: u64, key: &[u8], value: V) -> u32 {
        let span = Span {
            offset: self.arena.len(),
            len: u32::try_from(key.len()).expect("a key is far below 4 GiB"),
        };
        self.arena.extend_from_slice(key);
        let slot = match self.free.pop() {
            Some(slot) => {
                self.spans[slot as usize] = span;
                self.slots[slot as usize] = Some(value);
                slot
            }
            None => {
                self.spans.push(span);
                self.slots.push(Some(value));
                u32::try_from(self.slots.len() - 1).expect("fewer than 4 billion entries")
            }
        };
        let (arena, spans, hasher) = (&self.arena, &self.spans, &self.hasher);
        self.table.insert_unique(hash, slot, |&s| {
            hasher.hash_one(Self::key_at(arena, spans, s))
        });
        slot
    }

    pub fn remove(&mut self, key: &[u8]) -> Option<V> {
        let hash = self.hasher.hash_one(key);
        let (arena, spans) = (&self.arena, &self.spans);
        let entry = self
            .table
            .find_entry(hash, |&slot| Self::key_at(arena, spans, slot) == key)
            .ok()?;
        let (slot, _) = entry.remove();
        let value = self.slots[slot as usize].take();
        self.free.push(slot);
        self.dead_bytes += key.len();
        if self.dead_bytes >= COMPACT_FROM && self.dead_bytes * 2 >= self.arena.len() {
            self.compact();
        }
        value
    }

    /// Copies the live keys into a new arena.
    fn compact(&mut self) {
        let mut arena = Vec::with_capacity(self.arena.len() - self.dead_bytes);
        for (span, value) in self.spans.iter_mut().zip(&self.slots) {
            if value.is_none() {
                *span = Span { offset: 0, len: 0 };
                continue;
            }
            let from = span.offset;
            span.offset = arena.len();
            arena.extend_from_slice(&self.arena[from..from + span.len as usize]);
        }
        self.arena = arena;
        self.dead_bytes = 0;
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&[u8], &mut V)> {
        let (arena, spans) = (&self.arena, &self.spans);
        self.slots
            .iter_mut()
            .enumerate()
            .filter_map(move |(slot, value)| {
                let value = value.as_mut()?;
                Some((Self::key_at(arena, spans, slot as u32), value))
            })
    }

    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &V)> {
        self.slots.iter().enumerate().filter_map(|(slot, value)| {
            Some((
                Self::key_at(&self.arena, &self.spans, slot as u32),
                value.as_ref()?,
            ))
        })
    }

    /// The slots that hold a value.
    pub fn slots(&self) -> impl Iterator<Item = u32> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, value)| value.is_some())
            .map(|(slot, _)| slot as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_found_by_key_and_slots_are_reused_after_removal() {
        let mut store = ArenaMap::<i64>::default();
        let a = store.insert(b"a", 1);
        let b = store.insert(b"bb", 2);
        assert_eq!((store.len(), a, b), (2, 0, 1));
        assert_eq!(store.get_mut(b"bb").copied(), Some(2));
        assert!(store.get_mut(b"b").is_none());
        assert_eq!(store.remove(b"a"), Some(1));
        assert!(store.remove(b"a").is_none());
        assert_eq!(store.insert(b"c", 3), a, "the free slot is reused");
        let mut seen: Vec<(Vec<u8>, i64)> =
            store.iter_mut().map(|(k, g)| (k.to_vec(), *g)).collect();
        seen.sort();
        assert_eq!(seen, [(b"bb".to_vec(), 2), (b"c".to_vec(), 3)]);
    }

    #[test]
    fn the_arena_is_compacted_once_half_of_it_is_dead_keys() {
        let mut store = ArenaMap::<i64>::default();
        let key = |i: u32| {
            let mut key = i.to_be_bytes().to_vec();
            key.resize(64, b'x');
            key
        };
        for i in 0..40_000 {
            store.insert(&key(i), i64::from(i));
        }
        for i in 0..30_000 {
            assert!(store.remove(&key(i)).is_some());
        }
        assert!(store.arena.len() <= 20_000 * 64, "compacted");
        for i in 30_000..40_000 {
            assert_eq!(store.get_mut(&key(i)).copied(), Some(i64::from(i)));
        }
        assert_eq!(store.iter().count(), 10_000);
    }
}
