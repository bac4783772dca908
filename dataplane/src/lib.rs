//! The sluice packet path.
//!
//! Frames come in as bytes through `hw::Port`s; [`pipeline::Pipeline`] parses them ([`wire`]), tracks
//! connections ([`conntrack`]), runs the netfilter hooks of the live `rules::CompiledRuleset`, routes
//! ([`fib`]), resolves neighbours ([`neigh`]) and rewrites; [`worker::Worker`] runs that over batches.
//! Nothing here reads a clock or makes a syscall of its own: time is an argument, I/O goes through `hw`.

pub mod conntrack;
pub mod defrag;
pub mod fib;
pub mod handoff;
pub mod icmp;
pub mod ipv6;
pub mod nat;
pub mod neigh;
pub mod nflog;
pub mod pipeline;
pub mod stats;
pub mod testkit;
pub mod trace;
pub mod wire;
pub mod worker;

pub use fib::{Fib, InterfaceConfig, Route, Route6};
pub use pipeline::{Action, Pipeline, PipelineConfig, PortRole};
pub use stats::WorkerStats;
pub use worker::{Command, Snapshot, Worker, WorkerConfig};
