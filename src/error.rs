//! Where Rust code raises the contract's errors (the SQL API raises its own
//! in sql/errors.sql): the contract's SQLSTATE with a PostgreSQL-style message.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

/// Raises 22023 invalid_parameter_value; never returns.
pub fn invalid(message: impl Into<String>) -> ! {
    ErrorReport::new(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, message.into(), "jobs").report(PgLogLevel::ERROR);
    unreachable!("an ERROR report does not return")
}

/// The value of a parameter that must not be NULL.
pub fn required<T>(name: &str, value: Option<T>) -> T {
    value.unwrap_or_else(|| invalid(format!("{name} must not be null")))
}

/// Raises `code` with a DETAIL or HINT; never returns.
pub fn raise(code: PgSqlErrorCode, message: String, detail: Option<String>, hint: Option<String>) -> ! {
    let mut report = ErrorReport::new(code, message, "jobs");
    if let Some(detail) = detail {
        report = report.set_detail(detail);
    }
    if let Some(hint) = hint {
        report = report.set_hint(hint);
    }
    report.report(PgLogLevel::ERROR);
    unreachable!("an ERROR report does not return")
}
