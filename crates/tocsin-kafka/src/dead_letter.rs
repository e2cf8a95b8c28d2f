//! Dead letters: the original bytes, untouched, with headers that say why and where from.
//!
//! Headers: `tocsin.dead-letter.reason`, `.kind` (`invalid-json`, `invalid-utf8`,
//! `not-an-object`, `too-large`, `missing-context`, `empty`), `.source-topic`,
//! `.source-partition`, `.source-offset`; the original message's key is kept as the key.
//! An oversized payload is cut to the worker's limit and marked
//! `tocsin.dead-letter.truncated: true`.

use crate::sink::Sink;
use crate::source::Received;
use crate::KafkaError;

/// Send `msg` (its first `keep` bytes) to the dead-letter `topic` with `kind` and `reason`.
pub fn send(
    sink: &mut Sink,
    topic: &str,
    msg: &Received<'_>,
    kind: &str,
    reason: &str,
    keep: usize,
) -> Result<(), KafkaError> {
    let payload = msg.payload();
    let truncated = payload.len() > keep;
    let partition = msg.partition().to_string();
    let offset = msg.offset().to_string();
    let mut headers = vec![
        ("tocsin.dead-letter.reason", reason),
        ("tocsin.dead-letter.kind", kind),
        ("tocsin.dead-letter.source-topic", msg.topic()),
        ("tocsin.dead-letter.source-partition", partition.as_str()),
        ("tocsin.dead-letter.source-offset", offset.as_str()),
    ];
    if truncated {
        headers.push(("tocsin.dead-letter.truncated", "true"));
    }
    sink.send(
        topic,
        msg.key(),
        &payload[..payload.len().min(keep)],
        &headers,
    )
}
