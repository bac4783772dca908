//! `sluice`: the daemon, its control verbs, and the netns lab.

mod conntrack;
mod ctl;
mod daemon;
mod host;
mod kernel;
mod lab;
mod nft;
mod probe;
mod replay;
mod ruleset;
mod steer;
mod trace;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "netfilter in user space: nft rulesets on an AF_XDP dataplane"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the appliance on real interfaces.
    Run(daemon::RunArgs),
    /// The built-in netns lab: build it, probe through sluice, report, tear down.
    Lab {
        #[command(subcommand)]
        action: Option<LabAction>,
        #[command(flatten)]
        args: lab::LabArgs,
    },
    /// Print a ruleset file as `nft list ruleset` would after `nft -f FILE`.
    Fmt {
        files: Vec<PathBuf>,
        /// Only check; print nothing on success.
        #[arg(long, short = 'c')]
        check: bool,
        /// The files are in libnftables' JSON schema (`nft -j -f`), as `nft -j list ruleset` prints it.
        #[arg(long, short = 'j')]
        json: bool,
    },
    /// nft's command line against the running daemon: `-f FILE`, `-c`, `list ruleset`, `add rule …`.
    #[command(disable_help_flag = true)]
    Nft {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// conntrack-tools against the running daemon: -L, -D, -F, -C, -S, -E with conntrack's filters and
    /// output (`--control PATH` picks the daemon).
    #[command(disable_help_flag = true)]
    Conntrack {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Ask a running daemon: `list ruleset`, `stats`, `reload`.
    Ctl {
        #[arg(long, default_value = ctl::DEFAULT_SOCKET)]
        control: PathBuf,
        words: Vec<String>,
    },
    /// Run captured frames through the pipeline offline: one pcap per egress interface and a JSON-lines
    /// trace of every hook, chain, rule and verdict.
    Replay(replay::ReplayArgs),
    /// Helpers the lab runs inside its namespaces.
    #[command(hide = true)]
    Internal {
        #[command(subcommand)]
        tool: Internal,
    },
}

#[derive(Subcommand)]
enum LabAction {
    /// Build the lab and leave it running in the background.
    Up,
    /// Remove the lab: processes, namespaces, links.
    Down,
}

#[derive(Subcommand)]
enum Internal {
    SynFlood {
        src: std::net::Ipv4Addr,
        dst: std::net::SocketAddrV4,
        count: u32,
    },
    HttpServe {
        addrs: Vec<SocketAddr>,
    },
    HttpGet {
        addr: SocketAddr,
        path: String,
    },
    TcpConnect {
        addr: SocketAddr,
    },
    Ping {
        addr: std::net::Ipv4Addr,
        #[arg(long, default_value_t = 3)]
        count: u16,
        #[arg(long, default_value_t = 0)]
        interval_ms: u64,
    },
    TxCsumOff {
        ifname: String,
    },
}

fn require_root(what: &str) -> Option<ExitCode> {
    if lab::is_root() {
        None
    } else {
        eprintln!("sluice {what}: must run as root (it needs network namespaces and raw sockets)");
        Some(ExitCode::from(2))
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
                // `log` statements' lines (target nft_log) at every level, as the kernel log keeps them
                .unwrap_or_else(|_| "warn,nft_log=debug".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sluice: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn dispatch(cmd: Cmd) -> Result<ExitCode> {
    match cmd {
        Cmd::Run(args) => {
            if let Some(code) = require_root("run") {
                return Ok(code);
            }
            daemon::run(args)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Lab { action, args } => {
            if let Some(code) = require_root("lab") {
                return Ok(code);
            }
            let lab = lab::Lab::new(&args);
            match action {
                None => Ok(if lab::run_lab(&args)? {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                }),
                Some(LabAction::Up) => {
                    let never = std::sync::atomic::AtomicBool::new(false);
                    if let Err(e) = lab.up(args.ruleset.as_deref(), &never) {
                        // Leave nothing half-configured; but never tear down a lab that was already up.
                        if !e.to_string().contains("already up") {
                            let _ = lab.down();
                        }
                        return Err(e);
                    }
                    println!(
                        "lab is up: sluice forwards between {}-cli and {}-srv.",
                        args.prefix, args.prefix
                    );
                    println!(
                        "  ip netns exec {}-cli curl http://{}/",
                        args.prefix,
                        lab::SRV_ADDR
                    );
                    println!(
                        "  sluice ctl --control {} list ruleset",
                        lab.socket.display()
                    );
                    println!("  sluice lab down");
                    Ok(ExitCode::SUCCESS)
                }
                Some(LabAction::Down) => {
                    if lab.down()? {
                        println!("lab removed");
                    } else {
                        println!("no lab was up");
                    }
                    Ok(ExitCode::SUCCESS)
                }
            }
        }
        Cmd::Fmt { files, check, json } => {
            let mut failed = false;
            for f in &files {
                let src = std::fs::read_to_string(f)
                    .with_context(|| format!("cannot read {}", f.display()))?;
                let name = f.display().to_string();
                let parsed = if json {
                    rules::apply_json_owned(Default::default(), &src, &name, &nft::FsLoader)
                } else {
                    rules::parse_ruleset_with(&src, &name, &nft::FsLoader)
                };
                match parsed {
                    Ok(rs) if !check => {
                        print!("{}", rules::print_ruleset(&rs, &Default::default(), None))
                    }
                    Ok(_) => {}
                    Err(d) => {
                        eprintln!("{d}");
                        failed = true;
                    }
                }
            }
            Ok(if failed {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Cmd::Nft { args } => {
            if let Some(code) = require_root("nft") {
                return Ok(code);
            }
            if let Some(control) = nft::monitor_trace_args(&args)? {
                crate::trace::monitor(&control)?;
                return Ok(ExitCode::SUCCESS);
            }
            match nft::run(&args) {
                Ok(out) => {
                    print!("{out}");
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("{e:#}");
                    Ok(ExitCode::from(1))
                }
            }
        }
        Cmd::Conntrack { args } => conntrack::run(&args),
        Cmd::Ctl { control, words } => {
            print!("{}", ctl::request(&control, &words.join(" "), "")?);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Replay(args) => {
            let n = replay::run(&args)?;
            eprintln!("replayed {n} frames into {}", args.out.display());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Internal { tool } => internal(tool),
    }
}

fn internal(tool: Internal) -> Result<ExitCode> {
    let timeout = Duration::from_secs(2);
    match tool {
        Internal::HttpServe { addrs } => probe::http_serve(&addrs)?,
        Internal::HttpGet { addr, path } => {
            let (status, len) = probe::http_get(addr, &path, Duration::from_secs(10))?;
            println!("{status}, {len} bytes");
            if !status.contains(" 200 ") {
                return Ok(ExitCode::from(1));
            }
        }
        Internal::TcpConnect { addr } => {
            let r = probe::tcp_connect(addr, timeout)?;
            println!(
                "{}",
                match r {
                    probe::Connect::Open => "connected".to_string(),
                    probe::Connect::Refused => "refused".to_string(),
                    probe::Connect::TimedOut => format!("timed out after {}s", timeout.as_secs()),
                }
            );
            if r != probe::Connect::Open {
                return Ok(ExitCode::from(1));
            }
        }
        Internal::Ping {
            addr,
            count,
            interval_ms,
        } => {
            let got = probe::ping(addr, count, Duration::from_millis(interval_ms), timeout)?;
            println!("{got}/{count} replies");
            if got == 0 {
                return Ok(ExitCode::from(1));
            }
        }
        Internal::SynFlood { src, dst, count } => {
            println!("{} SYNs sent", probe::syn_flood(src, dst, count)?);
        }
        Internal::TxCsumOff { ifname } => hw::iface::set_tx_checksum_offload(&ifname, false)?,
    }
    Ok(ExitCode::SUCCESS)
}
