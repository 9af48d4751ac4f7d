//! `lattice ctl link put|del`: links in the lattice's link store, announced
//! with a `link_put` / `link_deleted` event.

use std::process::ExitCode;

use anyhow::bail;
use lattice::{
    client::CtlClient,
    event::EventData,
    id::{ActorId, ContractId, LinkName, ProviderId},
    link::LinkDefinition,
    link_store::LinkStore,
};

use super::args::LinkCommand;
use crate::output::{OutputFormat, print_json};

pub(super) async fn run(
    ctl: &CtlClient,
    out: OutputFormat,
    what: LinkCommand,
) -> anyhow::Result<ExitCode> {
    let store = ctl.links().await?;
    match what {
        LinkCommand::Put {
            actor,
            provider,
            contract,
            link_name,
            values,
        } => {
            let link = LinkDefinition {
                actor_id: ActorId::new(actor)?,
                provider_id: ProviderId::new(provider)?,
                contract: ContractId::new(contract)?,
                link_name: LinkName::new(link_name)?,
                config: values.into_iter().collect(),
            };
            put(ctl, &store, out, link).await?;
        }
        LinkCommand::Del {
            actor,
            contract,
            link_name,
        } => {
            let actor = ActorId::new(actor)?;
            let contract = ContractId::new(contract)?;
            let link_name = LinkName::new(link_name)?;
            del(ctl, &store, out, actor, &contract, &link_name).await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn put(
    ctl: &CtlClient,
    store: &LinkStore,
    out: OutputFormat,
    link: LinkDefinition,
) -> anyhow::Result<()> {
    store.put(&link).await?;
    publish_event(ctl, EventData::LinkPut(link.clone())).await;
    // Only to warn: ends at the provider's first answer. Hosts serve
    // lattice:httpclient themselves: no provider to look for.
    let provider = if link.contract.as_str() == lattice::contracts::httpclient::CONTRACT {
        None
    } else {
        ctl.find_provider(&link.provider_id, lattice::client::DEFAULT_GATHER)
            .await
            .unwrap_or_default()
    };
    match provider {
        None if link.contract.as_str() == lattice::contracts::httpclient::CONTRACT => {}
        None => eprintln!(
            "warning: no provider with id {:?} is running in lattice {:?}; calls over this link fail until one starts",
            link.provider_id,
            ctl.lattice().as_str()
        ),
        Some(p) if p.contract != link.contract => eprintln!(
            "warning: provider {:?} serves {}, not {}",
            p.id, p.contract, link.contract
        ),
        Some(_) => {}
    }
    if out == OutputFormat::Json {
        print_json(&link)?;
    } else {
        println!(
            "linked {} {} (link {:?}) to provider {}",
            link.actor_id, link.contract, link.link_name, link.provider_id
        );
    }
    Ok(())
}

async fn del(
    ctl: &CtlClient,
    store: &LinkStore,
    out: OutputFormat,
    actor: ActorId,
    contract: &ContractId,
    link_name: &LinkName,
) -> anyhow::Result<()> {
    let Some(link) = store.delete(&actor, contract, link_name).await? else {
        bail!(
            "there is no link {actor} {contract} with link name {link_name:?}; `lattice ctl get links` lists them"
        );
    };
    publish_event(
        ctl,
        EventData::LinkDeleted {
            actor_id: link.actor_id.clone(),
            contract: link.contract.to_string(),
            link_name: link.link_name.to_string(),
        },
    )
    .await;
    if out == OutputFormat::Json {
        print_json(&link)?;
    } else {
        println!("deleted link {actor} {contract} (link {link_name:?})");
    }
    Ok(())
}

/// Announces a change on the lattice's event subject, best effort.
async fn publish_event(ctl: &CtlClient, event: EventData) {
    lattice::event::publish(ctl.nats(), ctl.lattice(), "cli", event).await;
    let _ = ctl.nats().flush().await;
}
