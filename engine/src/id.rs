//! Identifiers, time and the edge services that decide them (clock and id generator). The
//! engine core never calls these inside `apply`: values are decided once and recorded.

use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// A ULID stored as its 128-bit value (compact in events, cheap to compare and hash).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    Default,
    bincode::Decode,
)]
#[cfg_attr(test, derive(bincode::Encode))]
pub struct Id(pub u128);

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", ulid::Ulid(self.0))
    }
}

impl FromStr for Id {
    type Err = ulid::DecodeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(ulid::Ulid::from_string(s)?.0))
    }
}

/// Hasher for maps keyed by [`Id`]: ULIDs end in 80 random bits, so folding the two halves
/// and one multiply spreads them well, far cheaper than SipHash. Deterministic (no random
/// seed); maps are still never iterated where order could reach an output.
#[derive(Clone, Copy, Debug, Default)]
pub struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }
    fn write_u64(&mut self, value: u64) {
        self.0 = (self.0.rotate_left(29) ^ value).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    fn write_u128(&mut self, value: u128) {
        self.write_u64(value as u64 ^ (value >> 64) as u64);
    }
}

/// Builds [`IdHasher`]s.
pub type IdHashBuilder = std::hash::BuildHasherDefault<IdHasher>;

/// A hash map keyed by [`Id`].
pub type IdMap<V> = std::collections::HashMap<Id, V, IdHashBuilder>;

/// Milliseconds since the Unix epoch, UTC.
pub type TimestampMs = i64;

/// A number type with one value set aside to mean "none" (a niche), so [`Packed`] can hold
/// an optional one in the number's own 8 bytes instead of 16.
pub trait Niche: Copy + Eq {
    /// The value that stands for none.
    const NONE: Self;
    /// The value kept instead of [`Niche::NONE`] when that is given as a value.
    const NEAREST: Self;
}

impl Niche for i64 {
    /// No clock reads it.
    const NONE: Self = i64::MIN;
    const NEAREST: Self = i64::MIN + 1;
}

impl Niche for u64 {
    /// About 584 million years in milliseconds.
    const NONE: Self = u64::MAX;
    const NEAREST: Self = u64::MAX - 1;
}

/// An `Option<T>` in the size of `T` (the state keeps several for every step of every
/// execution): [`Niche::NONE`] stands for none, and a value equal to it is kept as
/// [`Niche::NEAREST`]. Serialized exactly as `Option<T>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(from = "Option<T>", into = "Option<T>")]
#[serde(bound(
    serialize = "T: Niche + serde::Serialize",
    deserialize = "T: Niche + serde::Deserialize<'de>"
))]
pub struct Packed<T: Niche>(T);

/// An optional timestamp.
pub type OptMs = Packed<TimestampMs>;
/// An optional duration in milliseconds.
pub type OptDurationMs = Packed<u64>;

impl<T: Niche> Packed<T> {
    /// None.
    pub const NONE: Self = Self(T::NONE);

    /// A value.
    pub fn some(value: T) -> Self {
        Self(if value == T::NONE { T::NEAREST } else { value })
    }

    /// The value, if any.
    pub fn get(self) -> Option<T> {
        (self.0 != T::NONE).then_some(self.0)
    }

    /// Sets the value unless one is set.
    pub fn set_if_none(&mut self, value: T) {
        if self.0 == T::NONE {
            *self = Self::some(value);
        }
    }
}

impl<T: Niche> Default for Packed<T> {
    fn default() -> Self {
        Self::NONE
    }
}

impl<T: Niche> From<Option<T>> for Packed<T> {
    fn from(value: Option<T>) -> Self {
        value.map_or(Self::NONE, Self::some)
    }
}

impl<T: Niche> From<Packed<T>> for Option<T> {
    fn from(packed: Packed<T>) -> Self {
        packed.get()
    }
}

/// Formats a timestamp as RFC 3339 UTC with milliseconds.
pub fn rfc3339(ms: TimestampMs) -> String {
    let ms = u64::try_from(ms).unwrap_or(0);
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_millis(time).to_string()
}

/// Reads an RFC 3339 UTC timestamp back into milliseconds (sub-millisecond digits are cut);
/// `None` for anything else, or a time before the epoch.
pub fn parse_rfc3339_ms(text: &str) -> Option<TimestampMs> {
    let time = humantime::parse_rfc3339(text).ok()?;
    let since = time.duration_since(std::time::UNIX_EPOCH).ok()?;
    TimestampMs::try_from(since.as_millis()).ok()
}

/// Where time comes from (decided at the edge, recorded in events).
pub trait Clock: Send + Sync + fmt::Debug {
    /// Now, in milliseconds since the epoch.
    fn now_ms(&self) -> TimestampMs;
}

/// Where ids come from (decided at the edge, recorded in events).
pub trait IdSource: Send + Sync + fmt::Debug {
    /// A fresh id, greater than every id this source gave before.
    fn next_id(&self, now_ms: TimestampMs) -> Id;
}

/// The system clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> TimestampMs {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }
}

/// Monotonic ULIDs from the clock and OS randomness.
#[derive(Default)]
pub struct UlidSource {
    generator: Mutex<ulid::Generator>,
}

impl fmt::Debug for UlidSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UlidSource")
    }
}

impl IdSource for UlidSource {
    fn next_id(&self, now_ms: TimestampMs) -> Id {
        let mut generator = self.generator.lock().unwrap_or_else(|e| e.into_inner());
        let time = std::time::UNIX_EPOCH
            + std::time::Duration::from_millis(u64::try_from(now_ms).unwrap_or(0));
        match generator.generate_from_datetime(time) {
            Ok(id) => Id(id.0),
            // The random part overflowed within one millisecond: fall back to a fresh ULID,
            // which is still unique (80 random bits).
            Err(_) => Id(ulid::Ulid::new().0),
        }
    }
}

/// A clock tests drive by hand.
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// Starts at `ms`.
    pub fn new(ms: TimestampMs) -> Self {
        Self(AtomicI64::new(ms))
    }
    /// Moves time forward.
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> TimestampMs {
        self.0.load(Ordering::SeqCst)
    }
}

/// Sequential ids for reproducible tests (time part from the clock, counter below it).
#[derive(Debug, Default)]
pub struct SequentialIds(AtomicU64);

impl IdSource for SequentialIds {
    fn next_id(&self, now_ms: TimestampMs) -> Id {
        let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
        Id(((now_ms.max(0) as u128) << 80) | u128::from(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Ids print as 26-character ULIDs and parse back.
    #[test]
    fn id_round_trip() {
        let id = UlidSource::default().next_id(1_700_000_000_000);
        let text = id.to_string();
        assert_eq!(text.len(), 26);
        assert_eq!(text.parse::<Id>().expect("a ULID"), id);
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }

    /// `Packed<T>` is encoded exactly like `Option<T>` (snapshots of either read back the
    /// same) and takes 8 bytes.
    fn same_on_the_wire<T>(values: &[Option<T>])
    where
        T: Niche + std::fmt::Debug + serde::Serialize + serde::de::DeserializeOwned,
    {
        let config = bincode::config::standard();
        assert_eq!(std::mem::size_of::<Packed<T>>(), 8);
        for &value in values {
            let ours = bincode::serde::encode_to_vec(Packed::from(value), config).expect("encode");
            let theirs = bincode::serde::encode_to_vec(value, config).expect("encode");
            assert_eq!(ours, theirs, "{value:?}");
            let (back, _): (Packed<T>, usize) =
                bincode::serde::decode_from_slice(&theirs, config).expect("decode");
            assert_eq!(back.get(), value);
        }
    }

    #[test]
    fn packed_options_are_options_on_the_wire() {
        same_on_the_wire::<i64>(&[
            None,
            Some(0),
            Some(-1),
            Some(1_700_000_000_123),
            Some(i64::MAX),
        ]);
        same_on_the_wire::<u64>(&[None, Some(0), Some(1), Some(86_400_000), Some(u64::MAX - 1)]);
        // The one reserved value stays a value.
        assert_eq!(OptMs::some(i64::MIN).get(), Some(i64::MIN + 1));
        assert_eq!(OptDurationMs::some(u64::MAX).get(), Some(u64::MAX - 1));
        let mut at = OptMs::NONE;
        at.set_if_none(5);
        at.set_if_none(7);
        assert_eq!(at.get(), Some(5));
    }
}
