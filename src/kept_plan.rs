//! Statements of the compiled API functions (`jobs.enqueue`, `jobs.claim`,
//! `jobs.complete`, `jobs.complete_batch`): each planned once per session,
//! generic, and kept.
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

/// Column `n` (from 1) of row `i` of the last SPI result.
pub unsafe fn column(i: usize, n: i32) -> Option<pg_sys::Datum> {
    unsafe {
        let table = pg_sys::SPI_tuptable;
        let mut null = false;
        let value = pg_sys::SPI_getbinval(*(*table).vals.add(i), (*table).tupdesc, n, &mut null);
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

/// The rows of a set-returning function, put into a tuplestore of the
/// caller's query (materialize mode), in its memory.
pub struct Rows {
    rsinfo: *mut pg_sys::ReturnSetInfo,
    store: *mut pg_sys::Tuplestorestate,
    desc: pg_sys::TupleDesc,
    /// Whether the SPI result's rows have the result's very layout, once known.
    same_layout: Cell<Option<bool>>,
}

impl Rows {
    /// For the function `name` called with `fcinfo`, whose result is a row type.
    pub unsafe fn begin(fcinfo: pg_sys::FunctionCallInfo, name: &str) -> Rows {
        unsafe {
            let rsinfo = (*fcinfo).resultinfo.cast::<pg_sys::ReturnSetInfo>();
            if rsinfo.is_null() || (*rsinfo).allowedModes & pg_sys::SetFunctionReturnMode::SFRM_Materialize as i32 == 0
            {
                error!("{name}: called where a set cannot be returned");
            }
            let caller = pg_sys::MemoryContextSwitchTo((*(*rsinfo).econtext).ecxt_per_query_memory);
            let mut desc: pg_sys::TupleDesc = std::ptr::null_mut();
            if pg_sys::get_call_result_type(fcinfo, std::ptr::null_mut(), &mut desc)
                != pg_sys::TypeFuncClass::TYPEFUNC_COMPOSITE
            {
                error!("{name}: its result is not a row type");
            }
            let desc = pg_sys::CreateTupleDescCopy(desc);
            let random = (*rsinfo).allowedModes & pg_sys::SetFunctionReturnMode::SFRM_Materialize_Random as i32 != 0;
            let store = pg_sys::tuplestore_begin_heap(random, false, pg_sys::work_mem);
            pg_sys::MemoryContextSwitchTo(caller);
            Rows { rsinfo, store, desc, same_layout: Cell::new(None) }
        }
    }

    /// Adds row `i` of the last SPI result, whose columns are the result
    /// row type's, in order (`RETURNING j.*`). The tuplestore copies it as
    /// it is when the two line up attribute for attribute (no dropped
    /// columns in the row type), and in the result's layout otherwise. No
    /// whole-row value is made: `RETURNING j` built one per row, copying
    /// the row once more.
    pub unsafe fn put_result_row(&self, i: usize) {
        unsafe {
            let table = pg_sys::SPI_tuptable;
            let (from, tuple) = ((*table).tupdesc, *(*table).vals.add(i));
            let same = self.same_layout.get().unwrap_or_else(|| {
                let same = same_layout(from, self.desc);
                self.same_layout.set(Some(same));
                same
            });
            if same {
                pg_sys::tuplestore_puttuple(self.store, tuple);
                return;
            }
            let n = (*from).natts as usize;
            let (mut values, mut nulls) = (vec![pg_sys::Datum::from(0); n], vec![true; n]);
            pg_sys::heap_deform_tuple(tuple, from, values.as_mut_ptr(), nulls.as_mut_ptr());
            let to = pgrx::tupdesc::PgTupleDesc::from_pg_unchecked(self.desc);
            let (mut out_values, mut out_nulls) = (vec![pg_sys::Datum::from(0); to.len()], vec![true; to.len()]);
            let mut next = 0;
            for (k, attribute) in to.iter().enumerate() {
                if !attribute.attisdropped && next < n {
                    (out_values[k], out_nulls[k]) = (values[next], nulls[next]);
                    next += 1;
                }
            }
            pg_sys::tuplestore_putvalues(self.store, self.desc, out_values.as_mut_ptr(), out_nulls.as_mut_ptr());
        }
    }

    /// Hands the rows to the caller: the function's return value.
    pub unsafe fn finish(self) -> pg_sys::Datum {
        unsafe {
            (*self.rsinfo).returnMode = pg_sys::SetFunctionReturnMode::SFRM_Materialize;
            (*self.rsinfo).setResult = self.store;
            (*self.rsinfo).setDesc = self.desc;
        }
        pg_sys::Datum::from(0)
    }
}

/// Whether rows of `from` are rows of `to` as they are: the same number of
/// attributes, none dropped, each of the same type.
unsafe fn same_layout(from: pg_sys::TupleDesc, to: pg_sys::TupleDesc) -> bool {
    let (from, to) = unsafe {
        (pgrx::tupdesc::PgTupleDesc::from_pg_unchecked(from), pgrx::tupdesc::PgTupleDesc::from_pg_unchecked(to))
    };
    from.len() == to.len()
        && from.iter().zip(to.iter()).all(|(f, t)| !t.attisdropped && !f.attisdropped && f.atttypid == t.atttypid)
}

/// The number (from 1) of the column `name` of the last SPI result.
pub unsafe fn column_number(name: &std::ffi::CStr) -> i32 {
    let n = unsafe { pg_sys::SPI_fnumber((*pg_sys::SPI_tuptable).tupdesc, name.as_ptr()) };
    if n <= 0 {
        error!("jobs: the statement returned no column {name:?}");
    }
    n
}
