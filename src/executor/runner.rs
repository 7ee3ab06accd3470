//! The executor process: connects to the job's database as its role and runs
//! the command as psql runs a script, one statement after another.

use super::channel::{Channel, Outcome, Request};
use pgrx::pg_sys;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;
use std::ffi::{CStr, CString, c_char, c_int, c_long};
use std::time::Instant;

// utils/timeout.h, which pgrx does not bind. STATEMENT_TIMEOUT is the fourth
// of the predefined timeouts in every supported major; its handler cancels
// the running statement with "canceling statement due to statement timeout".
const STATEMENT_TIMEOUT: u32 = 3;
unsafe extern "C" {
    fn enable_timeout_after(id: u32, delay_ms: c_int);
    fn disable_timeout(id: u32, keep_indicator: bool);
}

// The signal handler itself: pgrx's pg_sys::die is a Rust wrapper around it.
unsafe extern "C-unwind" {
    #[link_name = "die"]
    fn die_handler(signal: c_int);
}

/// This process's channel, for the log hook that records a FATAL error.
static mut CHANNEL: Option<Channel> = None;

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn jobs_sql_executor_main(arg: pg_sys::Datum) {
    // SIGTERM (a canceled job, pg_terminate_backend, shutdown) ends the
    // command at its next interrupt check, as it would end a client's query,
    // rather than exiting inside a signal handler.
    unsafe {
        #[cfg(not(feature = "pg18"))]
        pg_sys::pqsignal(pg_sys::SIGTERM as c_int, Some(die_handler));
        #[cfg(feature = "pg18")]
        pg_sys::pqsignal_be(pg_sys::SIGTERM as c_int, Some(die_handler));
        pg_sys::BackgroundWorkerUnblockSignals();
    }
    let Some(channel) = Channel::attach(arg.value() as u32) else {
        // The worker gave up on this job before we started: nothing to do.
        exit(0)
    };
    let request = channel.request();
    unsafe {
        CHANNEL = Some(channel);
        PREVIOUS_LOG_HOOK = pg_sys::emit_log_hook;
        pg_sys::emit_log_hook = Some(record_fatal);
    }
    let outcome = match request {
        Ok(request) => {
            connect(&request);
            run_command(&request.command, request.timeout_ms)
        }
        Err(e) => Outcome::Failed { error: format!("XX000: unreadable SQL job request: {e}") },
    };
    #[allow(static_mut_refs)]
    if let Some(channel) = unsafe { CHANNEL.as_ref() } {
        channel.put_outcome(&outcome);
    }
    exit(0)
}

/// proc_exit, which the bindings of PostgreSQL 18 do not mark as diverging.
#[allow(unreachable_code)]
fn exit(code: c_int) -> ! {
    unsafe { pg_sys::proc_exit(code) };
    unreachable!("proc_exit does not return")
}

/// Connects as the job's role: a FATAL error here (the role may not log in,
/// the database is gone) reaches the worker through `record_fatal`.
fn connect(request: &Request) {
    let database = CString::new(request.database.as_str()).expect("names have no NUL");
    let role = CString::new(request.run_as.as_str()).expect("names have no NUL");
    // PostgreSQL 17 lets a background worker act as a role without LOGIN,
    // as SET ROLE would; on earlier majors jobs.enqueue_sql refuses such roles.
    #[cfg(any(feature = "pg17", feature = "pg18"))]
    let flags = pg_sys::BGWORKER_BYPASS_ROLELOGINCHECK;
    #[cfg(not(any(feature = "pg17", feature = "pg18")))]
    let flags = 0;
    unsafe {
        pg_sys::BackgroundWorkerInitializeConnection(database.as_ptr(), role.as_ptr(), flags);
        let name = CString::new(format!("jobs sql job {}", request.job_id)).expect("no NUL");
        pg_sys::SetConfigOption(
            c"application_name".as_ptr(),
            name.as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
        );
    }
}

static mut PREVIOUS_LOG_HOOK: pg_sys::emit_log_hook_type = None;

/// Errors the command's own handling never sees (FATAL: terminated,
/// connection refused) become the job's error.
#[pg_guard]
unsafe extern "C-unwind" fn record_fatal(edata: *mut pg_sys::ErrorData) {
    unsafe {
        if (*edata).elevel >= pg_sys::FATAL as c_int {
            #[allow(static_mut_refs)]
            if let Some(channel) = CHANNEL.as_ref() {
                let message = if (*edata).message.is_null() {
                    String::new()
                } else {
                    CStr::from_ptr((*edata).message).to_string_lossy().into_owned()
                };
                channel
                    .put_outcome(&Outcome::Failed { error: format!("{}: {message}", sqlstate((*edata).sqlerrcode)) });
            }
        }
        if let Some(previous) = PREVIOUS_LOG_HOOK {
            previous(edata);
        }
    }
}

/// The five characters of a SQLSTATE packed by MAKE_SQLSTATE.
fn sqlstate(code: c_int) -> String {
    (0..5).map(|i| char::from((((code >> (6 * i)) & 0x3F) as u8) + b'0')).collect()
}

/// Runs every statement of `command`, each in its own transaction unless the
/// command opened one; the first error ends it.
fn run_command(command: &str, timeout_ms: Option<u64>) -> Outcome {
    let deadline = timeout_ms.map(|ms| (Instant::now(), ms));
    let Ok(sql) = CString::new(command) else {
        return Outcome::Failed { error: "22021: command contains a NUL character".into() };
    };
    // Parse trees and plans outlive the transactions that statements such as
    // VACUUM commit while they run.
    let context = unsafe {
        pg_sys::AllocSetContextCreateInternal(
            pg_sys::TopMemoryContext,
            c"jobs sql command".as_ptr(),
            pg_sys::ALLOCSET_DEFAULT_MINSIZE as usize,
            pg_sys::ALLOCSET_DEFAULT_INITSIZE as usize,
            pg_sys::ALLOCSET_DEFAULT_MAXSIZE as usize,
        )
    };
    let sql_ptr = sql.as_ptr();
    let result = PgTryBuilder::new(move || unsafe { run_statements(sql_ptr, context, deadline) })
        .catch_others(|e| {
            unsafe {
                pg_sys::debug_query_string = std::ptr::null();
                disable_timeout(STATEMENT_TIMEOUT, false);
                pg_sys::AbortOutOfAnyTransaction();
            }
            let (code, message) = match &e {
                CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) => {
                    (r.sql_error_code() as c_int, r.message().to_string())
                }
                CaughtError::RustPanic { ereport, .. } => {
                    (ereport.sql_error_code() as c_int, ereport.message().to_string())
                }
            };
            Outcome::Failed { error: format!("{}: {message}", sqlstate(code)) }
        })
        .execute();
    unsafe {
        pg_sys::pgstat_report_activity(pg_sys::BackendState::STATE_IDLE, std::ptr::null());
        pg_sys::MemoryContextDelete(context);
    }
    result
}

unsafe fn run_statements(
    sql: *const c_char,
    context: pg_sys::MemoryContext,
    deadline: Option<(Instant, u64)>,
) -> Outcome {
    unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        let old = pg_sys::MemoryContextSwitchTo(context);
        let statements = pg_sys::pg_parse_query(sql);
        pg_sys::MemoryContextSwitchTo(old);
        pg_sys::CommitTransactionCommand();

        // A command of only comments or semicolons has no statement.
        let mut last = Outcome::Completed { status: String::new(), rows: 0 };
        let count = if statements.is_null() { 0 } else { (*statements).length };
        for i in 0..count {
            let statement = pg_sys::list_nth(statements, i) as *mut pg_sys::RawStmt;
            pg_sys::check_for_interrupts!();
            // now() and statement_timestamp() of this statement's transaction.
            pg_sys::SetCurrentStatementStartTimestamp();
            pg_sys::StartTransactionCommand();
            arm_timeout(deadline);
            let text = statement_text(sql, statement);
            pg_sys::pgstat_report_activity(pg_sys::BackendState::STATE_RUNNING, text.as_ptr());
            pg_sys::debug_query_string = text.as_ptr();
            last = run_statement(sql, statement, context);
            pg_sys::CommitTransactionCommand();
            disable_timeout(STATEMENT_TIMEOUT, false);
            pg_sys::debug_query_string = std::ptr::null();
        }
        if pg_sys::IsTransactionBlock() {
            // psql would end the session here and PostgreSQL roll back.
            pg_sys::AbortOutOfAnyTransaction();
            return Outcome::Failed {
                error: "25001: the command ended inside a transaction block (BEGIN without COMMIT): it was rolled back"
                    .into(),
            };
        }
        last
    }
}

/// Bounds the next statement by what is left of the command's timeout, and
/// by statement_timeout when the role or the command set one.
unsafe fn arm_timeout(deadline: Option<(Instant, u64)>) {
    let left = deadline.map(|(start, ms)| ms.saturating_sub(start.elapsed().as_millis() as u64).max(1));
    let per_statement = unsafe { pg_sys::StatementTimeout };
    let per_statement = (per_statement > 0).then_some(per_statement as u64);
    let bound = match (left, per_statement) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    if let Some(ms) = bound {
        unsafe { enable_timeout_after(STATEMENT_TIMEOUT, ms.min(i32::MAX as u64) as c_int) };
    }
}

/// The statement's own text, for pg_stat_activity and the log.
unsafe fn statement_text(sql: *const c_char, statement: *mut pg_sys::RawStmt) -> CString {
    unsafe {
        let whole = CStr::from_ptr(sql).to_bytes();
        let start = ((*statement).stmt_location.max(0) as usize).min(whole.len());
        let end = match (*statement).stmt_len {
            0 => whole.len(),
            len => (start + len as usize).min(whole.len()),
        };
        CString::new(whole[start..end].trim_ascii()).expect("a slice of a C string has no NUL")
    }
}

/// One statement through a portal, as PostgreSQL runs a client's query.
unsafe fn run_statement(
    sql: *const c_char,
    statement: *mut pg_sys::RawStmt,
    context: pg_sys::MemoryContext,
) -> Outcome {
    unsafe {
        let tag = pg_sys::CreateCommandTag((*statement).stmt);
        let snapshot = pg_sys::analyze_requires_snapshot(statement);
        if snapshot {
            pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
        }
        let old = pg_sys::MemoryContextSwitchTo(context);
        #[cfg(feature = "pg14")]
        let queries = pg_sys::pg_analyze_and_rewrite(statement, sql, std::ptr::null_mut(), 0, std::ptr::null_mut());
        #[cfg(not(feature = "pg14"))]
        let queries =
            pg_sys::pg_analyze_and_rewrite_fixedparams(statement, sql, std::ptr::null(), 0, std::ptr::null_mut());
        let plans =
            pg_sys::pg_plan_queries(queries, sql, pg_sys::CURSOR_OPT_PARALLEL_OK as c_int, std::ptr::null_mut());
        pg_sys::MemoryContextSwitchTo(old);
        if snapshot {
            pg_sys::PopActiveSnapshot();
        }

        let portal = pg_sys::CreatePortal(c"".as_ptr(), true, true);
        (*portal).visible = false;
        pg_sys::PortalDefineQuery(portal, std::ptr::null(), sql, tag, plans, std::ptr::null_mut());
        pg_sys::PortalStart(portal, std::ptr::null_mut(), 0, std::ptr::null_mut());
        let receiver = pg_sys::CreateDestReceiver(pg_sys::CommandDest::DestNone);
        let mut done = pg_sys::QueryCompletion { commandTag: pg_sys::CommandTag::CMDTAG_UNKNOWN, nprocessed: 0 };
        #[cfg(not(feature = "pg18"))]
        pg_sys::PortalRun(portal, c_long::MAX, true, true, receiver, receiver, &mut done);
        #[cfg(feature = "pg18")]
        pg_sys::PortalRun(portal, c_long::MAX, true, receiver, receiver, &mut done);
        if let Some(destroy) = (*receiver).rDestroy {
            destroy(receiver);
        }
        pg_sys::PortalDrop(portal, false);

        let tag = if done.commandTag == pg_sys::CommandTag::CMDTAG_UNKNOWN { tag } else { done.commandTag };
        let status = CStr::from_ptr(pg_sys::GetCommandTagName(tag)).to_string_lossy().into_owned();
        Outcome::Completed { status, rows: done.nprocessed }
    }
}

#[cfg(test)]
mod unit_tests {
    use super::sqlstate;

    #[test]
    fn sqlstates_unpack_as_postgres_packs_them() {
        // MAKE_SQLSTATE('5','7','0','1','4') and ('4','2','5','0','1')
        let pack = |s: &str| s.bytes().enumerate().map(|(i, b)| (i32::from(b - b'0') & 0x3F) << (6 * i)).sum::<i32>();
        assert_eq!(sqlstate(pack("57014")), "57014");
        assert_eq!(sqlstate(pack("42501")), "42501");
        assert_eq!(sqlstate(pack("XX000")), "XX000");
    }
}
