//! The arguments of `lattice ctl ...` (clap types).

#[derive(clap::Subcommand, Debug)]
pub enum CtlCommand {
    /// List hosts or inventories
    Get {
        #[command(subcommand)]
        what: GetCommand,
    },
    /// Start actors
    Start {
        #[command(subcommand)]
        what: StartCommand,
    },
    /// Stop actors and providers
    Stop {
        #[command(subcommand)]
        what: StopCommand,
    },
    /// Set the replicas of a running actor, up or down
    Scale {
        #[command(subcommand)]
        what: ScaleCommand,
    },
    /// Replace the module of a running actor, serving throughout
    Update {
        #[command(subcommand)]
        what: UpdateCommand,
    },
    /// Put or delete links between actors and providers
    Link {
        #[command(subcommand)]
        what: LinkCommand,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum ScaleCommand {
    /// Set an actor's replicas on every host running it, or on one host
    Actor {
        /// Actor id
        id: String,
        /// Replicas per host, at least 1 (`ctl stop actor` runs none)
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        replicas: u32,
        /// Only on this host (id or name)
        #[arg(long)]
        host: Option<String>,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum UpdateCommand {
    /// Run another module for an actor on every host running it, or on one
    /// host: the new module serves before the old one stops
    Actor {
        /// Actor id
        id: String,
        /// A local .wasm file, sha256:<hex>, or name[:tag] already in the store
        reference: String,
        /// Only on this host (id or name)
        #[arg(long)]
        host: Option<String>,
        /// Configuration the actor sees as environment variables from now on,
        /// KEY=VALUE (repeatable) [default: the configuration it runs with]
        #[arg(long = "env", value_parser = crate::parse_kv)]
        env_vars: Vec<(String, String)>,
        /// Run the new module with no configuration at all
        #[arg(long, conflicts_with = "env_vars")]
        clear_env: bool,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum LinkCommand {
    /// Link an actor's use of CONTRACT (under a link name) to PROVIDER, with config
    Put {
        /// Actor id
        actor: String,
        /// Provider id
        provider: String,
        /// Contract id, e.g. lattice:keyvalue
        contract: String,
        /// Link name
        #[arg(long, default_value = lattice::link::DEFAULT_LINK_NAME)]
        link_name: String,
        /// Config values for the provider, KEY=VALUE
        #[arg(value_parser = crate::parse_kv, value_name = "KEY=VALUE")]
        values: Vec<(String, String)>,
    },
    /// Delete a link
    Del {
        /// Actor id
        actor: String,
        /// Contract id
        contract: String,
        /// Link name
        #[arg(long, default_value = lattice::link::DEFAULT_LINK_NAME)]
        link_name: String,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum GetCommand {
    /// Every host in the lattice
    Hosts,
    /// What runs where: one host (id or name), or every host
    Inventory {
        /// Host id or name
        host: Option<String>,
    },
    /// Every link in the lattice
    Links,
    /// Every provider, built-in or standalone, with health
    Providers,
}

#[derive(clap::Subcommand, Debug)]
pub enum StartCommand {
    /// Start an actor from a .wasm file, a digest or a name:tag in the lattice's store
    Actor(StartActorArgs),
    /// Start a built-in provider (builtin:httpserver, builtin:keyvalue) inside a host;
    /// one id runs at most once per host, on any number of hosts
    Provider {
        /// builtin:NAME
        reference: String,
        /// Provider id [default: NAME]
        #[arg(long)]
        id: Option<String>,
        /// Start on this host (id or name) [default: the least loaded matching host
        /// that does not run it yet]
        #[arg(long)]
        host: Option<String>,
        /// Start on this many more hosts (1 to 1000), least loaded matching hosts
        /// that do not run it yet first
        #[arg(long, default_value_t = 1, conflicts_with = "host",
              value_parser = clap::value_parser!(u32).range(1..=lattice::app::MAX_PROVIDER_HOSTS))]
        count: u32,
        /// Only hosts with this label, KEY=VALUE (repeatable)
        #[arg(long = "constraint", value_parser = crate::parse_kv)]
        constraints: Vec<(String, String)>,
    },
}

#[derive(clap::Args, Debug)]
pub struct StartActorArgs {
    /// A local .wasm file, sha256:<hex>, or name[:tag] already in the store
    pub reference: String,
    /// Actor id [default: derived from the file name or tag]
    #[arg(long)]
    pub id: Option<String>,
    /// Start on this host (id or name) instead of holding an auction
    #[arg(long)]
    pub host: Option<String>,
    /// Replicas to start, spread over hosts (1 to 1000)
    #[arg(long, default_value_t = 1)]
    pub count: u32,
    /// Only hosts with this label, KEY=VALUE (repeatable)
    #[arg(long = "constraint", value_parser = crate::parse_kv)]
    pub constraints: Vec<(String, String)>,
    /// Configuration the actor sees as environment variables, KEY=VALUE (repeatable)
    #[arg(long = "env", value_parser = crate::parse_kv)]
    pub env_vars: Vec<(String, String)>,
}

#[derive(clap::Subcommand, Debug)]
pub enum StopCommand {
    /// Stop an actor everywhere, or on one host
    Actor {
        /// Actor id
        id: String,
        /// Only on this host (id or name)
        #[arg(long)]
        host: Option<String>,
    },
    /// Stop a provider running inside a host
    Provider {
        /// Provider id
        id: String,
        /// Only on this host (id or name)
        #[arg(long)]
        host: Option<String>,
    },
}
