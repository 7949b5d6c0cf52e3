//! Analysis of a push: what functions each module exports, the HTTP routes,
//! the cron jobs, and the schema.
//!
//! [`Runtime::analyze`] imports every module except the `_deps/` chunks and
//! `convex.config.js` in a query/mutation worker (no network, no syscalls;
//! each module's top level runs with the set's import-phase seed and time),
//! then reads the registration flags `convex/server` sets on each export:
//! an export is a function if exactly one of `isQuery`, `isMutation`,
//! `isAction` is set; `isInternal` makes it internal, `isPublic` or neither
//! (legacy) public, both skips it. `http.js`'s default router gives the
//! routes, `crons.js`'s default export the cron specs, and `schema.js`'s
//! default export the schema (not listed as a module).
//!
//! The types serialize to the JSON the CLI expects in `start_push`'s
//! `analysis[""].functions` and `schema`.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::modules::ModuleSet;
use crate::worker::process::WorkerKind;
use crate::worker::protocol::{self, ToWorker};
use crate::worker::{drive, CallState, Finished, Runtime, RuntimeError};
use crate::{SyscallError, SyscallHandler, UdfType};

/// Who may call a function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Visibility {
    /// Clients may call it.
    Public,
    /// Only other functions (and the scheduler, crons) may.
    Internal,
}

/// One exported function.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnalyzedFunction {
    /// The export name (`default` for a default export).
    pub name: String,
    /// Its source position; not computed (always null).
    pub pos: Option<serde_json::Value>,
    /// Query, Mutation or Action.
    pub udf_type: UdfType,
    /// Public or internal.
    pub visibility: Option<Visibility>,
    /// The args validator, JSON text from `exportArgs()`
    /// (`{"type":"any"}` when it declares none).
    pub args: Option<String>,
    /// The returns validator, JSON text from `exportReturns()`; `None` when
    /// it declares none.
    pub returns: Option<String>,
}

/// One HTTP route of `http.js`'s router.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpRoute {
    /// `/path`, or `/prefix/*` for a prefix route.
    pub path: String,
    /// `GET`, `POST`, ...
    pub method: String,
}

/// What one module exports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnalyzedModule {
    /// Its functions, in export-name order.
    pub functions: Vec<AnalyzedFunction>,
    /// For `http.js`: the routes of its default export.
    pub http_routes: Option<Vec<HttpRoute>>,
    /// For `crons.js`: its default export's `export()`, parsed.
    pub cron_specs: Option<serde_json::Value>,
    /// Not computed (always null).
    pub source_mapped: Option<serde_json::Value>,
}

/// The analysis of a module set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    /// Every analyzed module by path (`messages.js`), `schema.js` excepted.
    pub modules: BTreeMap<String, AnalyzedModule>,
    /// `schema.js`'s default export's `export()`, parsed: `{tables:
    /// [{tableName, indexes, searchIndexes, vectorIndexes, documentType,
    /// ...}], schemaValidation}`; `None` without a schema.
    pub schema: Option<serde_json::Value>,
}

/// Refuses every syscall: analysis reads nothing.
struct NoSyscalls;

impl SyscallHandler for NoSyscalls {
    fn syscall(
        &mut self,
        op: &str,
        _args: serde_json::Value,
        _is_async: bool,
    ) -> Result<serde_json::Value, SyscallError> {
        Err(SyscallError::new(format!(
            "Can't use {op} while analyzing modules"
        )))
    }
}

/// True for the modules analysis imports.
pub fn is_analyzed_module(path: &str) -> bool {
    !path.starts_with("_deps/") && path != "convex.config.js"
}

impl Runtime {
    /// Imports every module of `modules` (see the module docs) and
    /// describes what it exports. A module that fails to import or to
    /// describe itself fails the whole analysis with
    /// [`RuntimeError::Analysis`], naming it.
    pub fn analyze(&self, modules: &Arc<ModuleSet>) -> Result<Analysis, RuntimeError> {
        let dir = self.ensure_written(modules)?;
        let dir_url = protocol::dir_url(&dir);
        let paths: Vec<&str> = modules
            .iter()
            .map(|(p, _)| p)
            .filter(|p| is_analyzed_module(p))
            .collect();
        let set_id = modules.id().clone();
        let phase = modules.import_phase();
        let mut lease = self.lease(WorkerKind::Udf, Some(&set_id), false)?;
        let worker = lease.worker();
        if let Err(e) = worker.send(&ToWorker::Analyze {
            dir_url: &dir_url,
            modules: paths.clone(),
            import_seed: protocol::hex(&phase.rng_seed),
            import_now_ms: phase.unix_time_ms,
        }) {
            let detail = format!("sending the analysis: {e}; {}", worker.exit_detail());
            return Err(RuntimeError::WorkerCrashed {
                pid: worker.pid(),
                path: "(analysis)".to_owned(),
                detail,
            });
        }
        worker.calls += 1;
        let limit = self.config().analyze_time_limit;
        let mut call = CallState {
            path: "(analysis)".to_owned(),
            user_limit: limit,
            import_limit: limit,
            importing: false,
            user_time: Default::default(),
            import_time: Default::default(),
            log_lines: Vec::new(),
            killed: false,
        };
        let finished = drive(
            &self.inner().watchdog,
            &mut lease,
            &mut call,
            &mut NoSyscalls,
            |_, _| {},
        );
        for line in &call.log_lines {
            tracing::info!("analysis log: {line}");
        }
        match finished {
            Ok(Finished::Analysis { modules, schema }) => {
                let worker = lease.worker();
                for path in &paths {
                    worker.loaded.insert((set_id.clone(), (*path).to_owned()));
                }
                if !worker.sets.contains(&set_id) {
                    worker.sets.push(set_id);
                }
                lease.finish(!call.killed);
                Ok(Analysis { modules, schema })
            }
            Ok(Finished::Done(Err(e))) => {
                lease.finish(!call.killed);
                Err(RuntimeError::Analysis { message: e.message })
            }
            Ok(Finished::Done(Ok(_))) => {
                let pid = lease.worker().pid();
                lease.finish(false);
                Err(RuntimeError::Protocol {
                    pid,
                    path: call.path,
                    detail: "a run's answer to an analysis".to_owned(),
                })
            }
            Ok(Finished::TimedOut(limit)) => {
                lease.finish(false);
                Err(RuntimeError::Analysis {
                    message: format!(
                        "Failed to analyze modules: importing them took longer than {limit:?}"
                    ),
                })
            }
            Ok(Finished::OutOfMemory) => {
                lease.finish(false);
                Err(RuntimeError::Analysis {
                    message: "Failed to analyze modules: JavaScript execution ran out of memory"
                        .to_owned(),
                })
            }
            Err(e) => {
                lease.finish(false);
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_as_the_cli_expects() {
        let module = AnalyzedModule {
            functions: vec![AnalyzedFunction {
                name: "list".to_owned(),
                pos: None,
                udf_type: UdfType::Query,
                visibility: Some(Visibility::Public),
                args: Some("{\"type\":\"object\",\"value\":{}}".to_owned()),
                returns: None,
            }],
            http_routes: None,
            cron_specs: None,
            source_mapped: None,
        };
        let json = serde_json::to_string(&BTreeMap::from([("messages.js", module)])).unwrap();
        assert_eq!(
            json,
            r#"{"messages.js":{"functions":[{"name":"list","pos":null,"udfType":"Query","visibility":{"kind":"public"},"args":"{\"type\":\"object\",\"value\":{}}","returns":null}],"httpRoutes":null,"cronSpecs":null,"sourceMapped":null}}"#
        );
        assert_eq!(
            serde_json::to_string(&Visibility::Internal).unwrap(),
            r#"{"kind":"internal"}"#
        );
    }
}
