//! The one place events become bytes and back: bincode 2 (standard config), codec id and
//! schema version carried in the WAL frame, record type = event type code. Events are encoded
//! through their serde derives, which define the format; they are decoded with bincode's own
//! `Decode` derive of the same types, which reads those bytes a quarter faster than serde's
//! visitors (replay decodes every event of the log). The tests below hold the two to the same
//! bytes for every event type.

use symphainy_wal::{Record, RecordMeta};

use crate::error::{Error, Result};
use crate::event::{Event, EventType, v1};

/// Codec id of bincode 2 with the standard configuration.
pub const CODEC_BINCODE2: u8 = 1;

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Most bytes one event may claim while it is decoded (its strings and lists together): four
/// times the log's default record limit (16 MiB). A record whose lengths claim more (a
/// hand-written or damaged log whose checksums were recomputed) is refused as undecodable
/// instead of making the decoder allocate what it claims: a 9-byte length prefix can claim
/// terabytes, and a failed allocation aborts the process.
pub const EVENT_CLAIM_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Encodes an event into a WAL record.
pub fn encode(event: &Event) -> Result<Record> {
    let payload = bincode::serde::encode_to_vec(event, config())
        .map_err(|e| Error::Codec(format!("encoding an event: {e}")))?;
    Ok(Record {
        meta: RecordMeta {
            codec: CODEC_BINCODE2,
            record_type: event.body.event_type() as u8,
            schema_version: v1::SCHEMA_VERSION,
        },
        payload,
    })
}

/// Decodes a WAL record into an event, whatever schema version wrote it.
pub fn decode(meta: RecordMeta, payload: &[u8]) -> Result<Event> {
    if meta.codec != CODEC_BINCODE2 {
        return Err(Error::Codec(format!("unknown codec id {}", meta.codec)));
    }
    let event: Event = match meta.schema_version {
        v1::SCHEMA_VERSION => {
            let limited = config().with_limit::<EVENT_CLAIM_BYTES_MAX>();
            let (event, used) = bincode::decode_from_slice(payload, limited)
                .map_err(|e| Error::Codec(format!("decoding a v1 event: {e}")))?;
            if used != payload.len() {
                return Err(Error::Codec("trailing bytes after an event".into()));
            }
            event
        }
        other => return Err(Error::Codec(format!("unknown schema version {other}"))),
    };
    if EventType::from_code(meta.record_type) != Some(event.body.event_type()) {
        return Err(Error::Codec(format!(
            "record type {} does not match the decoded event",
            meta.record_type
        )));
    }
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventBody;
    use crate::id::Id;

    // An event survives encode/decode, and a wrong type code or codec is refused.
    #[test]
    fn round_trip_and_refusals() {
        let event = Event {
            tenant_id: "acme".into(),
            timestamp_ms: 1_700_000_000_000,
            body: EventBody::SessionCreated {
                session_id: Id(42),
                user_id: "alice".into(),
                context_json: "{\"k\":1}".into(),
            },
        };
        let record = encode(&event).expect("encodable");
        assert_eq!(
            decode(record.meta, &record.payload).expect("decodable"),
            event
        );
        let mut wrong = record.meta;
        wrong.record_type = EventType::TenantCreated as u8;
        assert!(decode(wrong, &record.payload).is_err());
        let mut wrong = record.meta;
        wrong.codec = 9;
        assert!(decode(wrong, &record.payload).is_err());
        assert!(decode(record.meta, &record.payload[..record.payload.len() - 1]).is_err());
    }

    use proptest::prelude::*;
    use proptest::strategy::ValueTree;

    use crate::event::{CapabilitySpec, StepSpec};

    fn text() -> impl Strategy<Value = String> {
        // Lengths on both sides of bincode's one-byte varint (250) and some non-ASCII.
        prop_oneof![".{0,8}", "[a-z]{240,300}", "\\PC{0,40}"]
    }

    fn number() -> impl Strategy<Value = u64> {
        prop_oneof![Just(0), Just(250), Just(251), Just(u64::MAX), any::<u64>()]
    }

    fn small() -> impl Strategy<Value = u32> {
        prop_oneof![
            Just(0),
            Just(250),
            Just(65_536),
            Just(u32::MAX),
            any::<u32>()
        ]
    }

    fn id() -> impl Strategy<Value = Id> {
        prop_oneof![Just(0u128), Just(u128::MAX), any::<u128>()].prop_map(Id)
    }

    fn step_spec() -> impl Strategy<Value = StepSpec> {
        (text(), any::<bool>(), small(), number(), number()).prop_map(
            |(name, deterministic, max_attempts, timeout_ms, backoff_base_ms)| StepSpec {
                name,
                deterministic,
                max_attempts,
                timeout_ms,
                backoff_base_ms,
            },
        )
    }

    fn capability() -> impl Strategy<Value = CapabilitySpec> {
        (
            (text(), text(), small(), any::<bool>()),
            prop::collection::vec(text(), 0..3),
            prop::collection::vec(text(), 0..3),
            prop::collection::vec(text(), 0..3),
            prop::collection::vec(step_spec(), 0..3),
        )
            .prop_map(
                |((name, realm, version, deterministic), intent_types, inputs, outputs, steps)| {
                    CapabilitySpec {
                        name,
                        realm,
                        version,
                        intent_types,
                        inputs,
                        outputs,
                        deterministic,
                        steps,
                    }
                },
            )
    }

    fn values() -> crate::arbitrary::Values {
        crate::arbitrary::Values {
            id: id().boxed(),
            small: small().boxed(),
            number: number().boxed(),
            time: any::<i64>().boxed(),
            text: text().boxed(),
            spec: capability().boxed(),
        }
    }

    /// Every body, with values at the edges of their encodings.
    fn body() -> BoxedStrategy<EventBody> {
        values().body()
    }

    // Lengths that claim more than an event may hold are refused, not allocated (this
    // aborted the process with a failed allocation of 1 TiB before the claim limit).
    #[test]
    fn huge_claimed_lengths_are_refused() {
        let meta = |record_type| RecordMeta {
            codec: CODEC_BINCODE2,
            record_type,
            schema_version: v1::SCHEMA_VERSION,
        };
        // A tenant id claiming 2^40 bytes (varint marker 0xFD, then a u64).
        let mut payload = vec![0xFD];
        payload.extend_from_slice(&(1u64 << 40).to_le_bytes());
        payload.extend_from_slice(b"acme");
        assert!(decode(meta(EventType::TenantCreated as u8), &payload).is_err());
        // A capability whose intent type list claims 2^62 entries.
        let mut payload = vec![4, b'a', b'c', b'm', b'e', 0, 5, 1, b'n', 1, b'r', 1];
        payload.push(0xFD);
        payload.extend_from_slice(&(1u64 << 62).to_le_bytes());
        assert!(decode(meta(EventType::CapabilityRegistered as u8), &payload).is_err());
        // Just under the limit, a legitimate large event still decodes.
        let event = Event {
            tenant_id: "acme".into(),
            timestamp_ms: 1,
            body: EventBody::SagaCompleted {
                execution_id: Id(1),
                result_json: "x".repeat(EVENT_CLAIM_BYTES_MAX / 2),
            },
        };
        let record = encode(&event).expect("encodable");
        assert_eq!(
            decode(record.meta, &record.payload).expect("decodable"),
            event
        );
    }

    proptest! {
        // Any bytes under any event type decode to an event or an error; never a panic or an
        // allocation of what a length claims.
        #[test]
        fn arbitrary_payloads_never_panic(
            record_type in 0u8..20,
            payload in prop::collection::vec(any::<u8>(), 0..300),
        ) {
            let meta = RecordMeta {
                codec: CODEC_BINCODE2,
                record_type,
                schema_version: v1::SCHEMA_VERSION,
            };
            if let Ok(event) = decode(meta, &payload) {
                prop_assert_eq!(event.body.event_type() as u8, record_type);
            }
        }
    }

    // The body strategy covers every event type (a new type must be added to it).
    #[test]
    fn the_strategy_covers_every_event_type() {
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..2_000 {
            let body = body().new_tree(&mut runner).expect("a value").current();
            seen.insert(body.event_type());
        }
        assert_eq!(seen.len(), EventType::ALL.len());
    }

    proptest! {
        // The serde encoding (the format) and bincode's own derives agree byte for byte on
        // every event type, and `decode` reads back exactly what `encode` wrote.
        #[test]
        fn serde_encoding_and_native_decoding_agree(
            tenant_id in text(),
            timestamp_ms in any::<i64>(),
            body in body(),
        ) {
            let event = Event { tenant_id, timestamp_ms, body };
            let record = encode(&event).expect("encodable");
            let native = bincode::encode_to_vec(&event, config()).expect("encodable");
            prop_assert_eq!(&native, &record.payload);
            prop_assert_eq!(decode(record.meta, &record.payload).expect("decodable"), event);
        }
    }
}
