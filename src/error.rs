//! Where Rust code raises the contract's errors (the SQL API raises its own
//! in sql/errors.sql): SQLSTATE 22023 with a PostgreSQL-style message.

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
