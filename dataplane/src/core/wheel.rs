//! A timing wheel (Varghese & Lauck, scheme 4) for connection expiry: filing and firing an
//! entry cost O(1), and nothing scans the connection table.
//!
//! Each worker owns one wheel per kind of entry and advances it between batches. Entries are
//! lazy: a packet that extends a connection's deadline does not touch the wheel; when the
//! entry fires, the owner compares the connection's deadline with the time and either removes
//! the connection or files it again at its deadline. A connection is therefore looked at about
//! once per idle timeout, however many packets it carries: amortised O(1).
//!
//! Entries are filed at most [`SLOTS`] − 1 ticks ahead (a longer deadline is filed at the
//! span's end and filed again when it fires), so the tick an entry fires at is the tick it
//! was filed for, exactly; owners compare it with what the connection recorded to recognise
//! stale entries.

use std::time::Duration;

use super::Instant;

/// The wheel's resolution, and the unit of connection deadlines: 1/16 s, so whole-second
/// timeouts (all of IPVS's) are exact.
pub const TICK: Duration = Duration::from_micros(62_500);
const TICK_NS: u64 = TICK.as_nanos() as u64;
/// Ticks per second.
pub const TICKS_PER_SEC: u32 = 16;
/// The last tick a deadline can be: later ones saturate (see [`tick`]).
pub const MAX_TICK: u32 = u32::MAX - SLOTS;
/// Ticks per turn: 4096 × 1/16 s = 256 s.
pub const SLOTS: u32 = 4096;
const MASK: u32 = SLOTS - 1;

/// The tick `t` falls in. Ticks are `u32`: 8.5 years of the workers' monotonic clock (time
/// since boot); beyond that deadlines saturate rather than wrap.
pub fn tick(t: Instant) -> u32 {
    (t.0 / TICK_NS).min(MAX_TICK as u64) as u32
}

/// The first tick at or after `t` (deadlines round up: never expire early).
pub fn tick_ceil(t: Instant) -> u32 {
    t.0.div_ceil(TICK_NS).min(MAX_TICK as u64) as u32
}

/// The instant tick `t` starts.
pub fn tick_instant(t: u32) -> Instant {
    Instant(t as u64 * TICK_NS)
}

/// Words of the bitmap of non-empty slots.
const WORDS: usize = SLOTS as usize / 64;

/// Marks slot `i` non-empty.
#[inline]
fn mark(filed: &mut [u64; WORDS], i: u32) {
    filed[(i / 64) as usize] |= 1 << (i % 64);
}

/// A timing wheel of entries `T` (see the module docs).
#[derive(Debug)]
pub struct Wheel<T> {
    slots: Box<[Vec<T>]>,
    /// One bit per slot, set while the slot may hold entries: [`Wheel::next_due`] finds the
    /// first filed tick with a few word scans instead of a walk over the slots.
    filed: Box<[u64; WORDS]>,
    /// Entries of the tick being fired, taken out of their slot.
    due: Vec<T>,
    due_tick: u32,
    /// The next tick to fire; set by the first use.
    next: Option<u32>,
}

/// Files an entry again from inside [`Wheel::advance`].
pub struct Filer<'w, T> {
    slots: &'w mut [Vec<T>],
    filed: &'w mut [u64; WORDS],
    next: u32,
}

/// The tick an entry for `deadline` is filed for when `next` is the next tick to fire: not
/// before it, and within one turn of it.
fn filed_at(next: u32, deadline: u32) -> u32 {
    deadline.clamp(next, next.saturating_add(MASK))
}

impl<T: Copy> Filer<'_, T> {
    /// Files `entry` for `deadline`; returns the tick it will fire at.
    pub fn file(&mut self, deadline: u32, entry: T) -> u32 {
        let at = filed_at(self.next, deadline);
        mark(self.filed, at & MASK);
        self.slots[(at & MASK) as usize].push(entry);
        at
    }
}

impl<T: Copy> Default for Wheel<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Copy> Wheel<T> {
    pub fn new() -> Self {
        Wheel {
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            filed: Box::new([0; WORDS]),
            due: Vec::new(),
            due_tick: 0,
            next: None,
        }
    }

    /// Files `entry` for `deadline` (a tick); `now` starts the wheel on first use. Returns the
    /// tick it will fire at.
    pub fn file(&mut self, now: u32, deadline: u32, entry: T) -> u32 {
        let at = self.at(now, deadline);
        self.push(at, entry);
        at
    }

    /// The tick an entry for `deadline` would be filed for: not before the next tick fired,
    /// and within one turn of it.
    pub fn at(&mut self, now: u32, deadline: u32) -> u32 {
        filed_at(*self.next.get_or_insert(now), deadline)
    }

    /// Files `entry` for `at`, a tick [`Wheel::at`] returned since the last advance.
    pub fn push(&mut self, at: u32, entry: T) {
        // Marked first: nothing to keep across the push's possible call to grow the slot.
        mark(&mut self.filed, at & MASK);
        self.slots[(at & MASK) as usize].push(entry);
    }

    /// The first tick with entries to fire (possibly stale ones), None if none are filed: the
    /// owner has nothing to do before it. A tick already past if a budget left some due.
    pub fn next_due(&self) -> Option<u32> {
        let next = self.next?;
        if !self.due.is_empty() {
            return Some(self.due_tick);
        }
        let start = next & MASK;
        let (w0, b0) = ((start / 64) as usize, start % 64);
        // From `start` round the whole wheel: the first word from bit `b0`, the others whole,
        // the first word again below `b0`.
        for i in 0..=WORDS {
            let w = (w0 + i) % WORDS;
            let mut bits = self.filed[w];
            if i == 0 {
                bits &= !0 << b0;
            } else if i == WORDS {
                bits &= (1 << b0) - 1;
            }
            if bits != 0 {
                let slot = w as u32 * 64 + bits.trailing_zeros();
                return Some(next + (slot.wrapping_sub(start) & MASK));
            }
        }
        None
    }

    /// Fires every entry filed for a tick up to `now`, at most `budget` of them (the rest wait
    /// for the next call). `fire(entry, tick, filer)` may file the entry again. Returns the
    /// number fired.
    pub fn advance(
        &mut self,
        now: u32,
        budget: usize,
        mut fire: impl FnMut(T, u32, &mut Filer<'_, T>),
    ) -> usize {
        let Some(mut next) = self.next else {
            self.next = Some(now + 1);
            return 0;
        };
        if now >= next && now - next >= SLOTS {
            return self.jump(now, fire);
        }
        let mut fired = 0;
        loop {
            while let Some(e) = self.due.pop() {
                if fired == budget {
                    self.due.push(e);
                    self.next = Some(next);
                    return fired;
                }
                fired += 1;
                let mut f = Filer {
                    slots: &mut self.slots,
                    filed: &mut self.filed,
                    next,
                };
                fire(e, self.due_tick, &mut f);
            }
            if next > now {
                break;
            }
            let i = next & MASK;
            // The slot gets the emptied `due`.
            std::mem::swap(&mut self.slots[i as usize], &mut self.due);
            self.filed[(i / 64) as usize] &= !(1 << (i % 64));
            self.due_tick = next;
            next += 1;
        }
        self.next = Some(next);
        fired
    }

    /// After a pause of a whole turn or more, every filed entry is due: all are taken out
    /// first, then fired, so that one filed again (ahead of `now`) does not fire twice. Not
    /// bounded by a budget: it happens only when the owner stopped advancing for minutes.
    #[cold]
    fn jump(&mut self, now: u32, mut fire: impl FnMut(T, u32, &mut Filer<'_, T>)) -> usize {
        let next = self.next.unwrap_or(now);
        let mut batches = vec![(self.due_tick, std::mem::take(&mut self.due))];
        batches.extend((0..SLOTS).map(|i| {
            let t = next + i;
            (t, std::mem::take(&mut self.slots[(t & MASK) as usize]))
        }));
        self.next = Some(now + 1);
        *self.filed = [0; WORDS];
        let mut fired = 0;
        for (t, entries) in batches {
            for e in entries {
                fired += 1;
                let mut f = Filer {
                    slots: &mut self.slots,
                    filed: &mut self.filed,
                    next: now + 1,
                };
                fire(e, t, &mut f);
            }
        }
        fired
    }

    /// Entries filed and not yet fired.
    pub fn len(&self) -> usize {
        self.due.len() + self.slots.iter().map(Vec::len).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_seconds_are_exact_ticks() {
        assert_eq!(tick(Instant::from_secs(60)), 960);
        assert_eq!(tick_ceil(Instant::from_secs(60)), 960);
        assert_eq!(tick_ceil(Instant(Instant::from_secs(60).0 + 1)), 961);
        assert_eq!(tick_instant(960), Instant::from_secs(60));
    }

    #[test]
    fn fires_at_the_filed_tick_not_before() {
        let mut w = Wheel::new();
        assert_eq!(w.file(0, 10, 'a'), 10);
        assert_eq!(w.file(0, 3, 'b'), 3);
        let mut seen = Vec::new();
        w.advance(2, usize::MAX, |e, t, _| seen.push((e, t)));
        assert!(seen.is_empty());
        w.advance(9, usize::MAX, |e, t, _| seen.push((e, t)));
        assert_eq!(seen, [('b', 3)]);
        w.advance(10, usize::MAX, |e, t, _| seen.push((e, t)));
        assert_eq!(seen, [('b', 3), ('a', 10)]);
        assert!(w.is_empty());
    }

    #[test]
    fn far_deadlines_are_filed_at_the_span_end_and_refiled() {
        let mut w = Wheel::new();
        let far = 3 * SLOTS + 5;
        let at = w.file(0, far, ());
        assert_eq!(at, SLOTS - 1);
        let mut fires = Vec::new();
        for now in (0..far + 100).step_by(100) {
            w.advance(now, usize::MAX, |e, t, f| {
                fires.push(t);
                if t < far {
                    assert_eq!(f.file(far, e), (t + SLOTS).min(far));
                }
            });
        }
        assert_eq!(fires.last(), Some(&far));
        assert_eq!(fires.len(), 4);
    }

    #[test]
    fn a_past_deadline_fires_at_the_next_tick() {
        let mut w = Wheel::new();
        w.advance(0, usize::MAX, |_: (), _, _| {});
        w.advance(50, usize::MAX, |_: (), _, _| {});
        assert_eq!(w.file(50, 7, ()), 51);
    }

    #[test]
    fn next_due_is_the_first_filed_tick_round_the_wheel() {
        let mut w = Wheel::new();
        assert_eq!(w.next_due(), None);
        w.advance(100, usize::MAX, |_: u32, _, _| {});
        assert_eq!(w.next_due(), None);
        // Filed ahead, across the wheel's wrap (slot indices below `next`'s).
        w.file(100, 100 + SLOTS - 10, 1);
        assert_eq!(w.next_due(), Some(100 + SLOTS - 10));
        w.file(100, 300, 2);
        assert_eq!(w.next_due(), Some(300));
        w.file(100, 101, 3);
        assert_eq!(w.next_due(), Some(101));
        let mut fired = Vec::new();
        w.advance(101, usize::MAX, |e, _, _| fired.push(e));
        assert_eq!((fired.as_slice(), w.next_due()), (&[3][..], Some(300)));
        w.advance(300, usize::MAX, |e, _, _| fired.push(e));
        assert_eq!(w.next_due(), Some(100 + SLOTS - 10));
        // Left due by a budget: due now.
        w.file(300, 305, 4);
        w.file(300, 305, 5);
        w.advance(305, 1, |e, _, _| fired.push(e));
        assert_eq!(w.next_due(), Some(305));
        w.advance(305, usize::MAX, |e, _, _| fired.push(e));
        w.advance(100 + SLOTS, usize::MAX, |e, _, _| fired.push(e));
        assert_eq!((fired.len(), w.next_due()), (5, None));
        // Every slot's bit, and a slot at a word's end.
        for at in [306 + 63, 306 + 64, 306 + SLOTS - 1] {
            let mut w = Wheel::new();
            w.advance(305, usize::MAX, |_: u32, _, _| {});
            w.file(305, at, 0);
            assert_eq!(w.next_due(), Some(at));
        }
    }

    #[test]
    fn budget_bounds_work_per_call_and_nothing_is_lost() {
        let mut w = Wheel::new();
        for i in 0..100u32 {
            w.file(0, 1 + i % 3, i);
        }
        let mut got = Vec::new();
        while got.len() < 100 {
            let n = w.advance(5, 7, |e, _, _| got.push(e));
            assert!(n <= 7);
        }
        got.sort();
        assert_eq!(got, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn a_long_pause_fires_everything_once_without_walking_every_tick() {
        let mut w: Wheel<u32> = Wheel::new();
        w.file(0, 5, 1);
        w.file(0, 4000, 2);
        let now = u32::MAX / 2;
        let mut fired = Vec::new();
        w.advance(now, usize::MAX, |e, t, f| {
            fired.push((e, t));
            if e == 2 {
                // Still alive: filed again ahead of now, not fired twice.
                assert_eq!(f.file(now + 10, e), now + 10);
            }
        });
        fired.sort();
        assert_eq!(fired, [(1, 5), (2, 4000)]);
        let mut later = Vec::new();
        w.advance(now + 10, usize::MAX, |e, t, _| later.push((e, t)));
        assert_eq!(later, [(2, now + 10)]);
        assert_eq!(w.file(now + 10, 0, 3), now + 11);
    }
}
