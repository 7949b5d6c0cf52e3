//! Runs user JavaScript and answers its syscalls.
//!
//! User code is the ESM bundles the official `convex` CLI pushes. It runs
//! in V8 inside Deno worker processes (the `deno` npm package), each
//! running the shim in `runtime/js/` and talking to this crate over its
//! stdio with length-prefixed frames. The JavaScript calls
//! `Convex.syscall` / `Convex.asyncSyscall`; the shim forwards each call
//! here, and a [`SyscallHandler`] answers it (from the engine, for
//! database syscalls).
//!
//! Invariant kept here: user code never touches storage, the network or
//! the file system except through a syscall this crate answered.
//! (Actions are the one exception DESIGN.md makes: their workers may use
//! the network, through `fetch`.)
//!
//! Modules: [`deno`] finds the Deno binary; [`modules`] holds a push's
//! modules and writes them to disk once; [`worker`] keeps the pools of
//! worker processes and runs calls ([`Runtime::run`],
//! [`Runtime::run_http_action`]); [`analyze`] describes a push
//! ([`Runtime::analyze`]).

pub mod schema;
pub mod syscalls;
pub mod system;
pub mod validator;

use serde::{Deserialize, Serialize};

pub mod analyze;
pub mod deno;
pub mod deployment;
pub mod execute;
pub mod modules;
pub mod worker;

pub use analyze::{Analysis, AnalyzedFunction, AnalyzedModule, HttpRoute, Visibility};
pub use deno::{find_deno, DenoBinary, DenoError};
pub use modules::{ImportPhase, InvalidModulePath, Module, ModuleSet, ModuleSetId};
pub use worker::{
    canonicalize_udf_path, default_time_limit, EnvVars, HttpOutcome, HttpRequest, HttpResponse,
    HttpRunRequest, JsError, RunOutcome, RunRequest, Runtime, RuntimeConfig, RuntimeError,
};

/// The kind of a Convex function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum UdfType {
    /// A read-only, deterministic function (`query`).
    Query,
    /// A transactional, deterministic function (`mutation`).
    Mutation,
    /// A function with side effects and the network (`action`).
    Action,
    /// An action answering an HTTP request (`httpAction`).
    HttpAction,
}

impl UdfType {
    /// The name Convex uses in messages and analysis ("Query", ...).
    pub fn as_str(self) -> &'static str {
        match self {
            UdfType::Query => "Query",
            UdfType::Mutation => "Mutation",
            UdfType::Action => "Action",
            UdfType::HttpAction => "HttpAction",
        }
    }
}

/// A syscall that failed. Rejects the JavaScript promise (or throws) with
/// `message`; with `data` (Convex JSON), JavaScript rebuilds a
/// `ConvexError` carrying it.
#[derive(Clone, Debug, PartialEq)]
pub struct SyscallError {
    /// What JavaScript's `Error` says.
    pub message: String,
    /// A `ConvexError`'s data (Convex JSON), for errors that carry one.
    pub data: Option<serde_json::Value>,
}

impl SyscallError {
    /// An error with a message and no data.
    pub fn new(message: impl Into<String>) -> SyscallError {
        SyscallError {
            message: message.into(),
            data: None,
        }
    }
}

impl std::fmt::Display for SyscallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SyscallError {}

/// Answers the syscalls of one function execution.
pub trait SyscallHandler {
    /// Answers `Convex.syscall(op, args)` (`is_async == false`) or
    /// `Convex.asyncSyscall(op, args)` (`is_async == true`). `args` is the
    /// parsed JSON the JavaScript sent; the result is the JSON it receives.
    fn syscall(
        &mut self,
        op: &str,
        args: serde_json::Value,
        is_async: bool,
    ) -> Result<serde_json::Value, SyscallError>;
}
