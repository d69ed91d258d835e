//! The launcher: claims queued runs and executes them, at most `max_concurrent` at once,
//! until shut down. Pools' limits are the planner's (it counts every run in flight, of
//! every process): whatever is queued may run.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_model::partitions::{DynamicKeys, PartitionEnv, PartitionsDef};
use cairn_model::{AssetGraph, AssetId};
use cairn_store::{
    Materialization, NewEvent, NewLogLine, Run, RunStatus, RunTransition, Store, WriteHealth,
};
use chrono::Utc;
use sha2::{Digest as _, Sha256};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::environment::{self, EnvRequest, RunTarget, Secrets};
use crate::lineage::{self, RunLineage};
use crate::log_pump::LogPump;
use crate::output::OutputReport;
use crate::process;

#[derive(Debug, Clone)]
pub struct LauncherConfig {
    /// Recorded as `claimed_by`; see [`crate::worker_id`].
    pub worker_id: String,
    /// Where definitions live: commands' default working directory.
    pub assets_dir: PathBuf,
    /// Whether this executor may run PHI (and limited) assets.
    pub phi_capable: bool,
    pub max_concurrent: usize,
    /// How often a running run's liveness is recorded (and cancellation noticed).
    pub heartbeat: Duration,
    /// How often to look for queued runs when nothing wakes the launcher.
    pub poll: Duration,
    /// Between SIGTERM and SIGKILL when a run is stopped.
    pub kill_grace: Duration,
    /// A run's log keeps at most this many bytes of output; the rest is counted.
    pub log_cap_bytes: usize,
    pub secrets: Secrets,
}

impl LauncherConfig {
    pub fn new(worker_id: String, assets_dir: PathBuf) -> Self {
        Self {
            worker_id,
            assets_dir,
            phi_capable: true,
            max_concurrent: 4,
            heartbeat: Duration::from_secs(5),
            poll: Duration::from_millis(500),
            kill_grace: Duration::from_secs(10),
            log_cap_bytes: 8 << 20,
            secrets: Secrets::default(),
        }
    }
}

/// Executes queued runs. The definitions can be swapped while it runs (a reload).
pub struct Launcher {
    store: Store,
    config: Arc<LauncherConfig>,
    graph: watch::Receiver<Arc<AssetGraph>>,
    /// Poked by whoever enqueues, so a run starts without waiting for the poll.
    wake: Arc<Notify>,
    /// Poked when a run ends (the reconciler plans what it unblocks).
    run_ended: Arc<Notify>,
    /// Runs this launcher is executing (claimed, until their end is recorded or given up).
    executing: Arc<Mutex<std::collections::HashSet<String>>>,
    /// Whether the store takes writes: no run is claimed while it does not.
    write_health: WriteHealth,
    /// OpenLineage events, when the definitions have `[openlineage]`.
    lineage: lineage::Emitter,
}

impl Launcher {
    pub fn new(
        store: Store,
        config: LauncherConfig,
        graph: watch::Receiver<Arc<AssetGraph>>,
        wake: Arc<Notify>,
    ) -> Self {
        let lineage = lineage::Emitter::new(config.secrets.clone(), config.assets_dir.clone());
        Self {
            store,
            config: Arc::new(config),
            graph,
            wake,
            run_ended: Arc::default(),
            executing: Arc::default(),
            write_health: WriteHealth::default(),
            lineage,
        }
    }

    /// Shares the process's degraded mode: claim failures that are write faults are
    /// reported to it, and claiming pauses while it says the store refuses writes.
    pub fn with_write_health(mut self, health: WriteHealth) -> Self {
        self.write_health = health;
        self
    }

    pub fn on_run_end(mut self, notify: Arc<Notify>) -> Self {
        self.run_ended = notify;
        self
    }

    /// The end of runs recovery settled (their worker died, so nobody else will say it):
    /// `ABORT` for an interruption, `FAIL` for the interruption that failed the partition.
    /// Only the end: the dead process sent the START, if it got that far.
    pub fn lineage_recovered(&self, runs: &[crate::RecoveredRun]) {
        let graph = self.graph.borrow().clone();
        self.lineage.emit_recovered(&graph, runs);
    }

    /// Whether this launcher is executing run `id` (for recovery: a run claimed by this
    /// worker that it no longer executes lost its end).
    pub fn is_executing(&self, id: &str) -> bool {
        self.executing
            .lock()
            .expect("the run set is never poisoned")
            .contains(id)
    }

    /// Claims and executes runs until `shutdown`; then stops claiming, gives running
    /// commands `drain` to finish, kills what is left and marks those runs interrupted.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken, drain: Duration) {
        if let Err(e) = process::become_subreaper() {
            tracing::warn!(error = %e, "cannot become a child subreaper; a command's orphaned descendants are found by their environment only");
        }
        let slots = Arc::new(Semaphore::new(self.config.max_concurrent.max(1)));
        let kill = CancellationToken::new();
        let mut tasks = JoinSet::new();
        loop {
            while tasks.try_join_next().is_some() {}
            let permit = tokio::select! {
                p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
                _ = shutdown.cancelled() => break,
            };
            if self.write_health.degraded().is_some() {
                drop(permit);
                tokio::select! {
                    _ = self.write_health.writable() => continue,
                    _ = shutdown.cancelled() => break,
                }
            }
            match self
                .store
                .claim_run(&self.config.worker_id, Utc::now(), self.config.phi_capable)
                .await
            {
                Ok(Some(run)) => {
                    self.executing
                        .lock()
                        .expect("the run set is never poisoned")
                        .insert(run.id.clone());
                    let me = self.clone();
                    let kill = kill.clone();
                    tasks.spawn(async move {
                        let id = run.id.clone();
                        me.execute(run, kill).await;
                        me.executing
                            .lock()
                            .expect("the run set is never poisoned")
                            .remove(&id);
                        drop(permit);
                        me.run_ended.notify_one();
                    });
                }
                Ok(None) => {
                    drop(permit);
                    tokio::select! {
                        _ = self.wake.notified() => {}
                        _ = tokio::time::sleep(self.config.poll) => {}
                        _ = shutdown.cancelled() => break,
                    }
                }
                Err(e) => {
                    drop(permit);
                    if !self.write_health.report(&e) {
                        tracing::warn!(error = %e, "claiming a run failed; retrying");
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(self.config.poll * 4) => {}
                        _ = shutdown.cancelled() => break,
                    }
                }
            }
        }
        if !tasks.is_empty() {
            tracing::info!(
                running = tasks.len(),
                ?drain,
                "waiting for running commands"
            );
            let _ =
                tokio::time::timeout(drain, async { while tasks.join_next().await.is_some() {} })
                    .await;
            kill.cancel();
            while tasks.join_next().await.is_some() {}
        }
        // The runs' last events are out (or given up on) before the process exits, but a
        // dead endpoint does not hold a shutdown for long.
        self.lineage.flush(LINEAGE_FLUSH).await;
    }

    /// Executes one claimed run to a terminal state (or leaves it to whoever canceled it):
    /// prepare, clear what an earlier attempt left behind, start, supervise, collect the
    /// output, record the outcome.
    pub async fn execute(&self, run: Run, kill: CancellationToken) {
        let graph = self.graph.borrow().clone();
        let lineage = graph.openlineage().map(|to| {
            let range = run.range.as_ref().map(|(a, b)| (a.as_str(), b.as_str()));
            let subject = lineage::Subject::of_run(
                &graph,
                &run.id,
                &run.asset,
                run.partition.as_deref(),
                range,
            );
            RunLineage::new(self.lineage.clone(), to.clone(), subject)
        });
        let mut exec = Execution {
            store: &self.store,
            config: &self.config,
            run: &run,
            log: Vec::new(),
            secrets: Vec::new(),
            lineage,
            versions: Vec::new(),
        };
        let prepared = match self.prepare(&graph, &run).await {
            Ok(p) => p,
            Err(error) => return exec.fail(error, vec![]).await,
        };
        if let Some(l) = &mut exec.lineage {
            let ranges = prepared.target.partitions.ranges();
            if let (Some(first), Some(last)) = (ranges.first(), ranges.last()) {
                l.subject
                    .locate(first.start, last.end - 1, prepared.target.keys.len());
            }
        }
        exec.secrets = prepared.run_env.secret_values.clone();
        // Inputs are read from here on: anything newer makes this materialization stale.
        let inputs_as_of = match self.store.last_event_id().await {
            Ok(id) => id,
            Err(e) => {
                return exec
                    .fail(format!("reading the log position: {e}"), vec![])
                    .await;
            }
        };
        if !clear_earlier_attempt(&prepared.run_env, &mut exec).await {
            return;
        }
        let command = environment::command_of(graph.asset(prepared.asset))
            .expect("checked by environment::build");
        let Some((mut child, pid)) = self
            .start(&command.program, &prepared.run_env, &mut exec)
            .await
        else {
            return;
        };
        if let Some(l) = &mut exec.lineage {
            l.start();
        }
        let pump = LogPump::start(
            &mut child,
            self.store.clone(),
            run.id.clone(),
            prepared.run_env.secret_values.clone(),
            self.config.log_cap_bytes,
        );
        let ending = self
            .supervise(&mut child, pid, &run, command.timeout, &kill)
            .await;
        let report = match collect(pid, pump, prepared.output.path(), &mut exec).await {
            Ok(report) => report,
            Err(error) => return exec.fail(error, vec![]).await,
        };
        let outcome = Outcome {
            graph: &graph,
            prepared: &prepared,
            inputs_as_of,
            report: &report,
        };
        outcome.record(ending, &mut exec).await;
    }

    /// Everything a run needs before its command starts, or why it cannot start (the
    /// run's error).
    async fn prepare(&self, graph: &AssetGraph, run: &Run) -> Result<Prepared, String> {
        let id = graph
            .id_of(&run.asset)
            .ok_or_else(|| format!("asset {} is no longer defined", run.asset))?;
        if let Some(reason) = self.refusal(graph, id) {
            return Err(reason);
        }
        let dynamic = load_dynamic(&self.store, graph, id)
            .await
            .map_err(|e| format!("reading dynamic partitions: {e}"))?;
        let now = Utc::now();
        let env = PartitionEnv {
            now,
            dynamic: &dynamic,
        };
        let range = run.range.as_ref().map(|(a, b)| (a.as_str(), b.as_str()));
        let target = RunTarget::resolve(graph, id, run.partition.as_deref(), range, env)?;
        let output = crate::scratch::output_file(&run.id)
            .map_err(|e| format!("creating the output file: {e}"))?;
        // CAIRN_ATTEMPT counts every start of the command: retries after failures (the
        // run's `attempt`) and re-runs after interruptions, which use no retry budget but
        // are attempts all the same (a command that resumes or cleans up tells them apart).
        let interrupted = self
            .store
            .interruptions_in_a_row(&run.asset, run.partition.as_deref())
            .await
            .unwrap_or(0);
        let run_env = environment::build(&EnvRequest {
            graph,
            target: &target,
            env,
            assets_dir: &self.config.assets_dir,
            run_id: &run.id,
            attempt: run.attempt + interrupted,
            output_path: output.path(),
            secrets: &self.config.secrets,
        })
        .map_err(|e| e.to_string())?;
        Ok(Prepared {
            asset: id,
            dynamic,
            now,
            target,
            output,
            run_env,
        })
    }

    /// Spawns the command and records the run as running; `None` when it must not run
    /// after all (canceled or recovered between claim and start: what started is killed)
    /// or could not be spawned (the run failed).
    async fn start(
        &self,
        program: &cairn_model::Program,
        run_env: &environment::RunEnvironment,
        exec: &mut Execution<'_>,
    ) -> Option<(tokio::process::Child, u32)> {
        let run = exec.run;
        let mut child = match process::spawn(program, run_env) {
            Ok(c) => c,
            Err(e) => {
                exec.fail(e, vec![]).await;
                return None;
            }
        };
        let pid = child.id().unwrap_or(0);
        let started = self
            .store
            .transition(&RunTransition {
                run_id: run.id.clone(),
                to: RunStatus::Running,
                at: Utc::now(),
                pid: Some(i64::from(pid)),
                error: None,
                events: vec![],
            })
            .await;
        if let Err(e) = started {
            process::terminate(&mut child, pid, &run.id, Duration::ZERO).await;
            process::kill_attempt(Some(pid), &run.id, KILL_CHECK).await;
            process::forget_leader(pid);
            tracing::info!(run = %run.id, error = %e, "run not started");
            return None;
        }
        Some((child, pid))
    }

    /// Why this executor must not run the asset, if it must not.
    fn refusal(&self, graph: &AssetGraph, id: AssetId) -> Option<String> {
        let asset = graph.asset(id);
        let class = asset.classification.effective;
        if !class.is_protected() {
            return None;
        }
        if !self.config.phi_capable {
            return Some(format!(
                "refused: {} is {} and executor {} is not PHI-capable",
                asset.key,
                class.as_str(),
                self.config.worker_id
            ));
        }
        let pool = asset.pool.as_deref()?;
        match graph.pools().get(pool) {
            Some(p) if !p.phi_capable => Some(format!(
                "refused: {} is {} and its pool {pool} is not PHI-capable",
                asset.key,
                class.as_str()
            )),
            _ => None,
        }
    }

    async fn supervise(
        &self,
        child: &mut tokio::process::Child,
        pid: u32,
        run: &Run,
        timeout: Option<Duration>,
        kill: &CancellationToken,
    ) -> Ending {
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let mut heartbeat = tokio::time::interval(self.config.heartbeat);
        heartbeat.tick().await;
        loop {
            tokio::select! {
                status = child.wait() => {
                    return match status {
                        Ok(s) => Ending::Exited(s),
                        Err(_) => Ending::Interrupted,
                    };
                }
                _ = sleep_until(deadline) => {
                    process::terminate(child, pid, &run.id, self.config.kill_grace).await;
                    return Ending::TimedOut(timeout.unwrap_or_default());
                }
                _ = heartbeat.tick() => {
                    // false: the run is no longer ours to run (canceled, or recovered).
                    if let Ok(false) = self.store.heartbeat(&run.id, Utc::now()).await {
                        process::terminate(child, pid, &run.id, self.config.kill_grace).await;
                        return Ending::Canceled;
                    }
                }
                _ = kill.cancelled() => {
                    // The shutdown grace was the command's time to finish: no second one.
                    process::terminate(child, pid, &run.id, Duration::ZERO).await;
                    return Ending::Interrupted;
                }
            }
        }
    }
}

/// How long killing an attempt's processes may take before the survivors are reported.
const KILL_CHECK: Duration = Duration::from_secs(5);

/// How long the log is read after the attempt's processes are gone.
const PIPE_GRACE: Duration = Duration::from_secs(2);

/// The output file's bytes, at most [`crate::output::MAX_OUTPUT_FILE`].
fn read_output(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path)
        .map_err(|e| format!("reading the output file {}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    let cap = crate::output::MAX_OUTPUT_FILE as u64;
    file.take(cap + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("reading the output file {}: {e}", path.display()))?;
    if bytes.len() as u64 > cap {
        return Err(format!(
            "the output protocol was broken: the output file is over {cap} bytes"
        ));
    }
    Ok(bytes)
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

enum Ending {
    Exited(std::process::ExitStatus),
    TimedOut(Duration),
    Canceled,
    Interrupted,
}

/// What [`Launcher::prepare`] found: the run's target, environment and output file.
struct Prepared {
    asset: AssetId,
    dynamic: DynamicKeys,
    /// When the run's partitions were resolved.
    now: chrono::DateTime<Utc>,
    target: RunTarget,
    output: tempfile::NamedTempFile,
    run_env: environment::RunEnvironment,
}

impl Prepared {
    fn env(&self) -> PartitionEnv<'_> {
        PartitionEnv {
            now: self.now,
            dynamic: &self.dynamic,
        }
    }
}

/// Checked, not assumed: nothing of an earlier attempt of this partition (of these
/// definitions) still runs on this host. False when something survived killing (the run
/// is then interrupted, not started beside it).
async fn clear_earlier_attempt(
    run_env: &environment::RunEnvironment,
    exec: &mut Execution<'_>,
) -> bool {
    let run_id = &exec.run.id;
    let same_partition: Vec<String> = run_env
        .vars
        .iter()
        .filter(|(k, _)| {
            matches!(
                k.as_str(),
                "CAIRN_ASSETS_DIR" | "CAIRN_ASSET" | "CAIRN_PARTITION" | "CAIRN_PARTITION_FIRST"
            )
        })
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let earlier = process::leftovers(&same_partition, run_id);
    if earlier.is_empty() {
        return true;
    }
    let left = process::kill_all(
        || process::leftovers(&same_partition, run_id),
        Duration::from_secs(5),
    )
    .await;
    exec.note(format!(
        "{} process(es) of an earlier attempt of this partition were still running and were killed",
        earlier.len()
    ));
    if !left.is_empty() {
        exec.interrupt(format!(
            "processes {left:?} of an earlier attempt of this partition survive SIGKILL; not starting beside them"
        ))
        .await;
        return false;
    }
    true
}

/// After the command's leader ended: kills whatever of the attempt is left, drains the
/// log, and reads the output file (its log lines and problems go into the run's log).
async fn collect(
    pid: u32,
    pump: LogPump,
    output: &Path,
    exec: &mut Execution<'_>,
) -> Result<OutputReport, String> {
    process::forget_leader(pid);
    // Whatever the leader did, nothing it started outlives the run (checked).
    let left = process::kill_attempt(Some(pid), &exec.run.id, KILL_CHECK).await;
    if !left.is_empty() {
        exec.note(format!(
            "processes {left:?} of this attempt survived SIGKILL"
        ));
    }
    // A process outside the attempt (it left its session and environment) may still
    // hold the pipes: the log is not waited for beyond a moment.
    if !pump.finish(PIPE_GRACE).await {
        exec.note(format!(
            "stopped reading the command's output: a process outside the attempt still held it open {}s after the end",
            PIPE_GRACE.as_secs()
        ));
    }
    let report = OutputReport::parse_bytes(&read_output(output)?);
    for (level, message) in &report.logs {
        exec.note(format!("[{}] {message}", level.as_str()));
    }
    for problem in &report.problems {
        exec.note(format!("output file: ignored {problem}"));
    }
    Ok(report)
}

/// How a run that got as far as its command ended, to be recorded.
struct Outcome<'a> {
    graph: &'a AssetGraph,
    prepared: &'a Prepared,
    inputs_as_of: cairn_store::EventId,
    report: &'a OutputReport,
}

impl Outcome<'_> {
    async fn record(&self, ending: Ending, exec: &mut Execution<'_>) {
        if matches!(&ending, Ending::Exited(status) if status.success())
            && let Some(why) = self.report.violations.first()
        {
            return exec
                .fail(format!("the output protocol was broken: {why}"), vec![])
                .await;
        }
        match ending {
            Ending::Exited(status) if status.success() => {
                exec.succeed(
                    self.graph,
                    self.prepared.asset,
                    &self.prepared.target,
                    self.report,
                    self.inputs_as_of,
                    self.prepared.env(),
                )
                .await
            }
            Ending::Exited(status) => exec.fail(process::describe_exit(status), vec![]).await,
            Ending::TimedOut(after) => {
                exec.fail(
                    format!(
                        "timed out after {}; its process group was killed",
                        cairn_model::policy::format_duration(after)
                    ),
                    vec![],
                )
                .await
            }
            Ending::Interrupted => {
                exec.interrupt(
                    "interrupted: Cairn shut down past its grace period; every process of the command was killed".into(),
                )
                .await
            }
            Ending::Canceled => {
                exec.note("canceled; its process group was killed".into());
                exec.flush().await;
                exec.lineage_end(lineage::Ending::Abort);
            }
        }
    }
}

/// Dynamic partition keys for the definitions the asset and its upstreams use.
async fn load_dynamic(
    store: &Store,
    graph: &AssetGraph,
    id: AssetId,
) -> Result<DynamicKeys, cairn_store::Error> {
    let mut keys = DynamicKeys::new();
    let asset = graph.asset(id);
    let ids = std::iter::once(id).chain(asset.deps.iter().map(|d| d.upstream));
    for used in ids {
        let Some(p) = &graph.asset(used).partitions else {
            continue;
        };
        let defs: Vec<&str> = match &*p.def {
            PartitionsDef::Dynamic(_) => vec![p.name.as_str()],
            _ => continue,
        };
        for name in defs {
            for row in store.dynamic_partitions(name).await? {
                keys.add(name, &row.key);
                if row.removed {
                    keys.remove(name, &row.key);
                }
            }
        }
    }
    Ok(keys)
}

/// A run being finished: Cairn's own log lines, then the terminal transition.
struct Execution<'a> {
    store: &'a Store,
    config: &'a LauncherConfig,
    run: &'a Run,
    log: Vec<String>,
    /// Values masked in everything written about the run: its log, error and events.
    secrets: Vec<String>,
    /// The run's OpenLineage events, when the definitions ask for them.
    lineage: Option<RunLineage>,
    /// What a success recorded, per partition (as events may show it): the data version.
    versions: Vec<(String, String)>,
}

impl Execution<'_> {
    fn note(&mut self, line: String) {
        self.log.push(environment::mask(&line, &self.secrets));
    }

    /// The run's end, once it is recorded (an event never says what the store does not).
    fn lineage_end(&mut self, ending: lineage::Ending) {
        if let Some(l) = &mut self.lineage {
            l.end(&ending);
        }
    }

    /// The run ended elsewhere (canceled or recovered while this launcher finished it):
    /// an event that was started is closed as aborted.
    fn lineage_ended_elsewhere(&mut self) {
        if self.lineage.as_ref().is_some_and(RunLineage::started) {
            self.lineage_end(lineage::Ending::Abort);
        }
    }

    async fn flush(&mut self) {
        let at = Utc::now();
        let lines: Vec<_> = self
            .log
            .iter()
            .map(|l| NewLogLine::new(at, "cairn", l))
            .collect();
        if let Err(e) = self.store.append_run_log(&self.run.id, &lines).await {
            tracing::warn!(run = %self.run.id, error = %e, "writing the run's log failed");
        }
        self.log.clear();
    }

    async fn fail(&mut self, error: String, events: Vec<NewEvent>) {
        let error = environment::mask(&error, &self.secrets);
        tracing::warn!(run = %self.run.id, asset = %self.run.asset, %error, "run failed");
        self.note(format!("run failed: {error}"));
        self.flush().await;
        self.finish(RunStatus::Failed, Some(error), events).await;
    }

    /// Ends the run as interrupted (not the asset's failure; see `recovery::interrupt`).
    async fn interrupt(&mut self, reason: String) {
        let reason = environment::mask(&reason, &self.secrets);
        tracing::warn!(run = %self.run.id, asset = %self.run.asset, %reason, "run interrupted");
        self.note(reason.clone());
        self.flush().await;
        let mut delay = Duration::from_millis(100);
        for _ in 0..END_ATTEMPTS {
            match crate::recovery::interrupt(self.store, self.run, &reason, Utc::now()).await {
                Ok(run) => {
                    // The last interruption in a row is recorded as a failure.
                    self.lineage_end(match run.status {
                        RunStatus::Failed => lineage::Ending::Fail { error: run.error },
                        _ => lineage::Ending::Abort,
                    });
                    return;
                }
                Err(cairn_store::Error::IllegalTransition { .. }) => {
                    self.lineage_ended_elsewhere();
                    return;
                }
                Err(e) => {
                    tracing::warn!(run = %self.run.id, error = %e, "recording the interruption failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
        tracing::error!(run = %self.run.id, "could not record the interruption; recovery will");
    }

    /// Records the run's end. A store that fails is retried with backoff; an end whose
    /// events cannot be written is recorded as a failure saying why; an end that cannot be
    /// recorded at all is left to recovery, which finds this worker's runs it no longer
    /// executes. Never silent.
    async fn finish(&mut self, to: RunStatus, error: Option<String>, mut events: Vec<NewEvent>) {
        for e in &mut events {
            environment::mask_json(&mut e.payload, &self.secrets);
        }
        let mut t = RunTransition {
            run_id: self.run.id.clone(),
            to,
            at: Utc::now(),
            pid: None,
            error,
            events,
        };
        let mut delay = Duration::from_millis(100);
        for _ in 0..END_ATTEMPTS {
            match self.store.transition(&t).await {
                Ok(_) => {
                    let ending = match t.to {
                        RunStatus::Succeeded => lineage::Ending::Complete {
                            versions: std::mem::take(&mut self.versions),
                        },
                        RunStatus::Failed => lineage::Ending::Fail {
                            error: t.error.clone(),
                        },
                        _ => lineage::Ending::Abort,
                    };
                    self.lineage_end(ending);
                    return;
                }
                // Already canceled or recovered elsewhere: that outcome stands.
                Err(cairn_store::Error::IllegalTransition { .. }) => {
                    tracing::info!(run = %self.run.id, "the run had already ended elsewhere");
                    self.lineage_ended_elsewhere();
                    return;
                }
                // What it reported cannot be recorded: a failure that says so.
                Err(e @ (cairn_store::Error::Invalid(_) | cairn_store::Error::Corrupt { .. }))
                    if !t.events.is_empty() || t.to != RunStatus::Failed =>
                {
                    let error = format!("its end could not be recorded: {e}");
                    tracing::error!(run = %self.run.id, %error, "recording the run's end failed");
                    let at = Utc::now();
                    let _ = self
                        .store
                        .append_run_log(&self.run.id, &[NewLogLine::new(at, "cairn", &error)])
                        .await;
                    t = RunTransition {
                        to: RunStatus::Failed,
                        at,
                        error: Some(error),
                        events: vec![],
                        ..t
                    };
                }
                Err(e) => {
                    tracing::warn!(run = %self.run.id, error = %e, worker = %self.config.worker_id, "recording the run's end failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
        tracing::error!(run = %self.run.id, worker = %self.config.worker_id, "could not record the run's end; recovery will interrupt it");
    }

    #[allow(clippy::too_many_arguments)]
    async fn succeed(
        &mut self,
        graph: &AssetGraph,
        id: AssetId,
        target: &RunTarget,
        report: &OutputReport,
        inputs_as_of: i64,
        env: PartitionEnv<'_>,
    ) {
        let asset = graph.asset(id);
        let failed = report.blocking_failures();
        if !failed.is_empty() {
            self.fail(
                format!("asset check(s) failed: {}", failed.join(", ")),
                vec![],
            )
            .await;
            return;
        }
        // Without a reported version: the declared outputs' sha256, else the run id.
        let outputs_version = if asset.outputs.is_empty() {
            None
        } else {
            match hash_outputs(&self.config.assets_dir, &asset.outputs) {
                Ok(v) => Some(v),
                Err(e) => {
                    self.fail(e, vec![]).await;
                    return;
                }
            }
        };
        // The keys as lineage events may show them (none without lineage).
        let shown = self.lineage.as_ref().map_or_else(Vec::new, |l| {
            l.subject.shown_keys(&target.keys, &target.partitions)
        });
        if asset.is_source {
            // An observation reports what is there; a version it did not give is unknown.
            let mut events = Vec::with_capacity(target.keys.len());
            for (i, key) in target.keys.iter().enumerate() {
                let Some(version) = report
                    .data_version_of(key)
                    .map(str::to_owned)
                    .or_else(|| outputs_version.clone())
                else {
                    self.fail("the observe command reported no data version (see docs/output-protocol.md)".into(), vec![]).await;
                    return;
                };
                let metadata = serde_json::Value::Object(report.metadata_of(key));
                if let Some(key) = shown.get(i) {
                    self.versions.push((key.clone(), version.clone()));
                }
                events.push(
                    NewEvent::observation(Utc::now(), asset.key.as_str(), key, &version, metadata)
                        .run(&self.run.id),
                );
            }
            self.note(format!(
                "succeeded: {} partition(s) observed",
                target.keys.len()
            ));
            self.flush().await;
            self.finish(RunStatus::Succeeded, None, events).await;
            return;
        }
        let provenance = provenance(graph, id, target, env);
        let provenance_hash = Materialization::provenance_hash_of(&provenance);
        let at = Utc::now();
        let mut events = Vec::with_capacity(target.keys.len());
        for (i, key) in target.keys.iter().enumerate() {
            let data_version = report
                .data_version_of(key)
                .map(str::to_owned)
                .or_else(|| outputs_version.clone())
                .unwrap_or_else(|| self.run.id.clone());
            let mut metadata = report.metadata_of(key);
            if !report.checks.is_empty() {
                metadata.insert(
                    "checks".into(),
                    serde_json::to_value(&report.checks).unwrap_or_default(),
                );
            }
            if let Some(key) = shown.get(i) {
                self.versions.push((key.clone(), data_version.clone()));
            }
            let m = Materialization {
                data_version,
                code_version: asset.code_version.clone(),
                provenance_hash: provenance_hash.clone(),
                inputs_as_of,
                provenance: provenance.clone(),
                metadata: serde_json::Value::Object(metadata),
            };
            events
                .push(NewEvent::materialization(at, asset.key.as_str(), key, &m).run(&self.run.id));
        }
        self.note(format!(
            "succeeded: {} partition(s) materialized",
            target.keys.len()
        ));
        self.flush().await;
        self.finish(RunStatus::Succeeded, None, events).await;
    }
}

/// Attempts at recording a run's end before leaving it to recovery.
const END_ATTEMPTS: u32 = 8;

/// How long a stopping launcher waits for its OpenLineage events to be sent.
const LINEAGE_FLUSH: Duration = Duration::from_secs(5);

/// What the run read: per dependency, the upstream partitions (as key ranges).
fn provenance(
    graph: &AssetGraph,
    id: AssetId,
    target: &RunTarget,
    env: PartitionEnv<'_>,
) -> serde_json::Value {
    let deps: Vec<serde_json::Value> = graph
        .asset(id)
        .deps
        .iter()
        .map(|dep| {
            let up = graph.asset(dep.upstream);
            let ranges: Vec<[String; 2]> = match &up.partitions {
                None => vec![],
                Some(p) => dep
                    .mapping
                    .upstream_of_set(&target.partitions, env)
                    .ranges()
                    .iter()
                    .map(|r| {
                        [
                            p.def.key_of(r.start, env).unwrap_or_default(),
                            p.def.key_of(r.end - 1, env).unwrap_or_default(),
                        ]
                    })
                    .collect(),
            };
            serde_json::json!({ "asset": up.key.as_str(), "partitions": ranges })
        })
        .collect();
    serde_json::json!({ "inputs": deps })
}

/// sha256 over the declared outputs' names and contents; a missing output is an error.
fn hash_outputs(assets_dir: &Path, outputs: &[String]) -> Result<String, String> {
    let mut all = Sha256::new();
    for o in outputs {
        let path = assets_dir.join(o);
        let bytes = std::fs::read(&path)
            .map_err(|e| format!("declared output {o} was not written ({e})"))?;
        all.update(o.as_bytes());
        all.update([0]);
        all.update(Sha256::digest(&bytes));
    }
    Ok(hex::encode(all.finalize()))
}
