//! `lattice call ACTOR OPERATION [JSON]`.

use std::{io::Write, process::ExitCode};

use anyhow::Context;
use lattice_host::config::ConnectConfig;

use crate::output::OutputFormat;

#[derive(clap::Args, Debug)]
pub struct CallArgs {
    /// Actor id
    actor: String,
    /// Operation, e.g. SayHello
    operation: String,
    /// Argument as JSON (sent as msgpack); omitted means null
    json: Option<String>,
    /// Print the reply bytes as they are instead of decoding msgpack to JSON
    #[arg(long)]
    raw: bool,
}

pub async fn run(
    connect: &ConnectConfig,
    out: OutputFormat,
    args: CallArgs,
) -> anyhow::Result<ExitCode> {
    let payload = match &args.json {
        None => rmp_serde::to_vec_named(&())?,
        Some(text) => {
            let value: serde_json::Value = serde_json::from_str(text).with_context(|| {
                format!("the argument is not valid JSON: {text:?} (quote strings: '\"world\"')")
            })?;
            rmp_serde::to_vec_named(&value).context("could not encode the argument as msgpack")?
        }
    };
    lattice::id::ActorId::new(args.actor.as_str())?;
    let ctl = crate::client(connect).await?;
    let reply = ctl
        .call_raw(&args.actor, &args.operation, payload)
        .await
        .with_context(|| format!("call {} {} failed", args.actor, args.operation))?;
    if args.raw {
        std::io::stdout().write_all(&reply)?;
        return Ok(ExitCode::SUCCESS);
    }
    let json = msgpack_to_json(&reply).with_context(|| {
        format!(
            "the reply ({} bytes) is not msgpack; use --raw to print it as is",
            reply.len()
        )
    })?;
    match out {
        OutputFormat::Json => println!("{}", serde_json::to_string(&json)?),
        OutputFormat::Table => println!("{}", serde_json::to_string_pretty(&json)?),
    }
    Ok(ExitCode::SUCCESS)
}

/// Decodes one msgpack value into JSON. Binary becomes a string when it is UTF-8,
/// else an array of byte values; non-string map keys are rendered as JSON text.
pub fn msgpack_to_json(bytes: &[u8]) -> anyhow::Result<serde_json::Value> {
    if bytes.is_empty() {
        return Ok(serde_json::Value::Null);
    }
    let mut cursor = bytes;
    // Through rmp_serde rather than `rmpv::decode::read_value`, which reads the
    // reserved marker 0xc1 (never valid msgpack) as nil.
    let value: rmpv::Value =
        serde::Deserialize::deserialize(&mut rmp_serde::Deserializer::new(&mut cursor))?;
    if !cursor.is_empty() {
        anyhow::bail!("{} trailing bytes after the msgpack value", cursor.len());
    }
    Ok(convert(value))
}

fn convert(v: rmpv::Value) -> serde_json::Value {
    use rmpv::Value as M;
    use serde_json::Value as J;
    match v {
        M::Nil => J::Null,
        M::Boolean(b) => J::Bool(b),
        M::Integer(i) => i
            .as_i64()
            .map(J::from)
            .or_else(|| i.as_u64().map(J::from))
            .unwrap_or(J::Null),
        M::F32(f) => serde_json::Number::from_f64(f64::from(f)).map_or(J::Null, J::Number),
        M::F64(f) => serde_json::Number::from_f64(f).map_or(J::Null, J::Number),
        M::String(s) => J::String(s.into_str().unwrap_or_default()),
        M::Binary(b) => match String::from_utf8(b) {
            Ok(s) => J::String(s),
            Err(e) => J::Array(e.into_bytes().into_iter().map(J::from).collect()),
        },
        M::Array(a) => J::Array(a.into_iter().map(convert).collect()),
        M::Map(m) => J::Object(
            m.into_iter()
                .map(|(k, v)| {
                    let key = match k {
                        M::String(s) => s.into_str().unwrap_or_default(),
                        other => convert(other).to_string(),
                    };
                    (key, convert(v))
                })
                .collect(),
        ),
        M::Ext(t, data) => serde_json::json!({ "ext": t, "data": data }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_json_through_msgpack() {
        let j = serde_json::json!({"a": [1, -2, 3.5, true, null, "x"], "b": {"c": "d"}});
        let m = rmp_serde::to_vec_named(&j).unwrap();
        assert_eq!(msgpack_to_json(&m).unwrap(), j);
        assert!(msgpack_to_json(b"\xc1").is_err());
        assert!(msgpack_to_json(b"\x91\xc1").is_err());
        assert_eq!(
            msgpack_to_json(b"\xd4\x05\x07").unwrap(),
            serde_json::json!({"ext": 5, "data": [7]})
        );
        assert_eq!(
            msgpack_to_json(b"\xc4\x02hi").unwrap(),
            serde_json::json!("hi")
        );
        assert!(msgpack_to_json(b"\x01\x02").is_err());
    }
}
