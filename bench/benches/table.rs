//! Which shared map for the connection table: lookups of 5-tuple keys in DashMap with ahash (what
//! xlvs uses), DashMap with std's SipHash, and one `RwLock<HashMap>` with ahash; alone and with a
//! second thread doing the same lookups at the same time (two workers contending).

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use criterion::{Criterion, Throughput, black_box, criterion_group, criterion_main};
use dashmap::DashMap;

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    src: u32,
    dst: u32,
    sport: u16,
    dport: u16,
    proto: u8,
}

const N: u32 = 100_000;

fn key(i: u32) -> Key {
    Key {
        src: 0x0b00_0000 | i,
        dst: 0xc000_0264,
        sport: (i % 50_000) as u16 + 10_000,
        dport: 80,
        proto: 6,
    }
}

trait Table: Send + Sync + 'static {
    fn get(&self, k: &Key) -> Option<u64>;
}

impl<S: BuildHasher + Clone + Send + Sync + 'static> Table for DashMap<Key, u64, S> {
    fn get(&self, k: &Key) -> Option<u64> {
        DashMap::get(self, k).map(|v| *v)
    }
}

impl Table for RwLock<HashMap<Key, u64, ahash::RandomState>> {
    fn get(&self, k: &Key) -> Option<u64> {
        self.read().unwrap().get(k).copied()
    }
}

fn bench_one<T: Table>(c: &mut Criterion, name: &str, t: Arc<T>) {
    let mut g = c.benchmark_group("conn_table");
    g.throughput(Throughput::Elements(1));
    let mut i = 0u32;
    g.bench_function(format!("{name}/alone"), |b| {
        b.iter(|| {
            i = (i + 7919) % N;
            black_box(t.get(&key(i)))
        })
    });
    let stop = Arc::new(AtomicBool::new(false));
    let (t2, s2) = (t.clone(), stop.clone());
    let other = std::thread::spawn(move || {
        let mut j = 1u32;
        while !s2.load(Ordering::Relaxed) {
            j = (j + 104_729) % N;
            black_box(t2.get(&key(j)));
        }
    });
    g.bench_function(format!("{name}/contended"), |b| {
        b.iter(|| {
            i = (i + 7919) % N;
            black_box(t.get(&key(i)))
        })
    });
    stop.store(true, Ordering::Relaxed);
    other.join().unwrap();
    g.finish();
}

fn tables(c: &mut Criterion) {
    let a: DashMap<Key, u64, ahash::RandomState> = DashMap::with_hasher(ahash::RandomState::new());
    let s: DashMap<Key, u64> = DashMap::new();
    let mut h: HashMap<Key, u64, ahash::RandomState> =
        HashMap::with_hasher(ahash::RandomState::new());
    for i in 0..N {
        a.insert(key(i), i as u64);
        s.insert(key(i), i as u64);
        h.insert(key(i), i as u64);
    }
    bench_one(c, "dashmap_ahash", Arc::new(a));
    bench_one(c, "dashmap_siphash", Arc::new(s));
    bench_one(c, "rwlock_hashmap_ahash", Arc::new(RwLock::new(h)));
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(2)).warm_up_time(std::time::Duration::from_millis(500));
    targets = tables
}
criterion_main!(benches);
