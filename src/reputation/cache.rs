//! The lookup cache shared by all sessions: bounded (least recently used goes first), answers
//! kept for their TTL clamped to [min, max] (negative answers too, with their own TTL), and
//! concurrent misses for one key sharing one lookup. The clock is passed in so tests control
//! time.

use std::collections::HashMap;
use std::future::Future;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;

/// Where the cache reads the time.
pub trait Clock: Send + Sync {
    fn now(&self) -> Instant;
}

/// The real clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// TTL bounds. postscreen clamps DNSBL TTLs to 60 s .. 1 h: a list's 5-second TTL would
/// otherwise make every message query again, and a day-long TTL would keep a delisted
/// address listed.
#[derive(Debug, Clone, Copy)]
pub struct TtlBounds {
    pub min: Duration,
    pub max: Duration,
}

impl Default for TtlBounds {
    fn default() -> Self {
        TtlBounds {
            min: Duration::from_secs(60),
            max: Duration::from_secs(3600),
        }
    }
}

struct Entry<V> {
    value: V,
    expires: Instant,
}

type InFlight<V, E> = Arc<OnceCell<Result<V, E>>>;

struct Inner<V, E> {
    entries: lru::LruCache<String, Entry<V>>,
    in_flight: HashMap<String, InFlight<V, E>>,
}

/// One caller's share of an in-flight lookup; see [`Cache::get_or_fetch`].
struct InFlightGuard<'c, V: Clone, E: Clone> {
    cache: &'c Cache<V, E>,
    key: &'c str,
    cell: Option<InFlight<V, E>>,
}

impl<V: Clone, E: Clone> Drop for InFlightGuard<'_, V, E> {
    fn drop(&mut self) {
        let mut inner = self.cache.lock();
        // Our reference goes under the lock, so the count below is exact: 1 means only the
        // map holds the cell, and nobody else is waiting on it.
        let ours = self.cell.take().expect("dropped once");
        let last = inner
            .in_flight
            .get(self.key)
            .is_some_and(|c| Arc::ptr_eq(c, &ours));
        drop(ours);
        if last
            && inner
                .in_flight
                .get(self.key)
                .is_some_and(|c| Arc::strong_count(c) == 1)
        {
            inner.in_flight.remove(self.key);
        }
    }
}

pub struct Cache<V, E> {
    inner: Mutex<Inner<V, E>>,
    ttl: TtlBounds,
    clock: Arc<dyn Clock>,
}

impl<V: Clone, E: Clone> Cache<V, E> {
    pub fn new(capacity: NonZeroUsize, ttl: TtlBounds, clock: Arc<dyn Clock>) -> Self {
        Cache {
            inner: Mutex::new(Inner {
                entries: lru::LruCache::new(capacity),
                in_flight: HashMap::new(),
            }),
            ttl,
            clock,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<V, E>> {
        // A panic while holding the lock leaves plain data behind; keep serving.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached value if it has not expired.
    pub fn get(&self, key: &str) -> Option<V> {
        let now = self.clock.now();
        let mut inner = self.lock();
        match inner.entries.get(key) {
            Some(e) if e.expires > now => Some(e.value.clone()),
            Some(_) => {
                inner.entries.pop(key);
                None
            }
            None => None,
        }
    }

    /// The cached value, or the result of `fetch` (which returns a value and its TTL). While
    /// one fetch for a key runs, other callers for that key wait for it instead of querying
    /// again. Errors are shared with the waiters but not cached.
    pub async fn get_or_fetch<F, Fut>(&self, key: &str, fetch: F) -> Result<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(V, Duration), E>>,
    {
        if let Some(v) = self.get(key) {
            return Ok(v);
        }
        let cell = self
            .lock()
            .in_flight
            .entry(key.to_string())
            .or_insert_with(|| Arc::new(OnceCell::new()))
            .clone();
        // Whether this call finishes or is cancelled (a lookup past the message's budget is
        // dropped), the last caller out removes the key from `in_flight`: keys that are never
        // asked again must not pile up there while a server does not answer.
        let guard = InFlightGuard {
            cache: self,
            key,
            cell: Some(cell),
        };
        let cell = guard.cell.as_ref().expect("set above");
        // The first caller runs its fetch; the others wait for it. If that caller is
        // cancelled, tokio's OnceCell lets one of the waiters run its own fetch instead.
        let result = cell
            .get_or_init(|| async {
                match fetch().await {
                    Ok((v, ttl)) => {
                        self.insert(key, v.clone(), ttl);
                        Ok(v)
                    }
                    Err(e) => Err(e),
                }
            })
            .await
            .clone();
        drop(guard);
        result
    }

    /// Keys with a lookup in flight (for tests).
    pub fn in_flight(&self) -> usize {
        self.lock().in_flight.len()
    }

    fn insert(&self, key: &str, value: V, ttl: Duration) {
        let ttl = ttl.clamp(self.ttl.min, self.ttl.max);
        let now = self.clock.now();
        let expires = now.checked_add(ttl).unwrap_or(now + self.ttl.min);
        self.lock()
            .entries
            .put(key.to_string(), Entry { value, expires });
    }

    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct TestClock(Mutex<Instant>);

    impl TestClock {
        fn advance(&self, d: Duration) {
            *self.0.lock().unwrap() += d;
        }
    }

    impl Clock for TestClock {
        fn now(&self) -> Instant {
            *self.0.lock().unwrap()
        }
    }

    fn cache(cap: usize) -> (Cache<String, String>, Arc<TestClock>) {
        let clock = Arc::new(TestClock(Mutex::new(Instant::now())));
        let c = Cache::new(
            NonZeroUsize::new(cap).unwrap(),
            TtlBounds::default(),
            clock.clone(),
        );
        (c, clock)
    }

    #[tokio::test]
    async fn ttls_are_clamped_and_honoured() {
        let (c, clock) = cache(10);
        let fetches = AtomicUsize::new(0);
        let fetch = |ttl: u64| {
            fetches.fetch_add(1, Ordering::SeqCst);
            async move { Ok::<_, String>(("127.0.0.2".to_string(), Duration::from_secs(ttl))) }
        };
        // A 5 s TTL is kept for the 60 s minimum.
        c.get_or_fetch("a", || fetch(5)).await.unwrap();
        clock.advance(Duration::from_secs(59));
        c.get_or_fetch("a", || fetch(5)).await.unwrap();
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        clock.advance(Duration::from_secs(2));
        c.get_or_fetch("a", || fetch(5)).await.unwrap();
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
        // A day-long TTL is cut to the one-hour maximum.
        c.get_or_fetch("b", || fetch(86_400)).await.unwrap();
        clock.advance(Duration::from_secs(3601));
        assert_eq!(c.get("b"), None);
    }

    #[tokio::test]
    async fn negative_answers_are_cached_and_errors_are_not() {
        let (c, _clock) = cache(10);
        let n = AtomicUsize::new(0);
        let nx = || {
            n.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, String>((String::new(), Duration::from_secs(300))) }
        };
        c.get_or_fetch("nx", nx).await.unwrap();
        c.get_or_fetch("nx", nx).await.unwrap();
        assert_eq!(n.load(Ordering::SeqCst), 1);
        let failing = || {
            n.fetch_add(1, Ordering::SeqCst);
            async { Err::<(String, Duration), _>("SERVFAIL".to_string()) }
        };
        assert!(c.get_or_fetch("err", failing).await.is_err());
        assert!(c.get_or_fetch("err", failing).await.is_err());
        assert_eq!(n.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn the_cache_is_bounded() {
        let (c, _clock) = cache(2);
        for k in ["a", "b", "c"] {
            c.get_or_fetch(k, || async {
                Ok::<_, String>((k.to_string(), Duration::from_secs(600)))
            })
            .await
            .unwrap();
        }
        assert_eq!(c.len(), 2);
        assert_eq!(c.get("a"), None);
        assert_eq!(c.get("c").as_deref(), Some("c"));
    }

    #[tokio::test(start_paused = true)]
    async fn cancelled_lookups_leave_nothing_in_flight() {
        let (c, _clock) = cache(10);
        for i in 0..100 {
            let key = format!("never-answered-{i}");
            let stuck = c.get_or_fetch(&key, || async {
                std::future::pending::<Result<(String, Duration), String>>().await
            });
            assert!(
                tokio::time::timeout(Duration::from_millis(10), stuck)
                    .await
                    .is_err()
            );
        }
        assert_eq!(c.in_flight(), 0);
        assert_eq!(c.len(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_misses_share_one_lookup() {
        let (c, _clock) = cache(10);
        let c = Arc::new(c);
        let fetches = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (c, fetches) = (c.clone(), fetches.clone());
            tasks.push(tokio::spawn(async move {
                c.get_or_fetch("same", || async move {
                    fetches.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok::<_, String>(("127.0.0.2".to_string(), Duration::from_secs(600)))
                })
                .await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap(), "127.0.0.2");
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        assert_eq!(c.in_flight(), 0);
    }
}
