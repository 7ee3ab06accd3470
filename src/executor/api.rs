//! jobs.enqueue_sql and jobs.schedule_sql. Unlike the rest of the API they
//! are not SECURITY DEFINER: whom the command may run as depends on who
//! calls, so the checks run as the caller, and only storing the job runs as
//! the extension's owner (sql/sql_jobs.sql).

use crate::error::raise;
use crate::guc;
use pgrx::PgSqlErrorCode::{
    ERRCODE_INSUFFICIENT_PRIVILEGE, ERRCODE_INVALID_CATALOG_NAME, ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
};
use pgrx::prelude::*;
use std::ffi::{CStr, CString};
use std::sync::atomic::Ordering;

#[allow(clippy::too_many_arguments)]
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn enqueue_sql(
    command: Option<&str>,
    run_at: default!(Option<TimestampWithTimeZone>, "NULL"),
    database: default!(Option<&str>, "NULL"),
    run_as: default!(Option<&str>, "NULL"),
    timeout: default!(Option<Interval>, "NULL"),
    max_attempts: default!(Option<i32>, 1),
    priority: default!(Option<i32>, 0),
    idempotency_key: default!(Option<&str>, "NULL"),
) -> pgrx::composite_type!('static, "jobs.job") {
    let owner = extension_owner();
    as_owner(owner, || {
        Spi::run_with_args(
            "SELECT jobs._check_sql_job($1, $2, $3, $4, $5, $6)",
            &[
                command.into(),
                timeout.into(),
                run_at.into(),
                max_attempts.into(),
                priority.into(),
                idempotency_key.into(),
            ],
        )
    })
    .expect("jobs._check_sql_job");
    let (database, run_as) = where_and_as_whom(database, run_as);
    as_owner(owner, || {
        Spi::get_one_with_args::<pgrx::composite_type!('static, "jobs.job")>(
            "SELECT j FROM jobs._insert_sql_job(jobs._sql_payload($1, $2, $3, $4), $5, $6, $7, $8) j",
            &[
                command.into(),
                database.as_str().into(),
                run_as.as_str().into(),
                timeout.into(),
                run_at.into(),
                max_attempts.into(),
                priority.into(),
                idempotency_key.into(),
            ],
        )
    })
    .expect("jobs._insert_sql_job")
    .expect("an insert returns its row")
}

#[allow(clippy::too_many_arguments)]
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn schedule_sql(
    name: Option<&str>,
    cron: Option<&str>,
    command: Option<&str>,
    timezone: default!(Option<&str>, "'UTC'"),
    database: default!(Option<&str>, "NULL"),
    run_as: default!(Option<&str>, "NULL"),
    timeout: default!(Option<Interval>, "NULL"),
    max_attempts: default!(Option<i32>, 1),
    overlap: default!(Option<bool>, false),
    enabled: default!(Option<bool>, true),
) -> pgrx::composite_type!('static, "jobs.schedule") {
    let owner = extension_owner();
    as_owner(owner, || {
        Spi::run_with_args(
            "SELECT jobs._check_sql_schedule($1, $2, $3, $4, $5), jobs._check_sql_job($6, $7, NULL, $8, 0, NULL)",
            &[
                name.into(),
                cron.into(),
                timezone.into(),
                overlap.into(),
                enabled.into(),
                command.into(),
                timeout.into(),
                max_attempts.into(),
            ],
        )
    })
    .expect("jobs._check_sql_schedule");
    let (database, run_as) = where_and_as_whom(database, run_as);
    as_owner(owner, || {
        Spi::get_one_with_args::<pgrx::composite_type!('static, "jobs.schedule")>(
            "SELECT s FROM jobs._save_schedule($1, $2, $3, 'sql', jobs._sql_payload($4, $5, $6, $7), 'sql', 0, $8, $10, $9) s",
            &[
                name.into(),
                cron.into(),
                timezone.into(),
                command.into(),
                database.as_str().into(),
                run_as.as_str().into(),
                timeout.into(),
                max_attempts.into(),
                overlap.into(),
                enabled.into(),
            ],
        )
    })
    .expect("jobs._save_schedule")
    .expect("an upsert returns its row")
}

/// The database and role the command will run in and as (NULL: the current
/// ones), once the caller is found to be allowed them.
fn where_and_as_whom(database: Option<&str>, run_as: Option<&str>) -> (String, String) {
    refuse_where_it_could_never_run();
    let caller = unsafe { pg_sys::GetUserId() };
    let run_as = run_as.map(str::to_string).unwrap_or_else(|| role_name(caller));
    let database = database.map(str::to_string).unwrap_or_else(current_database);
    check_run_as(caller, &run_as);
    check_database(&run_as, &database);
    (database, run_as)
}

/// SQL jobs live in, and are run from, the database the worker serves.
fn refuse_where_it_could_never_run() {
    if !crate::PRELOADED.load(Ordering::Relaxed) {
        raise(
            ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "SQL jobs cannot run on this server: the jobs library is not preloaded".into(),
            None,
            Some(
                "Add jobs to shared_preload_libraries and restart: its background worker runs SQL jobs, in the database named by jobs.database_name."
                    .into(),
            ),
        );
    }
    let served = guc::database_name();
    let here = current_database();
    if here != served {
        raise(
            ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("SQL jobs cannot be created in database \"{here}\""),
            None,
            Some(format!(
                "The jobs background worker serves database \"{served}\" (jobs.database_name): create SQL jobs there; their database parameter names where the command runs."
            )),
        );
    }
}

fn check_run_as(caller: pg_sys::Oid, run_as: &str) {
    let denied = |detail: String| {
        raise(
            ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("permission denied to run SQL jobs as role \"{run_as}\""),
            Some(detail),
            None,
        )
    };
    let name = CString::new(run_as).expect("text has no NUL");
    let role = unsafe { pg_sys::get_role_oid(name.as_ptr(), true) };
    if role == pg_sys::InvalidOid {
        denied(format!("Role \"{run_as}\" does not exist."));
    }
    let caller_is_superuser = unsafe { pg_sys::superuser_arg(caller) };
    if unsafe { pg_sys::superuser_arg(role) } && !caller_is_superuser {
        denied("Only superusers may run SQL jobs as a superuser.".into());
    }
    if role != caller && !caller_is_superuser && !may_set_role(caller, role) {
        denied(format!("Only roles that may SET ROLE to \"{run_as}\" may run SQL jobs as it."));
    }
    if cfg!(not(any(feature = "pg17", feature = "pg18"))) {
        let can_login = Spi::get_one_with_args::<bool>(
            "SELECT rolcanlogin FROM pg_catalog.pg_roles WHERE oid = $1",
            &[role.into()],
        )
        .expect("pg_roles")
        .unwrap_or(false);
        if !can_login {
            denied(format!(
                "Role \"{run_as}\" cannot log in: before PostgreSQL 17, SQL jobs run only as roles with LOGIN."
            ));
        }
    }
}

#[cfg(any(feature = "pg14", feature = "pg15"))]
fn may_set_role(caller: pg_sys::Oid, role: pg_sys::Oid) -> bool {
    unsafe { pg_sys::is_member_of_role(caller, role) }
}

#[cfg(not(any(feature = "pg14", feature = "pg15")))]
fn may_set_role(caller: pg_sys::Oid, role: pg_sys::Oid) -> bool {
    unsafe { pg_sys::member_can_set_role(caller, role) }
}

fn check_database(run_as: &str, database: &str) {
    let may_connect = Spi::connect(|client| {
        let rows = client.select(
            "SELECT pg_catalog.has_database_privilege($1, d.oid, 'CONNECT') FROM pg_catalog.pg_database d WHERE d.datname = $2",
            None,
            &[run_as.into(), database.into()],
        )?;
        match rows.len() {
            0 => Ok(None),
            _ => rows.first().get::<bool>(1),
        }
    })
    .expect("pg_database");
    match may_connect {
        None => raise(ERRCODE_INVALID_CATALOG_NAME, format!("database \"{database}\" does not exist"), None, None),
        Some(false) => raise(
            ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("permission denied to run SQL jobs in database \"{database}\""),
            Some(format!("Role \"{run_as}\" has no CONNECT privilege on it.")),
            None,
        ),
        Some(true) => {}
    }
}

fn extension_owner() -> pg_sys::Oid {
    Spi::get_one::<pg_sys::Oid>("SELECT extowner FROM pg_catalog.pg_extension WHERE extname = 'jobs'")
        .expect("pg_extension")
        .expect("the extension exists while its functions run")
}

/// Runs `f` with the rights of the extension's `owner`, as a SECURITY
/// DEFINER function would. An error inside is no leak: aborting the
/// (sub)transaction puts the caller's user id back.
fn as_owner<T>(owner: pg_sys::Oid, f: impl FnOnce() -> T) -> T {
    let (mut user, mut context) = (pg_sys::InvalidOid, 0);
    unsafe {
        pg_sys::GetUserIdAndSecContext(&mut user, &mut context);
        pg_sys::SetUserIdAndSecContext(owner, context | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32);
    }
    let value = f();
    unsafe { pg_sys::SetUserIdAndSecContext(user, context) };
    value
}

fn role_name(role: pg_sys::Oid) -> String {
    unsafe { CStr::from_ptr(pg_sys::GetUserNameFromId(role, false)) }.to_string_lossy().into_owned()
}

fn current_database() -> String {
    unsafe { CStr::from_ptr(pg_sys::get_database_name(pg_sys::MyDatabaseId)) }.to_string_lossy().into_owned()
}
