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

/// The latest timestamp RFC 3339 can write (`9999-12-31T23:59:59.999Z`: four-digit years).
pub const RFC3339_MS_MAX: TimestampMs = 253_402_300_799_999;

/// Milliseconds in a day.
const DAY_MS: i64 = 86_400_000;

/// Formats a timestamp as RFC 3339 UTC with milliseconds, `YYYY-MM-DDTHH:MM:SS.mmmZ`. A time
/// before the epoch is written as the epoch and one after [`RFC3339_MS_MAX`] as that (a log
/// can hold any `i64`; rendering it never fails).
pub fn rfc3339(ms: TimestampMs) -> String {
    let ms = ms.clamp(0, RFC3339_MS_MAX);
    let (year, month, day) = civil_from_days(ms / DAY_MS);
    let of_day = ms % DAY_MS;
    let mut text = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut value: i64| {
        for digit in text[at..at + width].iter_mut().rev() {
            *digit = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, i64::from(month));
    put(8, 2, i64::from(day));
    put(11, 2, of_day / 3_600_000);
    put(14, 2, of_day / 60_000 % 60);
    put(17, 2, of_day / 1_000 % 60);
    put(20, 3, of_day % 1_000);
    // Digits and separators only: always UTF-8.
    String::from_utf8(text.to_vec()).unwrap_or_default()
}

/// Year, month (1-12) and day (1-31) of a day counted from 1970-01-01 (the proleptic
/// Gregorian calendar; the days-to-civil algorithm of H. Hinnant's date library notes).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month as u32, day as u32)
}

/// Days from 1970-01-01 to a date (the inverse of [`civil_from_days`]).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let shifted_month = (month + 9) % 12;
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The milliseconds of a timestamp written exactly as [`rfc3339`] writes it
/// (`YYYY-MM-DDTHH:MM:SS.mmmZ`, a real date); `None` for any other text.
pub fn parse_canonical_rfc3339_ms(text: &str) -> Option<TimestampMs> {
    let b = text.as_bytes();
    if b.len() != 24 || [b[4], b[7], b[10], b[13], b[16], b[19], b[23]] != *b"--T::.Z" {
        return None;
    }
    let number = |from: usize, to: usize| -> Option<i64> {
        b[from..to].iter().try_fold(0i64, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0'))
        })
    };
    let (year, month, day) = (number(0, 4)?, number(5, 7)?, number(8, 10)?);
    let (hour, minute, second) = (number(11, 13)?, number(14, 16)?, number(17, 19)?);
    let milli = number(20, 23)?;
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    let real = year >= 1970
        && (1..=12).contains(&month)
        && (1..=month_days).contains(&day)
        && hour < 24
        && minute < 60
        && second < 60;
    let of_day = ((hour * 60 + minute) * 60 + second) * 1_000 + milli;
    real.then(|| days_from_civil(year, month, day) * DAY_MS + of_day)
}

/// Reads an RFC 3339 UTC timestamp back into milliseconds (sub-millisecond digits are cut);
/// `None` for anything else, or a time before the epoch.
pub fn parse_rfc3339_ms(text: &str) -> Option<TimestampMs> {
    if let Some(ms) = parse_canonical_rfc3339_ms(text) {
        return Some(ms);
    }
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

    fn humantime_rfc3339(ms: TimestampMs) -> String {
        let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms as u64);
        humantime::format_rfc3339_millis(time).to_string()
    }

    // Timestamps render as RFC 3339 exactly as a general formatter does, read back to the
    // same milliseconds, out-of-range times are clamped (never a panic), and text that is not
    // the canonical form of a real time is refused by the canonical reader.
    #[test]
    fn rfc3339_formats_and_reads_back() {
        use proptest::prelude::*;
        let edges = [
            0,
            1,
            951_782_400_000,   // 2000-02-29
            4_107_542_400_000, // 2100-02-28
            RFC3339_MS_MAX,
        ];
        let check = |ms: TimestampMs| {
            let text = rfc3339(ms);
            assert_eq!(text, humantime_rfc3339(ms), "{ms}");
            assert_eq!(parse_canonical_rfc3339_ms(&text), Some(ms), "{text}");
            assert_eq!(parse_rfc3339_ms(&text), Some(ms), "{text}");
        };
        edges.into_iter().for_each(check);
        proptest!(|(ms in 0..=RFC3339_MS_MAX)| check(ms));
        // Whatever the canonical reader accepts is written back identically (the graph's
        // compact form stores accepted texts as milliseconds).
        proptest!(|(text in "(19[7-9][0-9]|[2-9][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]\\.[0-9]{3}Z")| {
            if let Some(ms) = parse_canonical_rfc3339_ms(&text) {
                prop_assert_eq!(rfc3339(ms), text);
            }
        });
        assert_eq!(rfc3339(-1), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(i64::MAX), "9999-12-31T23:59:59.999Z");
        for text in [
            "2023-02-29T00:00:00.000Z",
            "2023-11-14T24:13:20.123Z",
            "2023-11-14T22:60:20.123Z",
            "2023-13-14T22:13:20.123Z",
            "2023-11-14T22:13:20.123+",
            "2023-11-14 22:13:20.123Z",
            "2023-11-14T22:13:20Z",
            "+023-11-14T22:13:20.123Z",
            "1969-12-31T23:59:59.999Z",
            "2023-04-31T00:00:00.000Z",
        ] {
            assert_eq!(parse_canonical_rfc3339_ms(text), None, "{text}");
        }
        assert_eq!(
            parse_rfc3339_ms("2023-11-14T22:13:20Z"),
            Some(1_700_000_000_000)
        );
        assert_eq!(
            parse_canonical_rfc3339_ms("2024-02-29T00:00:00.000Z"),
            Some(1_709_164_800_000)
        );
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
