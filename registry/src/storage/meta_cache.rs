//! The read path's metadata in memory: what a tag points at, whether a
//! repository holds a manifest or a blob, a blob's size, a repository's tag
//! list. These are small storage reads (a link file, a `head`, a listing),
//! each a round trip to the blocking pool or to S3, and a manifest GET made
//! two or three of them before it could answer.
//!
//! Coherence, the contract `docs/storage.md` documents:
//! * this process's own writes invalidate the entries they touch before they
//!   return (keyed by the storage key written, so no write path can forget
//!   one), and an `epoch` makes sure a read that started before such a write
//!   cannot put its older answer back afterwards;
//! * another replica's writes, and `registry gc` run as its own process, are
//!   seen after at most `ttl`: every entry is dropped that old;
//! * the write path's own checks (a push's references, GC's rescue pass)
//!   never read through this cache (`Storage::cached` is for serving only).
//!
//! Memory is bounded by `max_bytes` (each entry weighs its key and value
//! plus a fixed overhead) and `max_entries`; `quick_cache` evicts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::path::Path;

use crate::oci::Digest;

/// What an entry holds.
#[derive(Clone)]
pub enum Value {
    /// A link file's target, or None when the link does not exist.
    Link(Option<Digest>),
    /// An object's size, or None when it does not exist.
    Size(Option<u64>),
    /// A repository's tags (sorted), or None for no such repository.
    Tags(Option<Arc<Vec<String>>>),
}

#[derive(Clone)]
struct Entry {
    at: Instant,
    value: Value,
}

/// Bookkeeping per entry beyond key and value (hash table slot, clock bits,
/// the `Instant`): an estimate, so that `max_bytes` means roughly memory.
const ENTRY_OVERHEAD: u64 = 96;

#[derive(Clone)]
struct Weigh;

impl quick_cache::Weighter<String, Entry> for Weigh {
    fn weight(&self, key: &String, entry: &Entry) -> u64 {
        let value = match &entry.value {
            Value::Link(_) | Value::Size(_) => 0,
            Value::Tags(Some(tags)) => tags.iter().map(|t| t.len() as u64 + 24).sum(),
            Value::Tags(None) => 0,
        };
        ENTRY_OVERHEAD + key.len() as u64 + value
    }
}

#[derive(Clone, Default)]
struct CountEvictions(Arc<AtomicU64>);

impl quick_cache::Lifecycle<String, Entry> for CountEvictions {
    type RequestState = ();

    fn on_evict(&self, _: &mut (), _: String, _: Entry) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

type Table =
    quick_cache::sync::Cache<String, Entry, Weigh, quick_cache::DefaultHashBuilder, CountEvictions>;

/// Counters for the metrics (`registry_storage_cache_*`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
    pub entries: u64,
    pub bytes: u64,
}

pub struct MetaCache {
    ttl: Duration,
    table: Option<Table>,
    evictions: Arc<AtomicU64>,
    hits: AtomicU64,
    misses: AtomicU64,
    /// Bumped by every invalidation: a read fills the cache only if no
    /// write happened since it began.
    epoch: AtomicU64,
    /// One storage read per key at a time (striped: keys that share a
    /// stripe wait for each other's misses, which are short).
    turns: Vec<tokio::sync::Mutex<()>>,
    stripe: std::collections::hash_map::RandomState,
}

/// Stripes of `MetaCache::turns`.
const TURNS: usize = 256;

/// Where a lookup that missed may store what it then read.
pub struct Ticket(u64);

/// The key of a repository's tag list (`repository` is its directory,
/// `layout::repository`): never a storage key (those have no `#`), so it
/// cannot collide with one.
pub fn tags_key(repository: &Path) -> String {
    format!("#tags:{repository}")
}

impl MetaCache {
    /// `ttl` zero turns the cache off: every lookup misses and nothing is kept.
    pub fn new(ttl: Duration, max_entries: usize, max_bytes: u64) -> MetaCache {
        let evictions = Arc::new(AtomicU64::new(0));
        let table = (!ttl.is_zero()).then(|| {
            let options = quick_cache::OptionsBuilder::new()
                .estimated_items_capacity(max_entries.max(1))
                .weight_capacity(max_bytes.min(max_entries.max(1) as u64 * ENTRY_OVERHEAD))
                .build()
                .expect("valid cache options");
            Table::with_options(
                options,
                Weigh,
                quick_cache::DefaultHashBuilder::default(),
                CountEvictions(evictions.clone()),
            )
        });
        MetaCache {
            ttl,
            table,
            evictions,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            epoch: AtomicU64::new(0),
            turns: (0..TURNS).map(|_| tokio::sync::Mutex::new(())).collect(),
            stripe: Default::default(),
        }
    }

    /// Waits until no other lookup of `key` is reading storage; None when
    /// the cache is off (nothing would be shared).
    pub async fn turn(&self, key: &str) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        self.table.as_ref()?;
        use std::hash::BuildHasher;
        let stripe = self.stripe.hash_one(key) as usize % TURNS;
        Some(self.turns[stripe].lock().await)
    }

    pub fn disabled() -> MetaCache {
        MetaCache::new(Duration::ZERO, 1, 1)
    }

    /// The fresh entry for `key`, or a ticket to fill it after reading
    /// storage.
    pub fn get(&self, key: &str) -> Result<Value, Ticket> {
        let ticket = Ticket(self.epoch.load(Ordering::Acquire));
        let Some(table) = &self.table else {
            return Err(ticket);
        };
        match table.get(key) {
            Some(e) if e.at.elapsed() < self.ttl => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Ok(e.value)
            }
            _ => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                Err(ticket)
            }
        }
    }

    /// Stores what a lookup read, unless a write happened meanwhile (the
    /// value may predate it).
    pub fn fill(&self, ticket: Ticket, key: &str, value: Value) {
        let Some(table) = &self.table else {
            return;
        };
        // The timestamp is taken before the check, so an entry never
        // outlives `ttl` counted from a moment its value was current.
        let at = Instant::now();
        if self.epoch.load(Ordering::Acquire) != ticket.0 {
            return;
        }
        table.insert(key.to_owned(), Entry { at, value });
    }

    /// Forgets `key` (a storage key this process wrote or deleted) and the
    /// tag list of the repository it belongs to (any write there may be a
    /// tag's, or the one that makes the repository exist).
    pub fn invalidate(&self, key: &Path) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        let Some(table) = &self.table else {
            return;
        };
        table.remove(key.as_ref());
        if let Some(repository) = repository_of(key) {
            table.remove(tags_key(&repository).as_str());
        }
    }

    /// Forgets everything: after GC deleted what it found unreferenced.
    pub fn clear(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        if let Some(table) = &self.table {
            table.clear();
        }
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            entries: self.table.as_ref().map_or(0, |t| t.len() as u64),
            bytes: self.table.as_ref().map_or(0, |t| t.weight()),
        }
    }
}

/// `.../repositories/<name>` for a key below it: name components never
/// start with `_`, so the first that does (`_manifests`, `_layers`,
/// `_uploads`) ends the name.
fn repository_of(key: &Path) -> Option<Path> {
    let parts: Vec<_> = key.parts().collect();
    let root = parts.iter().position(|p| p.as_ref() == "repositories")?;
    let end = root
        + 1
        + parts[root + 1..]
            .iter()
            .position(|p| p.as_ref().starts_with('_'))?;
    (end > root + 1).then(|| Path::from_iter(parts[..end].iter().cloned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Digest {
        Digest::sha256_of(s.as_bytes())
    }

    #[test]
    fn a_fill_that_raced_a_write_is_dropped() {
        let c = MetaCache::new(Duration::from_secs(60), 100, 1 << 20);
        let key = "repositories/a/_manifests/tags/v1/current/link";
        let Err(ticket) = c.get(key) else {
            panic!("empty cache hit")
        };
        c.invalidate(&Path::from(key));
        c.fill(ticket, key, Value::Link(Some(d("old"))));
        assert!(c.get(key).is_err(), "stale read stored after a write");
        let Err(ticket) = c.get(key) else { panic!() };
        c.fill(ticket, key, Value::Link(Some(d("new"))));
        assert!(matches!(c.get(key), Ok(Value::Link(Some(x))) if x == d("new")));
    }

    #[test]
    fn a_write_in_a_repository_drops_its_tag_list() {
        let c = MetaCache::new(Duration::from_secs(60), 100, 1 << 20);
        let list = tags_key(&Path::from("v2/repositories/a/b"));
        let fill = || {
            if let Err(t) = c.get(&list) {
                c.fill(t, &list, Value::Tags(Some(Arc::new(vec!["v1".into()]))));
            }
            assert!(c.get(&list).is_ok());
        };
        fill();
        c.invalidate(&Path::from(
            "v2/repositories/a/_manifests/tags/v2/current/link",
        ));
        assert!(
            c.get(&list).is_ok(),
            "another repository's write keeps the list"
        );
        for key in [
            "v2/repositories/a/b/_manifests/tags/v2/current/link",
            "v2/repositories/a/b/_layers/sha256/x/link",
        ] {
            fill();
            c.invalidate(&Path::from(key));
            assert!(c.get(&list).is_err(), "{key} kept the tag list");
        }
    }

    #[test]
    fn entries_expire_after_the_ttl_and_ttl_zero_keeps_nothing() {
        let c = MetaCache::new(Duration::from_millis(20), 100, 1 << 20);
        let Err(t) = c.get("k") else { panic!() };
        c.fill(t, "k", Value::Size(Some(5)));
        assert!(c.get("k").is_ok());
        std::thread::sleep(Duration::from_millis(30));
        assert!(c.get("k").is_err());
        let off = MetaCache::disabled();
        let Err(t) = off.get("k") else { panic!() };
        off.fill(t, "k", Value::Size(Some(5)));
        assert!(off.get("k").is_err());
    }

    #[test]
    fn memory_stays_within_max_bytes_and_evictions_are_counted() {
        let max_bytes = 64 << 10;
        let c = MetaCache::new(Duration::from_secs(60), 100_000, max_bytes);
        for i in 0..10_000 {
            let key = format!("repositories/r/_layers/sha256/{i:064}/link");
            let Err(t) = c.get(&key) else { panic!() };
            c.fill(t, &key, Value::Link(None));
        }
        let s = c.stats();
        assert!(s.bytes <= max_bytes, "{s:?}");
        assert!(s.evictions > 0 && s.entries < 10_000, "{s:?}");
        assert_eq!(s.misses, 10_000);
    }
}
