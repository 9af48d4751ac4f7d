//! Sending invocations over NATS: the one place remote calls are made, by the
//! CLI, by hosts routing an actor's host call, and by providers calling actors.

use std::time::Duration;

use async_nats::{Client, HeaderMap, RequestErrorKind};
use bytes::Bytes;

use super::{Invocation, InvocationResponse, Target};
use crate::{Error, id::LatticeId, trace::TraceContext};

/// Sends a NATS request and maps failures to [`Error`] variants that name `what`.
///
/// Checks the server's max payload before sending, so an oversized request fails
/// at once with both sizes instead of the connection dropping it.
///
/// # Errors
/// [`Error::NoResponders`], [`Error::Timeout`], [`Error::TooLarge`] or [`Error::Nats`].
pub async fn request(
    nats: &Client,
    subject: String,
    headers: HeaderMap,
    body: Bytes,
    timeout: Duration,
    what: &str,
) -> Result<async_nats::Message, Error> {
    // `max_payload` reads one field; `server_info()` would clone the whole INFO.
    let max = nats.max_payload();
    if max > 0 && body.len() > max {
        return Err(Error::TooLarge {
            what: format!("request to {what}"),
            size: body.len(),
            max,
        });
    }
    let req = async_nats::Request::new()
        .payload(body)
        .headers(headers)
        .timeout(Some(timeout));
    nats.send_request(subject.clone(), req)
        .await
        .map_err(|e| match e.kind() {
            RequestErrorKind::NoResponders => Error::NoResponders {
                what: what.to_string(),
                subject,
            },
            RequestErrorKind::TimedOut => Error::Timeout {
                what: what.to_string(),
                timeout,
            },
            _ => Error::nats(format!("request to {what}"), e),
        })
}

/// Sends `invocation` to `target` and returns the reply payload.
///
/// # Errors
/// [`Error::NoResponders`] when nobody serves the target (at once, not after the
/// timeout), [`Error::Remote`] with the callee's error, [`Error::Timeout`],
/// [`Error::TooLarge`], [`Error::Codec`] for a reply that is not a response.
pub async fn invoke(
    nats: &Client,
    lattice: &LatticeId,
    target: &Target,
    invocation: &Invocation,
    trace: &TraceContext,
    timeout: Duration,
) -> Result<Vec<u8>, Error> {
    let mut headers = HeaderMap::new();
    trace.inject(&mut headers);
    let what = target.to_string();
    let msg = request(
        nats,
        target.subject(lattice),
        headers,
        invocation.encode()?.into(),
        timeout,
        &what,
    )
    .await?;
    InvocationResponse::decode(&msg.payload)?.into_result()
}
