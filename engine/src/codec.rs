//! The one place events become bytes and back: bincode 2 (serde, standard config), codec id
//! and schema version carried in the WAL frame, record type = event type code.

use symphainy_wal::{Record, RecordMeta};

use crate::error::{Error, Result};
use crate::event::{Event, EventType, v1};

/// Codec id of bincode 2 with the standard configuration.
pub const CODEC_BINCODE2: u8 = 1;

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

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
            let (event, used) = bincode::serde::decode_from_slice(payload, config())
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
}
