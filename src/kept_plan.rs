//! Statements of the compiled API functions (`jobs.claim`, `jobs.complete`):
//! each planned once per session, generic, and kept.
//!
//! They are safe under any `search_path` without pinning one: each names
//! every table, function and operator with its schema, so a replan (after
//! DDL or new statistics) resolves the same objects whatever path the caller
//! set. (Types of literals and ORDER BY's sort order come from the columns,
//! not from names.)

use pgrx::prelude::*;
use std::cell::Cell;
use std::ffi::CStr;

pub struct KeptPlan {
    sql: &'static CStr,
    types: &'static [pg_sys::Oid],
    plan: Cell<pg_sys::SPIPlanPtr>,
}

impl KeptPlan {
    pub const fn new(sql: &'static CStr, types: &'static [pg_sys::Oid]) -> KeptPlan {
        KeptPlan { sql, types, plan: Cell::new(std::ptr::null_mut()) }
    }

    /// The plan, prepared on the session's first use. Generic: these
    /// statements cost the same whatever their values, and a custom plan per
    /// call would cost more than running them. Inside SPI_connect.
    pub unsafe fn get(&self) -> pg_sys::SPIPlanPtr {
        if self.plan.get().is_null() {
            unsafe {
                let mut types = self.types.to_vec();
                let plan = pg_sys::SPI_prepare_cursor(
                    self.sql.as_ptr(),
                    types.len() as i32,
                    types.as_mut_ptr(),
                    pg_sys::CURSOR_OPT_GENERIC_PLAN as i32,
                );
                if plan.is_null() || pg_sys::SPI_keepplan(plan) != 0 {
                    let code = pg_sys::SPI_result;
                    error!("jobs: preparing a statement failed (SPI code {code}): {:?}", self.sql);
                }
                self.plan.set(plan);
            }
        }
        self.plan.get()
    }

    /// Runs the plan (SPI_execute_plan, inside SPI_connect) and returns
    /// SPI's code. Plans outlive the statistics they were made with, and
    /// PostgreSQL remakes a kept plan whenever the table changes, its
    /// statistics do or the caller's `search_path` differs from the one it
    /// was made under: one made while the table was small may scan it and
    /// keep doing so as it grows, until the next invalidation (the
    /// PL/pgSQL functions had the same setting as a `SET` clause).
    /// Whenever it is made, it must walk the indexes.
    pub unsafe fn execute<const N: usize>(&self, args: &[Option<pg_sys::Datum>; N], rows: i64) -> i32 {
        unsafe {
            let (mut values, nulls) = (datums(args), nulls(args));
            let plan = self.get();
            let nest = pg_sys::NewGUCNestLevel();
            pg_sys::set_config_option(
                c"enable_seqscan".as_ptr(),
                c"off".as_ptr(),
                pg_sys::GucContext::PGC_USERSET,
                pg_sys::GucSource::PGC_S_SESSION,
                pg_sys::GucAction::GUC_ACTION_SAVE,
                true,
                0,
                false,
            );
            let code = pg_sys::SPI_execute_plan(plan, values.as_mut_ptr(), nulls.as_ptr(), false, rows);
            pg_sys::AtEOXact_GUC(true, nest);
            code
        }
    }
}

/// `nulls` of SPI_execute_plan for these values.
fn nulls<const N: usize>(values: &[Option<pg_sys::Datum>; N]) -> [std::ffi::c_char; N] {
    values.map(|v| if v.is_some() { b' ' } else { b'n' } as std::ffi::c_char)
}

/// The datums of SPI_execute_plan for these values (0 for a null).
fn datums<const N: usize>(values: &[Option<pg_sys::Datum>; N]) -> [pg_sys::Datum; N] {
    values.map(|v| v.unwrap_or(pg_sys::Datum::from(0)))
}

/// Column 1 of row `i` of the last SPI result.
pub unsafe fn column1(i: usize) -> Option<pg_sys::Datum> {
    unsafe {
        let table = pg_sys::SPI_tuptable;
        let mut null = false;
        let value = pg_sys::SPI_getbinval(*(*table).vals.add(i), (*table).tupdesc, 1, &mut null);
        (!null).then_some(value)
    }
}

/// An argument passed on as it came, NULL or not, in whatever encoding the
/// database has (a Rust `String` would insist on UTF-8).
pub fn param(value: Option<pg_sys::Datum>, oid: pg_sys::Oid) -> pgrx::datum::DatumWithOid<'static> {
    match value {
        // SAFETY: a datum of type `oid`, the caller's argument, live for the call.
        Some(value) => unsafe { pgrx::datum::DatumWithOid::new(value, oid) },
        None => pgrx::datum::DatumWithOid::null_oid(oid),
    }
}

/// SPI_connect, or an error.
pub unsafe fn connect() {
    if unsafe { pg_sys::SPI_connect() } != pg_sys::SPI_OK_CONNECT as i32 {
        error!("jobs: SPI_connect failed");
    }
}
