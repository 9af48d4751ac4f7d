//! `lattice events`: print lattice events live.

use std::process::ExitCode;

use futures::StreamExt;
use lattice::event::Event;
use lattice_host::config::ConnectConfig;

use crate::output::OutputFormat;

#[derive(clap::Args, Debug)]
pub struct EventsArgs {
    /// Leave out host_heartbeat events
    #[arg(long)]
    no_heartbeats: bool,
    /// Stop after this many events
    #[arg(long)]
    count: Option<usize>,
}

pub async fn run(
    connect: &ConnectConfig,
    out: OutputFormat,
    args: EventsArgs,
) -> anyhow::Result<ExitCode> {
    let ctl = crate::client(connect).await?;
    let mut sub = ctl.events().await?;
    eprintln!(
        "watching events of lattice {:?}; Ctrl-C to stop",
        ctl.lattice().as_str()
    );
    let mut seen = 0;
    loop {
        let msg = tokio::select! {
            m = sub.next() => m,
            _ = tokio::signal::ctrl_c() => break,
        };
        let Some(msg) = msg else { break };
        let Ok(event) = serde_json::from_slice::<Event>(&msg.payload) else {
            eprintln!("(unreadable event on {})", msg.subject);
            continue;
        };
        if args.no_heartbeats && event.kind == "host_heartbeat" {
            continue;
        }
        match out {
            OutputFormat::Json => println!("{}", serde_json::to_string(&event)?),
            OutputFormat::Table => {
                let data = if event.kind == "host_heartbeat" {
                    let actors = event.data["actors"].as_array().map_or(0, Vec::len);
                    format!(
                        "name={} actors={actors}",
                        event.data["host"]["name"].as_str().unwrap_or("?")
                    )
                } else {
                    summarize(&event.data)
                };
                println!(
                    "{}  {:<15} {:<10} {}",
                    event.time,
                    event.kind,
                    short(&event.source),
                    data
                );
            }
        }
        seen += 1;
        if args.count.is_some_and(|c| seen >= c) {
            break;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn short(id: &str) -> &str {
    &id[..id.len().min(9)]
}

fn summarize(data: &serde_json::Value) -> String {
    match data.as_object() {
        Some(map) => map
            .iter()
            .filter(|(k, _)| k.as_str() != "host_id")
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => format!("{k}={s}"),
                other => format!("{k}={other}"),
            })
            .collect::<Vec<_>>()
            .join(" "),
        None => data.to_string(),
    }
}
