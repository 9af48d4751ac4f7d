//! How an error reads on one line: the message and its causes, each said once.

/// `err` and its causes joined by `: `, like `{:#}`, but a cause whose text
/// already ends the line is left out: many errors (async-nats's, and
/// `lattice::Error::Nats`) put their source in their own text, and `{:#}`
/// would print it again after them, once per level.
pub fn one_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        // Whole causes only: "upload" is not said by "could not upload".
        if line == text || line.ends_with(&format!(": {text}")) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_already_said_are_not_repeated() {
        let inner = std::io::Error::other("no stream found for given subject");
        let err = anyhow::Error::new(lattice::Error::nats("upload artifact sha256:ab", inner))
            .context("deploying app.toml");
        assert_eq!(
            one_line(&err),
            "deploying app.toml: nats: upload artifact sha256:ab: no stream found for given subject"
        );
        // A cause that only ends like the line is kept.
        let err = anyhow::anyhow!("upload").context("could not upload");
        assert_eq!(one_line(&err), "could not upload: upload");
        // Causes that add something are all kept.
        let err = anyhow::anyhow!("connection refused")
            .context("connecting to nats://127.0.0.1:4222")
            .context("starting the host");
        assert_eq!(
            one_line(&err),
            "starting the host: connecting to nats://127.0.0.1:4222: connection refused"
        );
    }
}
