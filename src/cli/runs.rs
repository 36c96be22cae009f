//! The client subcommands of RunService: `runs`, `watch`, `get`, `cancel`. A run is named by the
//! id `run --detach` prints (or `runs` lists); it lives in the server, not in this process.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use toolstream::pb;
use toolstream::pb::run_service_client::RunServiceClient;

use super::ask::Input;
use super::client::{connect, parse_labels};
use super::output::{follow, print_line, run_json, seconds, state_name, status_exit};
use super::{RespondArgs, RunIdArgs, RunsArgs, StateArg, WatchArgs};

pub(super) async fn runs(args: RunsArgs) -> anyhow::Result<ExitCode> {
    let mut client = RunServiceClient::new(connect(&args.client).await?);
    let state = match args.state {
        None => pb::RunState::Unspecified,
        Some(StateArg::Running) => pb::RunState::Running,
        Some(StateArg::InputRequired) => pb::RunState::InputRequired,
        Some(StateArg::Succeeded) => pb::RunState::Succeeded,
        Some(StateArg::Failed) => pb::RunState::Failed,
        Some(StateArg::Cancelled) => pb::RunState::Cancelled,
    };
    let interactive = std::io::stdout().is_terminal();
    let now = SystemTime::now();
    let mut page_token = String::new();
    let mut header = interactive;
    let labels = parse_labels(&args.labels)?;
    loop {
        let request = pb::ListRunsRequest {
            page_size: args.page_size.unwrap_or(0),
            page_token: std::mem::take(&mut page_token),
            state: state as i32,
            tool: args.tool.clone().unwrap_or_default(),
            labels: labels.clone(),
        };
        let page = match client.list_runs(request).await {
            Ok(response) => response.into_inner(),
            Err(status) => return Ok(status_exit(&status)),
        };
        for run in &page.runs {
            if !interactive {
                print_line(run_json(run))?;
                continue;
            }
            if std::mem::take(&mut header) {
                print_line(run_line(&RUN_HEADER))?;
            }
            print_line(run_line(&run_columns(run, now)))?;
        }
        if page.next_page_token.is_empty() {
            break;
        }
        if !args.all {
            if interactive {
                eprintln!("(more runs: pass --all to list them all)");
            }
            break;
        }
        page_token = page.next_page_token;
    }
    if header {
        eprintln!("no runs");
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn watch(args: WatchArgs) -> anyhow::Result<ExitCode> {
    let connection = connect(&args.client).await?;
    let mut client = RunServiceClient::new(connection.clone());
    let request = pb::WatchRunRequest {
        run_id: args.run_id.clone(),
        after_sequence: args.after,
        from_latest: args.latest,
        options: Some(pb::RunOptions {
            min_progress_interval_ms: args.min_interval_ms,
            heartbeat_interval_ms: args.heartbeat_ms,
            ..pb::RunOptions::default()
        }),
    };
    match client.watch_run(request).await {
        Ok(response) => {
            let input = Input::new(super::client::answerer(&connection), false);
            follow(response.into_inner(), short_id(&args.run_id), input).await
        }
        Err(status) => Ok(run_status_exit(&args.run_id, &status)),
    }
}

pub(super) async fn get(args: RunIdArgs) -> anyhow::Result<ExitCode> {
    let mut client = RunServiceClient::new(connect(&args.client).await?);
    let request = pb::GetRunRequest {
        run_id: args.run_id.clone(),
    };
    let run = match client.get_run(request).await {
        Ok(response) => response.into_inner(),
        Err(status) => return Ok(run_status_exit(&args.run_id, &status)),
    };
    if std::io::stdout().is_terminal() {
        let pretty: serde_json::Value = serde_json::from_str(&run_json(&run))?;
        println!("{}", serde_json::to_string_pretty(&pretty)?);
    } else {
        print_line(run_json(&run))?;
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn cancel(args: RunIdArgs) -> anyhow::Result<ExitCode> {
    let mut client = RunServiceClient::new(connect(&args.client).await?);
    let request = pb::CancelRunRequest {
        run_id: args.run_id.clone(),
    };
    let run = match client.cancel_run(request).await {
        Ok(response) => response.into_inner(),
        Err(status) => return Ok(run_status_exit(&args.run_id, &status)),
    };
    if !std::io::stdout().is_terminal() {
        print_line(run_json(&run))?;
    } else if run.error_message.is_empty() {
        println!("run {}: {}", run.run_id, state_name(run.state()));
    } else {
        println!(
            "run {}: {} ({})",
            run.run_id,
            state_name(run.state()),
            run.error_message
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `toolstream respond RUN REQUEST VALUE`: answers an input request.
pub(super) async fn respond(args: RespondArgs) -> anyhow::Result<ExitCode> {
    let mut client = RunServiceClient::new(connect(&args.client).await?);
    let value = args.value.as_deref().map(|text| {
        serde_json::from_str(text).unwrap_or_else(|_| serde_json::Value::String(text.to_owned()))
    });
    let request = pb::RespondToRunRequest {
        run_id: args.run_id.clone(),
        request_id: args.request_id,
        value: value.map(toolstream::json_proto::json_to_value),
        decline: args.decline,
    };
    let run = match client.respond_to_run(request).await {
        Ok(response) => response.into_inner(),
        // The run is there, the request is not: the server's message says so.
        Err(status) if status.message().contains("no input request") => {
            return Ok(status_exit(&status));
        }
        Err(status) => return Ok(run_status_exit(&args.run_id, &status)),
    };
    if std::io::stdout().is_terminal() {
        println!("run {}: {}", run.run_id, state_name(run.state()));
    } else {
        print_line(run_json(&run))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// A RunService error naming `run_id`: NOT_FOUND says plainly that there is no such run.
fn run_status_exit(run_id: &str, status: &tonic::Status) -> ExitCode {
    if status.code() != tonic::Code::NotFound {
        return status_exit(status);
    }
    eprintln!(
        "error: no run {run_id:?} on this server: it never existed there, or it ended longer \
         ago than the server keeps runs (`toolstream runs` lists those it holds)"
    );
    ExitCode::FAILURE
}

/// The first characters of a run id, enough to tell runs apart on a progress bar.
fn short_id(run_id: &str) -> &str {
    run_id.get(..8).unwrap_or(run_id)
}

/// The columns of `runs` on a terminal.
const RUN_HEADER: [&str; 7] = ["RUN", "STATE", "TOOL", "AGE", "TOOK", "SEQ", "PROGRESS"];

fn run_line<S: AsRef<str>>(columns: &[S; 7]) -> String {
    let [id, state, tool, age, took, sequence, progress] = columns.each_ref().map(AsRef::as_ref);
    format!("{id:32}  {state:9}  {tool:16}  {age:>6}  {took:>6}  {sequence:>7}  {progress:>8}")
}

/// One run as the columns of [`RUN_HEADER`]: how long ago it started, how long it took ("-"
/// while it runs), its last sequence, and the top level's latest progress.
fn run_columns(run: &pb::Run, now: SystemTime) -> [String; 7] {
    let at = |timestamp: &prost_types::Timestamp| {
        SystemTime::UNIX_EPOCH + Duration::from_secs_f64(seconds(timestamp).max(0.0))
    };
    let created = run.create_time.as_ref().map(at);
    let age = created.map(|created| now.duration_since(created).unwrap_or_default());
    let took = match (created, run.end_time.as_ref().map(at)) {
        (Some(created), Some(ended)) => Some(ended.duration_since(created).unwrap_or_default()),
        _ => None,
    };
    let progress = run
        .progress
        .iter()
        .find(|progress| progress.call_id.is_empty())
        .and_then(|progress| progress.progress)
        .map_or_else(
            || "-".to_owned(),
            |fraction| format!("{:.0}%", fraction * 100.0),
        );
    let tool = if run.agent || run.tool.is_empty() {
        "agent".to_owned()
    } else {
        run.tool.clone()
    };
    [
        run.run_id.clone(),
        state_name(run.state()).to_owned(),
        tool,
        age.map_or_else(|| "-".to_owned(), short_duration),
        took.map_or_else(|| "-".to_owned(), short_duration),
        run.last_sequence.to_string(),
        progress,
    ]
}

/// A duration in its two largest units, for a column: `850ms`, `12s`, `3m05s`, `2h01m`, `3d04h`.
fn short_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    match secs {
        0 => format!("{}ms", duration.subsec_millis()),
        1..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        3600..86400 => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d{:02}h", secs / 86400, secs % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_fit_a_column() {
        let cases = [
            (Duration::from_millis(850), "850ms"),
            (Duration::from_secs(12), "12s"),
            (Duration::from_secs(185), "3m05s"),
            (Duration::from_secs(2 * 3600 + 60), "2h01m"),
            (Duration::from_secs(3 * 86400 + 4 * 3600), "3d04h"),
        ];
        for (duration, expected) in cases {
            assert_eq!(short_duration(duration), expected);
        }
    }

    #[test]
    fn a_run_line_shows_state_tool_times_and_top_level_progress() {
        let created = prost_types::Timestamp {
            seconds: 1_000,
            nanos: 0,
        };
        let run = pb::Run {
            run_id: "0123456789abcdef0123456789abcdef".to_owned(),
            state: pb::RunState::Running as i32,
            tool: "ticks".to_owned(),
            create_time: Some(created),
            last_sequence: 41,
            progress: vec![
                pb::Progress {
                    progress: Some(0.5),
                    call_id: "call-1".to_owned(),
                    ..pb::Progress::default()
                },
                pb::Progress {
                    progress: Some(0.4),
                    ..pb::Progress::default()
                },
            ],
            ..pb::Run::default()
        };
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_012);
        let columns = run_columns(&run, now);
        assert_eq!(
            columns,
            [
                "0123456789abcdef0123456789abcdef",
                "running",
                "ticks",
                "12s",
                "-",
                "41",
                "40%"
            ]
        );

        let agent = pb::Run {
            agent: true,
            state: pb::RunState::Succeeded as i32,
            create_time: Some(created),
            end_time: Some(prost_types::Timestamp {
                seconds: 1_003,
                nanos: 0,
            }),
            ..pb::Run::default()
        };
        let columns = run_columns(&agent, now);
        assert_eq!(columns[2], "agent");
        assert_eq!(columns[4], "3s");
        assert_eq!(columns[6], "-");
    }
}
